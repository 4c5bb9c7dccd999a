"""Lengths correlated across the turns of a session: a Gaussian copula with AR(1) latents.

In recorded chats a long answer is followed by a long answer (BurstGPT: the log output lengths of
consecutive turns correlate at 0.77), so "the previous turn was long" is information a controller
can use. Independent draws erase it. Here each session carries a latent pair
``z_t = (z_new, z_out)`` per turn ``t``:

* ``z_0 ~ N(0, S)`` with ``S = [[1, r], [r, 1]]`` (``r`` = ``new_output``, within one turn);
* ``z_t = A z_{t-1} + e_t``, ``A = diag(new_lag1, output_lag1)``, ``e_t ~ N(0, S - A S A)``,

so every turn's ``z_t`` is ``N(0, S)`` and each length is its fitted distribution's
``from_normal(z)``: the marginals are exactly those of the independent draws, only the
dependence changes. Turn 0's ``z_new`` maps to the first prompt, later ones to follow-up
messages. The parameters are correlations of normal scores (rank-based), fitted by
``experiments/fitting/fit_workload.py`` and shipped in ``workload_session_correlation.json``.
"""

from __future__ import annotations

import functools
import importlib.resources
import itertools
import json

import numpy as np
from pydantic import Field, model_validator

from offload_rl.workloads.distributions import EmpiricalDist, LognormalDist, StrictModel
from offload_rl.workloads.request import FloatArray, IntArray

CORRELATION_RESOURCE = "workload_session_correlation.json"


class SessionCorrelation(StrictModel):
    """Correlations of the latent normal scores of a session's lengths (see module doc)."""

    output_lag1: float = Field(0.0, gt=-1.0, lt=1.0)
    """Output of turn ``t-1`` with output of turn ``t``."""
    new_lag1: float = Field(0.0, gt=-1.0, lt=1.0)
    """New prompt tokens of turn ``t-1`` with those of turn ``t``."""
    new_output: float = Field(0.0, gt=-1.0, lt=1.0)
    """New prompt tokens with the output of the same turn."""

    @model_validator(mode="after")
    def _check(self) -> SessionCorrelation:
        q = self.innovation_cov()
        if np.linalg.det(q) <= 0.0:
            raise ValueError(
                f"no stationary process has these correlations (innovation covariance {q.tolist()}"
                " is not positive definite): lower new_output"
            )
        return self

    def stationary_cov(self) -> FloatArray:
        """``S``: the covariance of one turn's ``(z_new, z_out)``."""
        r = self.new_output
        return np.array([[1.0, r], [r, 1.0]])

    def innovation_cov(self) -> FloatArray:
        """``S - A S A``: what keeps ``z_t`` at covariance ``S`` turn after turn."""
        a = np.diag([self.new_lag1, self.output_lag1])
        s = self.stationary_cov()
        return s - a @ s @ a

    def latent(self, turn: IntArray, rng: np.random.Generator) -> FloatArray:
        """``(n, 2)`` latent scores of requests in session-major order (turn ``t`` of a session
        right after its turn ``t - 1``), one ``N(0, S)`` pair per request."""
        n = len(turn)
        z = rng.standard_normal((n, 2)) @ np.linalg.cholesky(self.innovation_cov()).T
        first = turn == 0
        z[first] = (
            rng.standard_normal((int(first.sum()), 2)) @ np.linalg.cholesky(self.stationary_cov()).T
        )
        a = np.array([self.new_lag1, self.output_lag1])
        order = np.argsort(turn, kind="stable")
        bounds = np.searchsorted(turn[order], np.arange(1, int(turn.max(initial=0)) + 2))
        for lo, hi in itertools.pairwise(bounds):
            rows = order[lo:hi]
            z[rows] += a * z[rows - 1]
        return z


def correlated_lengths(
    correlation: SessionCorrelation,
    turn: IntArray,
    first_prompt: LognormalDist | EmpiricalDist,
    followup_prompt: LognormalDist | EmpiricalDist,
    output: LognormalDist | EmpiricalDist,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray]:
    """New-prompt and output tokens (``>= 1``) of requests in session-major order."""
    z = correlation.latent(turn, rng)
    first = turn == 0
    new = np.empty(len(turn))
    new[first] = first_prompt.from_normal(z[first, 0])
    new[~first] = followup_prompt.from_normal(z[~first, 0])
    out = output.from_normal(z[:, 1])
    return _tokens(new), _tokens(out)


def _tokens(x: FloatArray) -> IntArray:
    return np.maximum(np.rint(x), 1).astype(np.int64)


@functools.lru_cache(maxsize=1)
def fitted_session_correlation() -> SessionCorrelation:
    """The correlation fitted to BurstGPT's sessions (``offload_rl/data/`` + the resource)."""
    resource = importlib.resources.files("offload_rl") / "data" / CORRELATION_RESOURCE
    data = json.loads(resource.read_text(encoding="utf-8"))
    return SessionCorrelation.model_validate(data["correlation"])
