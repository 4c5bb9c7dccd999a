"""The synthetic workload: a seeded generator of sessions from fitted parameters.

The ``default`` workload is this generator with parameters fitted by
``experiments/fitting/fit_workload.py`` and shipped in ``offload_rl/data/workload_default.json``
(no data files needed): sessions, turns and gaps from BurstGPT, lengths from Azure conv, and a
*per-cell* rate of 0.066 sessions/s (0.22 requests/s: Azure conv's 5.5 requests/s for a whole
region / 3.34 turns x a 1/25 cell share, a stated assumption).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from offload_rl.workloads import kernels
from offload_rl.workloads.correlation import correlated_lengths
from offload_rl.workloads.distributions import EmpiricalDist, LognormalDist
from offload_rl.workloads.fused_draw import FusedPlan, fused_plan
from offload_rl.workloads.fused_draw import runs_here as fused_runs_here
from offload_rl.workloads.lazy_draw import (
    LazyDraw,
    chosen_columns_lazy,
    draw_sessions_lazy,
    gap_to_next_turn,
)
from offload_rl.workloads.params import WorkloadParams
from offload_rl.workloads.request import FloatArray, IntArray, Request, TokenScaling
from offload_rl.workloads.stream import assemble_stream


def _lengths(dist: LognormalDist | EmpiricalDist, rng: np.random.Generator, n: int) -> IntArray:
    return np.maximum(np.rint(dist.sample(rng, n)), 1).astype(np.int64)


@dataclass(frozen=True)
class SessionDraw:
    """Sessions drawn over ``[-warmup_s, horizon_s)``, requests in session-major order."""

    arrival: FloatArray
    session: IntArray
    turn: IntArray
    new: IntArray
    output: IntArray
    offset: IntArray
    """Index of each session's first request."""
    turns: IntArray

    def prior_context(self) -> IntArray:
        """Raw context of each request: its session's earlier new + output tokens."""
        tokens = self.new + self.output
        before = np.cumsum(tokens) - tokens
        return before - before[self.offset][self.session]

    def next_index(self) -> IntArray:
        """Index of the same session's next turn, -1 for a session's last."""
        nxt = np.arange(1, len(self.session) + 1, dtype=np.int64)
        nxt[self.offset + self.turns - 1] = -1
        return nxt


def _layout(
    turns: IntArray, starts: FloatArray, gaps: FloatArray
) -> tuple[IntArray, IntArray, IntArray, npt.NDArray[np.bool_], FloatArray]:
    """Each request's session, each session's first request, each request's turn, whether it
    opens its session, and its arrival (its session's start plus the gaps of its later turns,
    summed in order over the draw). Compiled where the cell runs compiled
    (:func:`~offload_rl.workloads.compiled_workload.session_layout`, the same values)."""
    module = kernels.compiled()
    if module is not None:
        total = len(gaps)
        session = np.empty(total, dtype=np.int64)
        turn = np.empty(total, dtype=np.int64)
        is_first = np.empty(total, dtype=np.bool_)
        arrival = np.empty(total, dtype=np.float64)
        offset = np.empty(len(turns), dtype=np.int64)
        module.session_layout(turns, starts, gaps, session, offset, turn, is_first, arrival)
        return session, offset, turn, is_first, arrival
    session = np.repeat(np.arange(len(turns), dtype=np.int64), turns)
    offset = np.cumsum(turns) - turns
    turn = np.arange(len(gaps), dtype=np.int64) - offset[session]
    is_first = turn == 0
    gaps[is_first] = 0.0
    elapsed = np.cumsum(gaps)
    arrival = starts[session] + elapsed - elapsed[offset][session]
    return session, offset, turn, is_first, arrival


def draw_layout(
    p: WorkloadParams, rng: np.random.Generator, rate_per_s: float, horizon_s: float
) -> tuple[IntArray, IntArray, IntArray, IntArray, npt.NDArray[np.bool_], FloatArray]:
    """A draw's generator calls before the lengths (Poisson session starts at ``rate_per_s``
    over ``[-warmup_s, horizon_s)``, their turns and gaps) and its layout: turns per session,
    then :func:`_layout`'s columns (the one home of that order: the whole and the lazy draw)."""
    n_sessions = int(rng.poisson(rate_per_s * (p.warmup_s + horizon_s)))
    starts = rng.uniform(-p.warmup_s, horizon_s, n_sessions)
    turns = p.turns.sample(rng, n_sessions)
    gaps = p.gap_s.sample(rng, int(turns.sum()))
    return (turns, *_layout(turns, starts, gaps))


