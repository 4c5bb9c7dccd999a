"""Fitted parameter distributions: positive lengths and gaps, and turns per session.

Pydantic models with a ``kind`` discriminator, so a YAML/JSON file of workload parameters names
which family each quantity follows; each can ``sample`` and give its ``mean``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from offload_rl.workloads import kernels
from offload_rl.workloads.quantile_interp import interp_quantiles
from offload_rl.workloads.request import FloatArray, IntArray


def normal_cdf(z: FloatArray) -> FloatArray:
    """``Phi(z)`` to double precision (numpy has no erf; ``erfc`` keeps the lower tail exact)."""
    return np.asarray([0.5 * math.erfc(-x / math.sqrt(2.0)) for x in z.tolist()], dtype=float)


def choice_cdf(p: FloatArray | list[float]) -> FloatArray:
    """The normalised cumulative shares ``Generator.choice(..., p=p)`` searches."""
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    return cdf


def choice_indices(rng: np.random.Generator, cdf: FloatArray, size: int) -> IntArray:
    """``rng.choice(len(p), size=size, p=p)`` with ``cdf = choice_cdf(p)`` for a valid ``p``:
    numpy's algorithm (``size`` uniforms searched in the CDF), the same draws and indices,
    without its ~15 us of argument checks (``tests/offload_rl/cell/test_cell_reset.py``
    checks it against ``choice``)."""
    return cdf.searchsorted(rng.random(size), side="right").astype(np.int64, copy=False)


class StrictModel(BaseModel):
    """Frozen, and unknown keys are errors (a typo in a parameters file must not pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LognormalDist(StrictModel):
    """A positive quantity whose logarithm is normal: ``median x exp(sigma x N(0, 1))``."""

    kind: Literal["lognormal"] = "lognormal"
    median: float = Field(gt=0.0)
    sigma: float = Field(ge=0.0)

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return self.from_raw(self.draw_raw(rng, n))

    def draw_raw(self, rng: np.random.Generator, n: int) -> FloatArray:
        """The random numbers :meth:`sample` maps (its only generator call): a draw can keep
        them and map only the entries it uses (:meth:`from_raw` is element by element)."""
        return rng.standard_normal(n)

    def from_raw(self, raw: FloatArray) -> FloatArray:
        """The values of :meth:`sample` for its raw draws ``raw``."""
        return self.median * np.exp(self.sigma * raw)

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    def from_normal(self, z: FloatArray) -> FloatArray:
        """The values whose quantiles are ``Phi(z)``: the marginal of a Gaussian copula."""
        return self.median * np.exp(self.sigma * z)


class EmpiricalDist(StrictModel):
    """A positive quantity given by quantiles; sampled by inverse CDF, log-linear between them.

    ``values[i]`` is the ``probs[i]`` quantile; ``probs`` rises from 0 to 1.
    """

    kind: Literal["empirical"] = "empirical"
    probs: list[float] = Field(min_length=2)
    values: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self) -> EmpiricalDist:
        if len(self.probs) != len(self.values):
            raise ValueError("probs and values must have the same length")
        if self.probs[0] != 0.0 or self.probs[-1] != 1.0:
            raise ValueError("probs must start at 0 and end at 1")
        if any(b <= a for a, b in zip(self.probs, self.probs[1:], strict=False)):
            raise ValueError("probs must be strictly increasing")
        if any(v <= 0 or not math.isfinite(v) for v in self.values):
            raise ValueError("values must be positive and finite")
        if any(b < a for a, b in zip(self.values, self.values[1:], strict=False)):
            raise ValueError("values must be non-decreasing")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return self.from_raw(self.draw_raw(rng, n))

    def draw_raw(self, rng: np.random.Generator, n: int) -> FloatArray:
        """The uniforms :meth:`sample` maps (its only generator call): a draw can keep them
        and map only the entries it uses (:meth:`from_raw` is element by element)."""
        return rng.random(n)

    def from_raw(self, raw: FloatArray) -> FloatArray:
        """The values of :meth:`sample` for its uniforms ``raw``."""
        # np.interp's values (compiled where the cell runs compiled: quantile_interp)
        return np.exp(interp_quantiles(raw, self.probs, np.log(self.values)))

    def from_normal(self, z: FloatArray) -> FloatArray:
        """The values whose quantiles are ``Phi(z)``: standard normal ``z`` gives exactly the
        distribution :meth:`sample` draws (the marginal of a Gaussian copula)."""
        return np.exp(np.interp(normal_cdf(z), self.probs, np.log(self.values)))

    def mean(self) -> float:
        grid = np.linspace(0.0, 1.0, 4001)
        return float(np.exp(np.interp(grid, self.probs, np.log(self.values))).mean())


