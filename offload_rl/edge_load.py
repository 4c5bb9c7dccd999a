"""The load that other users put on the edge server, as a seeded stochastic process.

Utilisation ``rho(t)`` switches between a calm and a busy regime (a two-state Markov chain with
exponential dwell times) with AR(1) noise around each regime's level. A request that reaches
the edge waits in its queue for ``service_s * rho / (1 - rho)`` on average (M/M/1 waiting time),
times an exponential draw per request, and its layers run ``1 + slowdown * rho`` times slower
(batching with other users' work). The device only sees ``rho`` as the edge last reported it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

FloatOrArray = TypeVar("FloatOrArray", float, np.ndarray)


class EdgeLoadParams(BaseModel):
    """Parameters of the edge load process (scenario key ``edge.load``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["markov", "constant"] = "markov"
    calm_util: float = Field(0.3, ge=0.0, lt=1.0)
    busy_util: float = Field(0.85, ge=0.0, lt=1.0)
    mean_calm_s: float = Field(180.0, gt=0.0)
    mean_busy_s: float = Field(60.0, gt=0.0)
    noise_sd: float = Field(0.05, ge=0.0)
    ar_coeff: float = Field(0.9, ge=0.0, lt=1.0)
    step_s: float = Field(1.0, gt=0.0)
    max_util: float = Field(0.95, gt=0.0, lt=1.0)
    service_s: float = Field(0.05, ge=0.0, description="mean service time of one queued job")
    slowdown: float = Field(0.5, ge=0.0, description="layer time x (1 + slowdown * rho)")
    report_lag_s: float = Field(2.0, ge=0.0, description="age of the load the device sees")

    def mean_queue_s(self, util: FloatOrArray) -> FloatOrArray:
        """Mean M/M/1 waiting time at utilisation ``util`` (the environment's truth, the
        planners' prediction at the reported load)."""
        return self.service_s * util / (1.0 - util)

    def slowdown_at(self, util: FloatOrArray) -> FloatOrArray:
        """Factor by which edge layer time grows at utilisation ``util``."""
        return 1.0 + self.slowdown * util


@dataclass(frozen=True)
class EdgeLoadSeries:
    """One realisation of the edge utilisation, sampled every ``step_s`` seconds."""

    util: np.ndarray
    step_s: float
    params: EdgeLoadParams

    def util_at(self, t: float) -> float:
        """Utilisation at episode time ``t`` (held past the end)."""
        i = int(t / self.step_s)
        n = len(self.util)
        return float(self.util[i if i < n else n - 1]) if i >= 0 else float(self.util[0])

    def util_at_many(self, times: np.ndarray) -> np.ndarray:
        """Utilisation at many episode times (clamped to the series)."""
        idx = np.clip((times / self.step_s).astype(np.int64), 0, len(self.util) - 1)
        return self.util[idx]

    def reported_at(self, t: float) -> float:
        """What the edge last reported: the utilisation ``report_lag_s`` ago."""
        return self.util_at(max(t - self.params.report_lag_s, 0.0))


def generate_edge_load(
    params: EdgeLoadParams, duration_s: float, rng: np.random.Generator
) -> EdgeLoadSeries:
    """Draw one utilisation series covering ``[0, duration_s]``."""
    n = max(int(np.ceil(duration_s / params.step_s)) + 1, 1)
    if params.kind == "constant":
        return EdgeLoadSeries(np.full(n, params.calm_util), params.step_s, params)
    # regime path: alternate calm/busy segments with exponential dwell times
    levels = np.empty(n)
    busy = bool(rng.random() < params.mean_busy_s / (params.mean_busy_s + params.mean_calm_s))
    i = 0
    while i < n:
        mean = params.mean_busy_s if busy else params.mean_calm_s
        length = max(round(rng.exponential(mean) / params.step_s), 1)
        levels[i : i + length] = params.busy_util if busy else params.calm_util
        i += length
        busy = not busy
    # AR(1) noise with stationary sd = noise_sd: x_j = a x_{j-1} + e_j, computed as a
    # convolution with a^k truncated where a^k < 1e-12 (a reset must stay cheap)
    a = params.ar_coeff
    eps = rng.normal(0.0, params.noise_sd * np.sqrt(1 - a**2), size=n)
    x0 = rng.normal(0.0, params.noise_sd)
    taps = 1 if a == 0.0 else min(n, int(np.ceil(np.log(1e-12) / np.log(a))) + 1)
    noise = np.convolve(eps, a ** np.arange(taps))[:n] + x0 * a ** np.arange(1, n + 1)
    util = np.clip(levels + noise, 0.0, params.max_util)
    return EdgeLoadSeries(util, params.step_s, params)
