"""Request streams of the devices of a cell: whole sessions, each on one device.

A chat happens on one phone, so a session's turns all come from the device it started on: the
cell environment needs one stream per device, not one stream for the cell. Both sources here
play a cell-level session process over ``[0, duration_s)`` and assign each session to a device
drawn uniformly at random:

* :class:`SessionReplay` plays a :class:`RecordedWorkload`'s sessions (BurstGPT, Mooncake, any
  mapped log) with their recorded turns, gaps and lengths, from an offset into the recording;
* :class:`SyntheticSessions` plays the fitted :class:`WorkloadParams` (with or without the
  session correlation).

Uniform assignment is the thinning of the cell's session process: when sessions start as a
Poisson process of rate ``lambda`` (the synthetic cell rate, ``session_rate_per_s``), each
device's sessions start as an independent Poisson process of rate ``lambda / N``; a recording
keeps its own burstiness, split evenly in expectation. Round-robin would make each device's
arrivals more regular than the recording's; one session per device at a time would cap the
load by ``N``. A device may hold two sessions at once (a user with two chats).

Device streams share the cell's clock: ``t = 0`` is the window's start, so a device's first
request arrives at ``t >= 0`` (not exactly 0). Otherwise every stream invariant of
:mod:`offload_rl.workloads` holds per device (dense session ids, turns from 0, context = the
session's history within the window, a session in progress at ``t = 0`` folds its history into
the new tokens of its first request in the window, gaps only to a next turn inside the window).
"""

from __future__ import annotations

import math

import numpy as np

from offload_rl.errors import ConfigError
from offload_rl.workloads.params import WorkloadParams
from offload_rl.workloads.recorded import RecordedWorkload
from offload_rl.workloads.request import FloatArray, IntArray, Request, TokenScaling
from offload_rl.workloads.stream import assemble_stream
from offload_rl.workloads.synthetic import draw_sessions


def _check_devices(n_devices: int) -> None:
    if int(n_devices) != n_devices or n_devices < 1:
        raise ConfigError(f"n_devices must be an integer >= 1, got {n_devices}")


def _check_duration(duration_s: float) -> None:
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"duration_s must be a positive number of seconds, got {duration_s}")


def split_by_device(
    arrival: FloatArray,
    key: IntArray,
    new: IntArray,
    output: IntArray,
    prior: IntArray,
    next_index: IntArray,
    duration_s: float,
    n_devices: int,
    rng: np.random.Generator,
    scaling: TokenScaling,
) -> list[list[Request]]:
    """Requests arriving in ``[0, duration_s)``, each session on a uniformly drawn device.

    ``key`` identifies sessions, ``prior`` is each request's raw context in its full session,
    ``next_index`` the index of its session's next turn (-1 if none), all over the same rows.
    """
    in_window = (arrival >= 0.0) & (arrival < duration_s)
    nxt_ok = (next_index >= 0) & in_window[np.maximum(next_index, 0)]
    gap = np.where(nxt_ok, arrival[np.maximum(next_index, 0)] - arrival, np.nan)
    rows = np.flatnonzero(in_window)
    rows = rows[np.argsort(arrival[rows], kind="stable")]
    keys, first_seen, inverse = np.unique(key[rows], return_index=True, return_inverse=True)
    # Devices drawn in order of each session's first request: reproducible, order-independent.
    device_of_key = np.empty(len(keys), dtype=np.int64)
    device_of_key[np.argsort(first_seen, kind="stable")] = rng.integers(0, n_devices, len(keys))
    device = device_of_key[inverse.ravel()]
    streams = []
    for d in range(n_devices):
        r = rows[device == d]
        streams.append(
            assemble_stream(arrival[r], key[r], new[r], output[r], prior[r], gap[r], scaling)
        )
    return streams


class SessionReplay:
    """A recording's sessions played onto ``n_devices`` devices (see the module doc).

    ``start_s`` is where in the recording (seconds after its first request) the cell's
    ``t = 0`` falls; ``None`` draws it uniformly over the recording's period on each call.
    Past the recording's end it loops, each lap shifted by the period with its own sessions,
    as :class:`RecordedWorkload` does. Lengths get the workload's token scaling.
    """

    def __init__(
        self,
        workload: RecordedWorkload,
        n_devices: int,
        rng: np.random.Generator,
        start_s: float | None = None,
    ) -> None:
        _check_devices(n_devices)
        if start_s is not None and not (math.isfinite(start_s) and start_s >= 0):
            raise ConfigError(f"start_s must be >= 0 seconds into the recording, got {start_s}")
        self.workload = workload
        self.n_devices = int(n_devices)
        self.rng = rng
        self.start_s = start_s

    def device_streams(self, duration_s: float) -> list[list[Request]]:
        """One stream per device over ``[0, duration_s)`` of the cell's clock."""
        _check_duration(duration_s)
        w = self.workload
        s = w.stream
        n_rows = len(s)
        period = w.period_s
        start = self.start_s if self.start_s is not None else float(self.rng.uniform(0, period))
        rel = s.arrival_s - s.arrival_s[0]
        first_lap = int(start // period)
        laps = np.arange(first_lap, int((start + duration_s) // period) + 1, dtype=np.int64)
        lap = np.repeat(laps, n_rows)
        base = np.tile(np.arange(n_rows, dtype=np.int64), len(laps))
        position = (lap - first_lap) * n_rows
        nxt = s.next_index[base]
        return split_by_device(
            rel[base] + lap * period - start,
            s.session[base] + lap * s.n_sessions,
            s.new_tokens[base],
            s.output_tokens[base],
            s.prior_context[base],
            np.where(nxt >= 0, nxt + position, -1),
            duration_s,
            self.n_devices,
            self.rng,
            w.scaling,
        )


class SyntheticSessions:
    """The fitted synthetic workload played onto ``n_devices`` devices (see the module doc).

    The cell's sessions start as a Poisson process of rate ``params.session_rate_per_s`` (the
    cell's rate), from ``-warmup_s`` so the window opens in steady state; each device's
    sessions are a Poisson process of rate ``session_rate_per_s / n_devices``.
    """

    def __init__(
        self,
        params: WorkloadParams,
        n_devices: int,
        rng: np.random.Generator,
        scaling: TokenScaling | None = None,
    ) -> None:
        _check_devices(n_devices)
        self.params = params
        self.n_devices = int(n_devices)
        self.rng = rng
        self.scaling = scaling if scaling is not None else TokenScaling()

    def device_session_rate_per_s(self) -> float:
        """Sessions per second that start on each device."""
        return self.params.session_rate_per_s / self.n_devices

    def device_streams(self, duration_s: float) -> list[list[Request]]:
        """One stream per device over ``[0, duration_s)`` of the cell's clock."""
        _check_duration(duration_s)
        p = self.params
        d = draw_sessions(p, self.rng, p.session_rate_per_s, duration_s)
        return split_by_device(
            d.arrival,
            d.session,
            d.new,
            d.output,
            d.prior_context(),
            d.next_index(),
            duration_s,
            self.n_devices,
            self.rng,
            self.scaling,
        )