PositiveDist = Annotated[LognormalDist | EmpiricalDist, Field(discriminator="kind")]


class GeometricMixtureTurns(StrictModel):
    """Turns per session: a mixture of geometrics on ``{1, 2, ...}`` (short and long chats)."""

    kind: Literal["geometric_mixture"] = "geometric_mixture"
    weights: list[float] = Field(min_length=1)
    means: list[float] = Field(min_length=1)
    max_turns: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _check(self) -> GeometricMixtureTurns:
        if len(self.weights) != len(self.means):
            raise ValueError("weights and means must have the same length")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        if any(m < 1 for m in self.means):
            raise ValueError("means must be >= 1 (a session has at least one turn)")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        fast = _compiled_turns(self, rng, n)
        if fast is not None:
            return fast
        w = np.asarray(self.weights, dtype=float)
        component = choice_indices(rng, choice_cdf(w / w.sum()), n)  # rng.choice(p=w / w.sum())
        p = 1.0 / np.asarray(self.means, dtype=float)[component]
        return np.minimum(rng.geometric(p), self.max_turns).astype(np.int64)

    def mean(self) -> float:
        w = np.asarray(self.weights, dtype=float)
        return float((w / w.sum()) @ np.asarray(self.means, dtype=float))


_MIXTURES: dict[int, tuple[GeometricMixtureTurns, FloatArray, FloatArray]] = {}


def mixture_tables(dist: GeometricMixtureTurns) -> tuple[FloatArray, FloatArray] | None:
    """The weights' CDF (``choice_cdf`` of the normalised weights) and the means (float64) that
    :func:`~offload_rl.workloads.compiled_workload.mixture_turns` draws from, made once per
    distribution object as the reference makes them; None for an infinite mean (numpy rejects
    its ``p = 0``: the reference raises)."""
    hit = _MIXTURES.get(id(dist))
    if hit is None or hit[0] is not dist:
        if len(_MIXTURES) >= 64:  # parameters made on the fly (tests): keep the cache small
            _MIXTURES.clear()
        w = np.asarray(dist.weights, dtype=float)
        means = np.asarray(dist.means, dtype=float)
        hit = _MIXTURES[id(dist)] = (dist, choice_cdf(w / w.sum()), means)
    if not np.isfinite(hit[2]).all():
        return None
    return hit[1], hit[2]


def _compiled_turns(
    dist: GeometricMixtureTurns, rng: np.random.Generator, n: int
) -> IntArray | None:
    """``dist.sample(rng, n)`` in one compiled call
    (:func:`~offload_rl.workloads.compiled_workload.mixture_turns`, the same draws and values)
    where the workload's kernels run, for a ``Generator`` and finite means; None otherwise."""
    if kernels.compiled() is None or type(rng) is not np.random.Generator:
        return None
    tables = mixture_tables(dist)
    if tables is None:
        return None
    out = np.empty(n, dtype=np.int64)
    kernels.call("mixture_turns", rng, *tables, int(dist.max_turns), out)
    return out


class PmfTurns(StrictModel):
    """Turns per session from an explicit pmf: ``pmf[k]`` is the probability of ``k + 1`` turns."""

    kind: Literal["pmf"] = "pmf"
    pmf: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> PmfTurns:
        if any(p < 0 for p in self.pmf) or sum(self.pmf) <= 0:
            raise ValueError("pmf must be >= 0 with a positive sum")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        p = np.asarray(self.pmf, dtype=float)
        return (choice_indices(rng, choice_cdf(p / p.sum()), n) + 1).astype(np.int64)

    def mean(self) -> float:
        p = np.asarray(self.pmf, dtype=float)
        return float((p / p.sum()) @ np.arange(1, len(p) + 1))


TurnsDist = Annotated[GeometricMixtureTurns | PmfTurns, Field(discriminator="kind")]
