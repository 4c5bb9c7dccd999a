"""What a device knows when it places a request: the one converter to a :class:`DecisionState`.

The environment, the example edge runtime and the reference-runtime validation each play a
device, and each must hand the policy the same view of the same situation, or a policy trained in
one meets another's features in deployment (train/serve skew). So the three share:

* :func:`measured_throughput`: the device's own uplink samples, the mean capacity of fixed
  periods on a grid anchored at the episode start (plus the scenario's measurement noise);
* :func:`kept_kv_tokens`: how many positions a kept session's KV holds after a turn
  (context + prompt + all output tokens but the last: the last token is sampled and returned,
  never fed back through the model);
* :class:`SessionMemory` and :func:`decision_state`: the device's memory of its sessions' past
  turns, and the assembly of the state the encoder reads.

What the edge knows (whether the session's KV is still kept, its occupancy and load) comes in as
arguments: the environment reads its simulated edge, a runtime reads the edge's reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from offload_rl.features import DecisionState
from offload_rl.traces import BYTES_PER_MBIT, Trace


class RequestView(Protocol):
    """What the device knows of a request it is about to send (a workload ``Request``, or a
    replayed one), plus its output length once it has been served."""

    @property
    def arrival_s(self) -> float: ...
    @property
    def session_id(self) -> int: ...
    @property
    def turn(self) -> int: ...
    @property
    def new_tokens(self) -> int: ...
    @property
    def context_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...


_GRIDS: dict[int, tuple[Trace, np.ndarray, np.ndarray]] = {}
"""id(trace) -> (trace, its time grid, its cumulative bytes): what np.interp reads."""


def _interp_points(trace: Trace) -> tuple[np.ndarray, np.ndarray]:
    """The times of ``trace.cum_bytes``' points and a copy of ``cum_bytes``, built once per
    trace object (EdgeCell-v0 seeds every device at each reset, most on the same few traces of
    ~10^4 steps). Both are left writeable, and nothing may write to them: ``np.interp`` copies
    a read-only argument on every call (it asks for a writeable contiguous array), ~6 us for
    a trace of 10^4 steps, more than the interpolation of a few points costs."""
    hit = _GRIDS.get(id(trace))
    if hit is not None and hit[0] is trace:
        return hit[1], hit[2]
    if len(_GRIDS) >= 256:  # traces made on the fly (tests, forks): keep the cache small
        _GRIDS.clear()
    grid = np.arange(len(trace.cum_bytes)) * trace.step_s
    cum = np.array(trace.cum_bytes, dtype=np.float64)
    _GRIDS[id(trace)] = (trace, grid, cum)
    return grid, cum


def _time_grid(trace: Trace) -> np.ndarray:
    """The times of ``trace.cum_bytes``' points (:func:`_interp_points`' first array)."""
    return _interp_points(trace)[0]


def measured_throughput(
    trace: Trace,
    origin_s: float,
    first_period: int,
    n: int,
    period_s: float,
    noise_sd: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Mean capacity (Mbps) of ``n`` periods starting at ``origin_s + first_period * period_s``.

    Vectorised (the environment measures a whole episode at reset). With ``noise_sd > 0`` each
    sample is multiplied by a lognormal measurement error drawn from ``rng``.
    """
    times = origin_s + (np.arange(n + 1) + first_period) * period_s
    cycles = np.floor(times / trace.duration_s)
    within = times - cycles * trace.duration_s
    grid, cum_bytes = _interp_points(trace)
    cum = cycles * trace.total_bytes + np.interp(within, grid, cum_bytes)
    values = np.diff(cum) / (BYTES_PER_MBIT * period_s)
    if noise_sd > 0:
        if rng is None:
            raise ValueError("measured_throughput: noise_sd > 0 needs an rng")
        values *= np.exp(rng.normal(0.0, noise_sd, size=n))
    return values


def latest_period(t_s: float, period_s: float) -> int:
    """Index of the period that contains episode time ``t_s``: the samples before it are
    complete, so the device's newest sample is period ``latest_period - 1``."""
    return int(t_s / period_s)


def kept_kv_tokens(context_tokens: int, new_tokens: int, output_tokens: int) -> int:
    """Positions a session's KV holds after a turn (see the module docstring)."""
    return context_tokens + new_tokens + max(output_tokens - 1, 0)


@dataclass
class SessionMemory:
    """The device's memory of each session's previous turn: when it was asked, how long the
    answer was."""

    _last: dict[int, tuple[float, int]] = field(default_factory=dict)

    def remember(self, request: RequestView) -> None:
        """Record that ``request`` was served (call after deciding, before the next turn)."""
        self._last[request.session_id] = (request.arrival_s, request.output_tokens)

    def clear(self) -> None:
        self._last.clear()

    def previous(self, session_id: int) -> tuple[float, int] | None:
        """``(arrival_s, output_tokens)`` of the session's previous turn, None at its first."""
        return self._last.get(session_id)


def decision_state(
    request: RequestView,
    *,
    throughput_mbps: list[float],
    rtt_ms: float,
    private: bool,
    slo: tuple[float, float],
    cached: tuple[int | None, int],
    edge_kv_occupancy: float,
    edge_load: float,
    device_memory_layers: int,
    memory: SessionMemory,
) -> DecisionState:
    """The state a device hands the policy for ``request``.

    ``slo`` is ``(ttft_s, tpot_s)`` of the session's class; ``cached`` is the split and token
    count of the session's kept KV (``(None, 0)`` when nothing is kept); only the part that
    covers this turn's context is usable.
    """
    prev = memory.previous(request.session_id)
    split, tokens = cached
    return DecisionState(
        throughput_mbps=throughput_mbps,
        rtt_ms=rtt_ms,
        new_tokens=request.new_tokens,
        context_tokens=request.context_tokens,
        turn=request.turn,
        private=private,
        slo_ttft_s=slo[0],
        slo_tpot_s=slo[1],
        cached_split=split,
        cached_tokens=min(tokens, request.context_tokens),
        edge_kv_occupancy=edge_kv_occupancy,
        edge_load=edge_load,
        device_memory_layers=device_memory_layers,
        prev_output_tokens=prev[1] if prev else 0,
        since_last_turn_s=0.0 if prev is None else request.arrival_s - prev[0],
    )
