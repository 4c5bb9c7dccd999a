"""The fused sample (the whole synthetic stream in one compiled call) is the numpy reference's
stream, and leaves the generator where the reference leaves it.

:class:`~offload_rl.workloads.fused_draw.FusedPlan` draws every EdgeCell-v0 reset's requests in
compiled mode: the same generator calls in the same order as ``draw_sessions`` (later draws of
a reset read the same generator), and the same Request objects (values and Python types) as
the whole numpy draw of ``OFFLOAD_RL_COMPILED=0``, for any parameters of the default's shape
(geometric-mixture turns, empirical gaps and lengths), token scaling, and draws that come up
short (drawn again over a longer horizon).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell import device_seeding
from offload_rl.workloads import fused_draw
from offload_rl.workloads.correlation import SessionCorrelation
from offload_rl.workloads.distributions import (
    EmpiricalDist,
    GeometricMixtureTurns,
    LognormalDist,
    PmfTurns,
)
from offload_rl.workloads.params import WorkloadParams, default_workload_params
from offload_rl.workloads.request import TokenScaling
from offload_rl.workloads.synthetic import SyntheticWorkload
from tests.offload_rl.workload_draws import assert_sample_is_the_python_sample

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE, reason="numba missing (the `fast` extra) or OFFLOAD_RL_COMPILED=0"
)

BASE = default_workload_params()


@st.composite
def empirical(draw: st.DrawFn, low: float, high: float) -> EmpiricalDist:
    """A quantile table: probabilities from 0 to 1, values non-decreasing (flat in places)."""
    inner = draw(st.lists(st.floats(0.001, 0.999), max_size=14, unique=True))
    probs = [0.0, *sorted(inner), 1.0]
    values = sorted(draw(st.lists(st.floats(low, high), min_size=len(probs), max_size=len(probs))))
    return EmpiricalDist(probs=probs, values=values)


@st.composite
def params(draw: st.DrawFn) -> WorkloadParams:
    """Parameters of the default's shape: mixture turns (both of geometric's algorithms: means
    below and above 3), empirical gaps and lengths, a warm-up up to the default's."""
    k = draw(st.integers(1, 3))
    turns = GeometricMixtureTurns(
        weights=draw(st.lists(st.floats(0.01, 5.0), min_size=k, max_size=k)),
        means=draw(st.lists(st.floats(1.0, 12.0), min_size=k, max_size=k)),
        max_turns=draw(st.integers(1, 64)),
    )
    return BASE.model_copy(
        update={
            "session_rate_per_s": draw(st.floats(0.005, 0.3)),
            "warmup_s": draw(st.sampled_from([0.0, 300.0, 15300.0])),
            "turns": turns,
            "gap_s": draw(empirical(0.5, 20000.0)),
            "first_prompt_tokens": draw(empirical(1.0, 5000.0)),
            "followup_prompt_tokens": draw(empirical(0.2, 3000.0)),
            "output_tokens": draw(empirical(0.2, 3000.0)),
        }
    )


scalings = st.sampled_from(
    [
        TokenScaling(),
        TokenScaling(scale=0.37, max_context_tokens=900, max_new_tokens=300, max_output_tokens=200),
        TokenScaling(scale=2.0, max_context_tokens=20000, max_new_tokens=8000),
    ]
)


@settings(max_examples=80, deadline=None)
@given(p=params(), scaling=scalings, seed=st.integers(0, 2**63 - 1), n=st.integers(1, 400))
def test_fused_sample_is_the_numpy_sample(
    p: WorkloadParams, scaling: TokenScaling, seed: int, n: int
) -> None:
    wl = SyntheticWorkload(p, scaling)
    assert wl._fused_plan() is not None  # the fused kernel draws these parameters
    assert_sample_is_the_python_sample(wl, seed, n)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), n=st.sampled_from([1, 2, 257, 600]))
def test_the_default_workloads_stream_is_the_numpy_one(seed: int, n: int) -> None:
    """EdgeCell-v0's workload (the default parameters), draws that come up short included
    (a short stream's first horizon often holds too few requests: drawn again)."""
    assert_sample_is_the_python_sample(SyntheticWorkload(BASE), seed, n)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), n=st.sampled_from([1, 257]))
def test_a_buffered_32_bit_word_survives_the_fused_draw(seed: int, n: int) -> None:
    """The fused kernels draw on the generator's PCG64 state words in place: a 32-bit word
    numpy buffered before stays buffered, as numpy's own draws leave it."""
    assert_sample_is_the_python_sample(SyntheticWorkload(BASE), seed, n, buffered=True)


def _counted_fused_samples(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at each FusedPlan.sample call."""
    calls: list[int] = []
    sample = fused_draw.FusedPlan.sample

    def counted(self: fused_draw.FusedPlan, *args: object) -> object:
        calls.append(1)
        return sample(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fused_draw.FusedPlan, "sample", counted)
    return calls


def test_the_fused_kernel_draws_the_default_workload(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counted_fused_samples(monkeypatch)
    assert len(SyntheticWorkload(BASE).sample(np.random.default_rng(3), 257)) == 257
    assert calls


@pytest.mark.parametrize("seed", [0, 11])
def test_without_pcg64s_layout_the_lazy_draw_draws(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Where numpy's PCG64 state is not laid out as the kernels read it (another numpy), the
    fused kernels stay off and the lazy draw gives the same stream."""
    monkeypatch.setattr(device_seeding, "_pcg64_layout_holds", lambda: False)
    calls = _counted_fused_samples(monkeypatch)
    assert not fused_draw.runs_here(np.random.default_rng(seed))
    assert_sample_is_the_python_sample(SyntheticWorkload(BASE), seed, 257)
    assert not calls


@pytest.mark.parametrize(
    "update",
    [
        {"correlation": SessionCorrelation(output_lag1=0.7, new_lag1=0.3, new_output=0.2)},
        {"output_tokens": LognormalDist(median=200.0, sigma=0.8)},
        {"gap_s": LognormalDist(median=60.0, sigma=1.5)},
        {"turns": PmfTurns(pmf=[0.5, 0.3, 0.2])},
        {"turns": GeometricMixtureTurns(weights=[1.0], means=[float("inf")])},
    ],
)
def test_other_shapes_take_the_lazy_draw(update: dict[str, object]) -> None:
    p = BASE.model_copy(update=update)
    assert fused_draw.fused_plan(p, TokenScaling()) is None
