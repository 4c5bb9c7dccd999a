"""The workload's compiled kernels are the numpy code they replace, bit for bit.

:func:`offload_rl.workloads.quantile_interp.interp_quantiles` maps an ``EmpiricalDist``'s
uniforms through its quantile table, and ``synthetic._layout`` lays out a draw's requests and
their arrivals, with :mod:`offload_rl.workloads.compiled_workload` when the cell runs compiled;
every gap, arrival and token length of a synthetic stream goes through them, so any
difference in the last bit moves every episode.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.workloads import quantile_interp as qi
from offload_rl.workloads import synthetic
from offload_rl.workloads.distributions import EmpiricalDist, GeometricMixtureTurns

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A strictly increasing table (values flat in places), and points on, between and
    outside its points, NaN included."""
    xp = np.unique(draw(st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=20)))
    if xp.size < 2:
        xp = np.array([xp[0], xp[0] + 1.0])
    values = draw(st.lists(st.floats(-1e3, 1e3), min_size=xp.size, max_size=xp.size))
    fp = np.array(values, dtype=np.float64)
    if draw(st.booleans()):
        fp = np.sort(fp)  # a quantile table: non-decreasing, possibly flat
    extra = draw(st.lists(st.floats(-6.0, 6.0) | st.just(math.nan), max_size=20))
    seed = draw(st.integers(0, 2**32 - 1))
    lo, hi = float(xp[0]), float(xp[-1])
    x = np.concatenate([np.random.default_rng(seed).uniform(lo, hi, 200), xp, extra])
    return x, xp, fp


@settings(max_examples=200, deadline=None)
@given(tables())
def test_the_kernel_is_np_interp(table: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, xp, fp = table
    got = qi.interp_quantiles(x, xp.tolist(), fp)
    want = np.interp(x, xp, fp)
    assert qi._compiled() is not None  # the compiled kernel ran
    assert np.array_equal(got.view(np.int64), want.view(np.int64))


def test_empirical_samples_are_the_python_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    dist = EmpiricalDist(probs=[0.0, 0.1, 0.5, 0.9, 1.0], values=[1.0, 2.0, 8.0, 30.0, 400.0])
    compiled = dist.sample(np.random.default_rng(7), 5000)
    monkeypatch.setattr(cd, "AVAILABLE", False)
    python = dist.sample(np.random.default_rng(7), 5000)
    assert np.array_equal(compiled.view(np.int64), python.view(np.int64))


@settings(max_examples=150, deadline=None)
@given(
    turns=st.lists(st.integers(1, 9), min_size=0, max_size=40),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 3000.0, 1e7]),
)
def test_the_layout_is_numpys(turns: list[int], seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    t = np.array(turns, dtype=np.int64)
    starts = rng.uniform(-15300.0, 2000.0, t.size)
    gaps = rng.lognormal(0.0, 2.0, int(t.sum())) * scale
    ours_gaps = gaps.copy()
    got = synthetic._layout(t, starts, ours_gaps)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        want = synthetic._layout(t, starts, gaps)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.array_equal(g.view(np.uint8), w.view(np.uint8))
    assert np.array_equal(ours_gaps, gaps)


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=4).filter(lambda w: sum(w) > 0),
    means=st.lists(st.floats(1.0, 40.0), min_size=4, max_size=4),
    max_turns=st.integers(1, 80),
    n=st.integers(0, 3000),
    seed=st.integers(0, 2**63 - 1),
)
def test_mixture_turns_are_numpys(
    weights: list[float], means: list[float], max_turns: int, n: int, seed: int
) -> None:
    """The compiled turns (one uniform per session searched, then one geometric each: both
    of geometric's algorithms, search for ``p >= 1/3`` and inversion below) are numpy's draws,
    values and dtype, and leave the generator where numpy leaves it."""
    dist = GeometricMixtureTurns(weights=weights, means=means[: len(weights)], max_turns=max_turns)
    ours, ref = np.random.default_rng(seed), np.random.default_rng(seed)
    got = dist.sample(ours, n)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        want = dist.sample(ref, n)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert ours.bit_generator.state == ref.bit_generator.state
