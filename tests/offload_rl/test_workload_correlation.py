"""Session correlation: the copula keeps the marginals, reaches the fitted correlations, and the
``default`` workload (every existing number) is untouched unless a scenario opts in."""

from __future__ import annotations

import hashlib
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from offload_rl.workloads import (
    EmpiricalDist,
    SessionCorrelation,
    SyntheticWorkload,
    TokenScaling,
    correlated_lengths,
    default_correlated_params,
    default_workload_params,
    fitted_session_correlation,
    load_workload,
    load_workload_params,
)
from tests.offload_rl.test_workloads import _fit_script, assert_stream_ok

DEFAULT_FINGERPRINT = "ee5e53c6c4c553b75dc936d644b0cf58e9a9cb56e3c175181855daa1a83659cb"
"""sha256 of the reprs of 3 x 256 requests of ``default`` (seeds 0-2), taken on main before the
correlation existed: SplitCache-v0's episodes and the README's figures depend on it."""


def test_default_stream_is_bit_identical_to_before() -> None:
    digest = hashlib.sha256()
    for seed in range(3):
        stream = load_workload("default", TokenScaling()).sample(np.random.default_rng(seed), 256)
        for request in stream:
            digest.update(repr(request).encode())
    assert digest.hexdigest() == DEFAULT_FINGERPRINT
    assert default_workload_params().correlation is None


@settings(max_examples=60, deadline=None)
@given(u=st.lists(st.floats(1e-9, 1 - 1e-9), min_size=1, max_size=50))
def test_from_normal_is_the_inverse_cdf_draw(u: list[float]) -> None:
    """``from_normal(Phi^-1(u))`` is what ``sample`` makes of the uniform ``u``."""
    dist = default_workload_params().output_tokens
    assert isinstance(dist, EmpiricalDist)
    z = np.asarray([NormalDist().inv_cdf(x) for x in u])
    expected = np.exp(np.interp(u, dist.probs, np.log(dist.values)))
    np.testing.assert_allclose(dist.from_normal(z), expected, rtol=1e-7)


def _session_turns(n_sessions: int, turns: int) -> np.ndarray:
    return np.tile(np.arange(turns, dtype=np.int64), n_sessions)


def test_correlated_marginals_match_the_independent_ones() -> None:
    p = default_workload_params()
    turn = _session_turns(20_000, 4)
    corr = fitted_session_correlation()
    new, out = correlated_lengths(
        corr,
        turn,
        p.first_prompt_tokens,
        p.followup_prompt_tokens,
        p.output_tokens,
        np.random.default_rng(3),
    )
    rng = np.random.default_rng(4)
    probs = [0.05, 0.25, 0.5, 0.75, 0.95]
    for got, dist in (
        (out, p.output_tokens),
        (new[turn == 0], p.first_prompt_tokens),
        (new[turn > 0], p.followup_prompt_tokens),
    ):
        independent = np.maximum(np.rint(dist.sample(rng, 200_000)), 1)
        np.testing.assert_allclose(
            np.quantile(got, probs), np.quantile(independent, probs), rtol=0.06
        )


def _det(o: float, n: float, r: float) -> float:
    return (1 - n * n) * (1 - o * o) - r * r * (1 - n * o) ** 2


corr_params = (
    st.tuples(st.floats(-0.9, 0.95), st.floats(-0.9, 0.95), st.floats(-0.5, 0.5))
    .filter(lambda t: _det(*t) > 0.05)
    .map(lambda t: SessionCorrelation(output_lag1=t[0], new_lag1=t[1], new_output=t[2]))
)


@settings(max_examples=15, deadline=None)
@given(corr=corr_params, seed=st.integers(0, 2**32 - 1))
def test_latent_turns_are_standard_normal_with_the_asked_correlations(
    corr: SessionCorrelation, seed: int
) -> None:
    turn = _session_turns(6000, 3)
    z = corr.latent(turn, np.random.default_rng(seed))
    for t in range(3):
        at = z[turn == t]
        np.testing.assert_allclose(at.std(axis=0), 1.0, atol=0.06)
        assert np.corrcoef(at.T)[0, 1] == pytest.approx(corr.new_output, abs=0.06)
    prev, cur = z[turn == 1], z[turn == 2]
    assert np.corrcoef(prev[:, 1], cur[:, 1])[0, 1] == pytest.approx(corr.output_lag1, abs=0.06)
    assert np.corrcoef(prev[:, 0], cur[:, 0])[0, 1] == pytest.approx(corr.new_lag1, abs=0.06)


def test_impossible_correlations_are_rejected() -> None:
    with pytest.raises(ValidationError, match="positive definite"):
        SessionCorrelation(output_lag1=0.9, new_lag1=-0.9, new_output=0.9)
    with pytest.raises(ValidationError):
        SessionCorrelation(output_lag1=1.0)


def test_synthetic_stream_reaches_the_fitted_correlation() -> None:
    """The stream the environment draws, measured as the fitting script measures the recording."""
    script = _fit_script()
    fitted = fitted_session_correlation()
    workload = SyntheticWorkload(default_correlated_params(), TokenScaling.unlimited())
    measured = script.stream_correlations(workload.sample(np.random.default_rng(11), 30_000))
    for name in ("output_lag1", "new_lag1", "new_output"):
        assert measured[name]["normal_scores"] == pytest.approx(getattr(fitted, name), abs=0.03)
    independent = SyntheticWorkload(default_workload_params(), TokenScaling.unlimited())
    measured = script.stream_correlations(independent.sample(np.random.default_rng(11), 30_000))
    assert abs(measured["output_lag1"]["normal_scores"]) < 0.03


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400))
def test_correlated_stream_keeps_the_invariants(seed: int, n: int) -> None:
    scaling = TokenScaling()
    stream = load_workload("default-correlated", scaling).sample(np.random.default_rng(seed), n)
    assert len(stream) == n
    assert_stream_ok(stream, scaling)


def test_a_params_file_opts_in(tmp_path: Path) -> None:
    path = tmp_path / "corr.yaml"
    path.write_text("correlation:\n  output_lag1: 0.5\n", encoding="utf-8")
    params = load_workload_params(path)
    assert params.correlation == SessionCorrelation(output_lag1=0.5)
    assert params.output_tokens == default_workload_params().output_tokens
