"""The synthetic stream's columns, computed for the chosen requests only, are the columns
computed for the whole draw and then picked.

``SyntheticWorkload._chosen_columns`` reads a draw's prior context and next-turn gaps at the
requests that make the stream (a draw holds ~15x more: the warm-up); the values must be those of
:meth:`SessionDraw.prior_context` and :meth:`SessionDraw.next_index` over the whole draw, picked.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings

from offload_rl.workloads.params import default_workload_params
from offload_rl.workloads.synthetic import SessionDraw, SyntheticWorkload, draw_sessions
from tests.offload_rl.workload_draws import DRAW_ARGS

PARAMS = default_workload_params()


def _whole_draw_columns(d: SessionDraw, chosen: np.ndarray) -> tuple[np.ndarray, ...]:
    """The columns as the stream took them before (whole-draw arrays, then ``[chosen]``)."""
    total = len(d.session)
    position = np.full(total + 1, -1, dtype=np.int64)
    position[chosen] = np.arange(len(chosen))
    nxt = d.next_index()
    in_stream = (nxt >= 0) & (position[nxt] >= 0)
    gap_next = np.full(total, np.nan)
    gap_next[in_stream] = d.arrival[nxt[in_stream]] - d.arrival[in_stream]
    t0 = d.arrival[chosen[0]]
    return (
        d.arrival[chosen] - t0,
        d.session[chosen],
        d.new[chosen],
        d.output[chosen],
        d.prior_context()[chosen],
        gap_next[chosen],
    )


@settings(max_examples=60, deadline=None)
@given(**DRAW_ARGS)
def test_chosen_columns_are_the_whole_draws_picked(
    seed: int, horizon: float, rate: float, cut: int
) -> None:
    d = draw_sessions(PARAMS, np.random.default_rng(seed), rate, horizon)
    keep = np.flatnonzero((d.arrival >= 0.0) & (d.arrival < horizon))
    if keep.size == 0:
        return
    chosen = keep[np.argsort(d.arrival[keep], kind="stable")[:cut]]
    got = SyntheticWorkload._chosen_columns(d, chosen)
    want = _whole_draw_columns(d, chosen)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        assert np.array_equal(g, w, equal_nan=True)
