"""The workload's compiled quantile interpolation is ``np.interp``, bit for bit.

:func:`offload_rl.workloads.quantile_interp.interp_quantiles` maps an ``EmpiricalDist``'s
uniforms through its quantile table with :mod:`offload_rl.workloads.compiled_interp` when the
cell runs compiled; every gap and token length of a synthetic stream goes through it, so any
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
from offload_rl.workloads.distributions import EmpiricalDist

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
