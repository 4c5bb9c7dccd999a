"""The synthetic stream in three compiled calls, for the default workload's shape.

An EdgeCell-v0 reset samples 257 requests out of a draw of ~3700 (the warm-up). The lazy draw
(:mod:`~offload_rl.workloads.lazy_draw`) makes that draw in ~20 numpy and compiled calls on
small arrays, each ~1-5 us and more with numpy's code out of the caches after a played
episode. Here the same generator calls and arithmetic run in three kernels
(:mod:`~offload_rl.workloads.compiled_workload`'s ``draw_front``, ``stream_rows`` and
``columns_of_rows``: the lazy draw's kernels on the generator's draws) around numpy's ``exp``
(numba's ``exp`` is not numpy's SIMD one; called from a kernel in object mode, it cost ~15 us
more a call after a played episode). It applies where the lazy draw's compiled path does
(independent, empirical lengths) with geometric-mixture turns and empirical gaps; the values,
the generator's state afterwards and the Request objects are the numpy reference's
(``tests/offload_rl/test_workload_fused_draw.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from offload_rl.cell.device_seeding import pcg64_head
from offload_rl.workloads import kernels, quantile_interp
from offload_rl.workloads.distributions import EmpiricalDist, GeometricMixtureTurns, mixture_tables
from offload_rl.workloads.lazy_draw import distribution_table
from offload_rl.workloads.params import WorkloadParams
from offload_rl.workloads.request import FloatArray, IntArray, Request, TokenScaling
from offload_rl.workloads.stream import scaling_caps, stream_requests


@dataclass(frozen=True)
class FusedPlan:
    """The kernels' arguments that depend on the workload only (made once per workload)."""

    params: WorkloadParams
    scaling: TokenScaling
    turns: tuple[FloatArray, FloatArray]
    """The turn mixture's weights' CDF and means."""
    max_turns: int
    gap: tuple[FloatArray, FloatArray]
    """The gap table's probabilities and log values."""
    lengths: tuple[FloatArray, ...]
    """The first-prompt, follow-up and output tables' probabilities and log values."""
    caps: IntArray

    def sample(self, rng: np.random.Generator, n: int, horizon_s: float) -> list[Request] | None:
        """The stream of ``SyntheticWorkload.sample``'s draw over ``horizon_s`` (its
        generator calls: ``draw_sessions_lazy``'s), None where fewer than ``n`` requests
        arrive in ``[0, horizon_s)`` (the caller draws again over a longer horizon)."""
        p = self.params
        n_sessions = int(rng.poisson(p.session_rate_per_s * (p.warmup_s + horizon_s)))
        head = pcg64_head(rng)  # runs_here: not None
        starts, turns, gaps, u = kernels.call(
            "draw_front", head, n_sessions, -p.warmup_s, horizon_s, *self.turns,
            self.max_turns, *self.gap,
        )  # fmt: skip
        np.exp(gaps, out=gaps)  # EmpiricalDist.from_raw's exp of the whole draw's gaps
        chosen, session, turn, arrival, rows, place, lengths = kernels.call(
            "stream_rows", turns, starts, gaps, u, horizon_s, n, *self.lengths
        )
        if len(chosen) < n:
            return None
        np.exp(lengths, out=lengths)  # from_raw's exp of the rows' new and output tokens
        columns = kernels.call(
            "columns_of_rows", chosen, session, turn, turns, arrival, rows, place, lengths,
            float(self.scaling.scale), self.caps,
        )  # fmt: skip
        return stream_requests(*columns)


def fused_plan(p: WorkloadParams, scaling: TokenScaling) -> FusedPlan | None:
    """The plan for ``p``, None where the fused kernels do not draw it: lengths correlated or
    not all empirical, gaps not empirical, turns not a geometric mixture of finite means."""
    dists = (p.first_prompt_tokens, p.followup_prompt_tokens, p.output_tokens, p.gap_s)
    if p.correlation is not None or not all(isinstance(d, EmpiricalDist) for d in dists):
        return None
    if not isinstance(p.turns, GeometricMixtureTurns):
        return None
    turns = mixture_tables(p.turns)
    if turns is None:
        return None
    tables = [distribution_table(cast(EmpiricalDist, d)) for d in dists]
    return FusedPlan(
        p,
        scaling,
        turns,
        int(p.turns.max_turns),
        tables[3],
        tuple(a for table in tables[:3] for a in table),
        scaling_caps(scaling),
    )


def runs_here(rng: np.random.Generator) -> bool:
    """Whether the fused kernels may draw now: the workload's kernels run (compiled mode),
    their interpolation gave ``np.interp``'s bits here, and ``rng`` is a numpy Generator whose
    ``PCG64`` state they can draw on (:func:`~offload_rl.cell.device_seeding.pcg64_head`)."""
    return (
        type(rng) is np.random.Generator
        and pcg64_head(rng) is not None
        and kernels.compiled() is not None
        and quantile_interp.compiled_matches()
    )
