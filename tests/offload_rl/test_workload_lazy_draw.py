"""The lazy draw (lengths mapped only for the rows the stream reads) gives the whole draw's
columns and leaves the generator where the whole draw leaves it.

:func:`~offload_rl.workloads.lazy_draw.draw_sessions_lazy` must make ``draw_sessions``' generator
calls in its order (later draws of a reset read the same generator), and
:func:`~offload_rl.workloads.lazy_draw.chosen_columns_lazy` must give
``SyntheticWorkload._chosen_columns`` of the whole draw: independent and correlated lengths,
empirical and lognormal distributions, compiled (the default workload in compiled mode) and
numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.workloads.correlation import SessionCorrelation
from offload_rl.workloads.distributions import LognormalDist
from offload_rl.workloads.lazy_draw import chosen_columns_lazy, draw_sessions_lazy, numpy_columns
from offload_rl.workloads.params import WorkloadParams, default_workload_params
from offload_rl.workloads.synthetic import SyntheticWorkload, draw_sessions
from tests.offload_rl.workload_draws import DRAW_ARGS, assert_sample_is_the_python_sample

BASE = default_workload_params()


def _params(correlated: bool, lognormal: bool) -> WorkloadParams:
    update: dict[str, object] = {}
    if correlated:
        update["correlation"] = SessionCorrelation(output_lag1=0.7, new_lag1=0.3, new_output=0.2)
    if lognormal:
        update["followup_prompt_tokens"] = LognormalDist(median=40.0, sigma=1.1)
        update["output_tokens"] = LognormalDist(median=200.0, sigma=0.8)
    return BASE.model_copy(update=update)


@settings(max_examples=60, deadline=None)
@given(**DRAW_ARGS, correlated=st.booleans(), lognormal=st.booleans())
def test_lazy_columns_are_the_whole_draws(
    seed: int, horizon: float, rate: float, cut: int, correlated: bool, lognormal: bool
) -> None:
    p = _params(correlated, lognormal)
    whole_rng, lazy_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    d = draw_sessions(p, whole_rng, rate, horizon)
    lazy = draw_sessions_lazy(p, lazy_rng, rate, horizon)
    assert whole_rng.bit_generator.state == lazy_rng.bit_generator.state
    assert np.array_equal(d.arrival, lazy.arrival)
    keep = np.flatnonzero((d.arrival >= 0.0) & (d.arrival < horizon))
    if keep.size == 0:
        return
    chosen = keep[np.argsort(d.arrival[keep], kind="stable")[:cut]]
    want = SyntheticWorkload._chosen_columns(d, chosen)
    for got in (chosen_columns_lazy(lazy, chosen), numpy_columns(lazy, chosen)):
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            assert np.array_equal(g, w, equal_nan=True)


@pytest.mark.skipif(not cd.AVAILABLE, reason="numba missing or OFFLOAD_RL_COMPILED=0")
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 600),
    correlated=st.booleans(),
    lognormal=st.booleans(),
)
def test_sample_is_the_python_sample(seed: int, n: int, correlated: bool, lognormal: bool) -> None:
    """Compiled mode samples through the lazy draw; Python mode through the whole draw."""
    assert_sample_is_the_python_sample(SyntheticWorkload(_params(correlated, lognormal)), seed, n)