def draw_sessions(
    p: WorkloadParams, rng: np.random.Generator, rate_per_s: float, horizon_s: float
) -> SessionDraw:
    """Poisson session starts at ``rate_per_s`` over ``[-warmup_s, horizon_s)`` with their
    turns, gaps and lengths (correlated across turns when ``p.correlation`` says so)."""
    turns, session, offset, turn, is_first, arrival = draw_layout(p, rng, rate_per_s, horizon_s)
    n_sessions, total = len(turns), len(session)
    if p.correlation is None:
        new = np.empty(total, dtype=np.int64)
        new[is_first] = _lengths(p.first_prompt_tokens, rng, n_sessions)
        new[~is_first] = _lengths(p.followup_prompt_tokens, rng, total - n_sessions)
        output = _lengths(p.output_tokens, rng, total)
    else:
        new, output = correlated_lengths(
            p.correlation,
            turn,
            p.first_prompt_tokens,
            p.followup_prompt_tokens,
            p.output_tokens,
            rng,
        )
    return SessionDraw(arrival, session, turn, new, output, offset, turns)


class SyntheticWorkload:
    """Seeded generator: Poisson session arrivals, turns, inter-turn gaps, token lengths."""

    def __init__(
        self, params: WorkloadParams, scaling: TokenScaling | None = None, name: str = "synthetic"
    ) -> None:
        self.params = params
        self.scaling = scaling if scaling is not None else TokenScaling()
        self.name = name
        # the params' request rate, computed once (numpy on its short lists: ~5-40 us a
        # sample, most of it with numpy's code out of the caches after a played episode)
        self._rate: tuple[WorkloadParams, float] | None = None
        # the fused kernels' plan for (params, scaling), made once (None: they do not apply)
        self._plan: tuple[WorkloadParams, TokenScaling, FusedPlan | None] | None = None

    def _request_rate(self) -> float:
        """``self.params.request_rate_per_s()``, kept while ``self.params`` is the same (frozen)
        object."""
        p = self.params
        if self._rate is None or self._rate[0] is not p:
            self._rate = (p, p.request_rate_per_s())
        return self._rate[1]

    def _fused_plan(self) -> FusedPlan | None:
        """:func:`fused_plan` of the current params and scaling, kept while they are the same
        (frozen) objects."""
        p, scaling = self.params, self.scaling
        if self._plan is None or self._plan[0] is not p or self._plan[1] is not scaling:
            self._plan = (p, scaling, fused_plan(p, scaling))
        return self._plan[2]

    def __repr__(self) -> str:
        return f"SyntheticWorkload(name={self.name!r}, scaling={self.scaling!r})"

    def sample(self, rng: np.random.Generator, n_requests: int) -> list[Request]:
        """The first ``n_requests`` requests at or after t = 0 of a steady-state process."""
        if n_requests < 0:
            raise ValueError(f"n_requests must be >= 0, got {n_requests}")
        if n_requests == 0:
            return []
        p = self.params
        n = n_requests
        horizon = (n + 4.0 * math.sqrt(n) + 10.0) / self._request_rate()
        # the fast paths where the cell runs compiled: the fused kernels (the default
        # workload's shape), else the lazy draw; numpy's whole draw is the reference
        plan = self._fused_plan() if fused_runs_here(rng) else None
        lazy = kernels.compiled() is not None
        while True:
            if plan is not None:
                stream = plan.sample(rng, n, horizon)
                if stream is not None:
                    return stream
            else:
                d = (draw_sessions_lazy if lazy else draw_sessions)(
                    p, rng, p.session_rate_per_s, horizon
                )
                keep = np.flatnonzero((d.arrival >= 0.0) & (d.arrival < horizon))
                if len(keep) >= n:
                    break
            horizon *= 1.5
        chosen = keep[np.argsort(d.arrival[keep], kind="stable")[:n]]
        if isinstance(d, LazyDraw):  # lengths mapped for the rows the stream reads only
            return assemble_stream(*chosen_columns_lazy(d, chosen), self.scaling)
        return assemble_stream(*self._chosen_columns(d, chosen), self.scaling)

    @staticmethod
    def _chosen_columns(
        d: SessionDraw, chosen: IntArray
    ) -> tuple[FloatArray, IntArray, IntArray, IntArray, IntArray, FloatArray]:
        """The stream's raw columns for the ``chosen`` requests (in stream order): arrival
        from the first, session, new and output tokens, prior context, and the gap to the
        session's next turn where that turn is in the stream (NaN otherwise). The values of
        :meth:`SessionDraw.prior_context` and :meth:`SessionDraw.next_index` at ``chosen``,
        computed for those rows only (a draw holds ~15x more requests: the warm-up)."""
        session = d.session[chosen]
        gap_next = gap_to_next_turn(d.arrival, d.turn, d.turns, session, chosen)
        tokens = d.new + d.output
        before = np.cumsum(tokens) - tokens
        prior = before[chosen] - before[d.offset[session]]  # prior_context() at chosen
        arrival = d.arrival[chosen]
        return (
            arrival - arrival[0],
            session,
            d.new[chosen],
            d.output[chosen],
            prior,
            gap_next,
        )
