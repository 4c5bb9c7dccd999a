"""Seeded synthetic bandwidth traces with the statistics of the recorded families.

The project must run without ``../shared``, so scenarios draw links from named presets fitted to
each recorded family (by ``experiments/fitting/fit_trace_presets.py``, into
``offload_rl/data/trace_presets.json``).

Model (a Gaussian copula of an AR(1) process, chosen because it reproduces a family's 1-second
*marginal* — mean, median, p10, p90, share of outage seconds — by construction, and its lag-1
autocorrelation with a single parameter):

1. a latent standard-normal AR(1) process on a native step (1 s in the fitted presets),
   ``z[k] = ar1 * z[k-1] + sqrt(1 - ar1^2) * e[k]``, ``z[0] ~ N(0, 1)``;
2. each ``z[k]`` is mapped to a rate through the family's quantile function:
   ``rate = Q(Phi(z))``, with ``Q`` piecewise linear through ``(quantile_levels,
   quantile_mbps)``. Outages (seconds near 0 Mbps) are the lower tail of ``Q``: they come in runs
   whose length follows from ``ar1``, like the fades of the recordings;
3. rates hold for the native step and are integrated onto ``step_s`` bins (bytes conserved).

``ar1`` is fitted so that the median lag-1 autocorrelation of generated traces as long as the
family's median trace equals the family's (the estimate depends on length, so the fit uses it).
The same seed gives the same trace, and a longer trace with the same seed extends a shorter one.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from itertools import pairwise
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from offload_rl.errors import ConfigError
from offload_rl.traces import BYTES_PER_MBIT, DEFAULT_STEP_S, FloatArray, Trace, resample_bytes

PRESETS_RESOURCE = ("data", "trace_presets.json")


class TracePreset(BaseModel):
    """Parameters of one synthetic link family (see the module docstring for the model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    fitted_to: str = Field("", description="the recorded family the parameters were fitted to")
    native_step_s: float = Field(1.0, gt=0.0, description="seconds each latent sample holds")
    ar1: float = Field(ge=0.0, lt=1.0, description="latent AR(1) coefficient per native step")
    quantile_levels: list[float] = Field(description="probabilities, 0 first, 1 last, increasing")
    quantile_mbps: list[float] = Field(description="rate at each level, non-decreasing, >= 0")

    @model_validator(mode="after")
    def _check_quantiles(self) -> TracePreset:
        levels, rates = self.quantile_levels, self.quantile_mbps
        if len(levels) < 2 or len(levels) != len(rates):
            raise ValueError("quantile_levels and quantile_mbps need the same length, at least 2")
        if levels[0] != 0.0 or levels[-1] != 1.0:
            raise ValueError("quantile_levels must start at 0 and end at 1")
        if any(b <= a for a, b in pairwise(levels)):
            raise ValueError("quantile_levels must be strictly increasing")
        if any(not math.isfinite(r) or r < 0.0 for r in rates):
            raise ValueError("quantile_mbps must be finite and >= 0")
        if any(b < a for a, b in pairwise(rates)):
            raise ValueError("quantile_mbps must be non-decreasing")
        if rates[-1] <= 0.0:
            raise ValueError("quantile_mbps must not be all zero")
        return self

    @property
    def mean_mbps(self) -> float:
        """Long-run mean rate: the integral of the piecewise-linear quantile function."""
        levels = np.asarray(self.quantile_levels)
        rates = np.asarray(self.quantile_mbps)
        return float(np.sum(np.diff(levels) * (rates[:-1] + rates[1:]) / 2.0))


_presets_cache: dict[str, TracePreset] | None = None

PRESETS: dict[str, TracePreset]
"""Name -> preset, read from ``offload_rl/data/trace_presets.json`` on first access."""


def _load_presets() -> dict[str, TracePreset]:
    global _presets_cache
    if _presets_cache is None:
        resource = resources.files("offload_rl").joinpath(*PRESETS_RESOURCE)
        try:
            raw: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
            _presets_cache = {
                name: TracePreset.model_validate({"name": name, **params})
                for name, params in raw["presets"].items()
            }
        except (OSError, KeyError, ValueError, ValidationError) as err:
            raise ConfigError(f"{resource}: cannot read trace presets: {err}") from None
    return _presets_cache


def __getattr__(name: str) -> Any:
    if name == "PRESETS":
        return _load_presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_preset(name: str) -> TracePreset:
    """The shipped preset called ``name``; ConfigError listing the valid names otherwise."""
    presets = _load_presets()
    try:
        return presets[name]
    except KeyError:
        raise ConfigError(
            f"unknown trace preset {name!r}; valid presets: {', '.join(presets)}"
        ) from None


def _std_normal_cdf(z: FloatArray) -> FloatArray:
    erf = np.frompyfunc(math.erf, 1, 1)
    return np.asarray(0.5 * (1.0 + erf(z / math.sqrt(2.0))), dtype=np.float64)


def latent_ar1(n: int, ar1: float, rng: np.random.Generator) -> FloatArray:
    """A stationary standard-normal AR(1) series of length ``n``."""
    noise = rng.standard_normal(n)
    innovation = math.sqrt(1.0 - ar1 * ar1)
    out = np.empty(n, dtype=np.float64)
    z = float(noise[0])
    out[0] = z
    scaled = (noise * innovation).tolist()
    for k in range(1, n):
        z = ar1 * z + scaled[k]
        out[k] = z
    return out


def generate_trace(
    preset: str | TracePreset, duration_s: float, seed: int, step_s: float = DEFAULT_STEP_S
) -> Trace:
    """A synthetic trace of ``duration_s`` seconds on ``step_s`` bins, deterministic in ``seed``."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    if not (math.isfinite(duration_s) and duration_s > 0.0):
        raise ConfigError(f"trace duration must be a positive number of seconds, got {duration_s}")
    if not (math.isfinite(step_s) and step_s > 0.0):
        raise ConfigError(f"trace step must be a positive number of seconds, got {step_s}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"trace seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    native = p.native_step_s
    n_native = max(1, math.ceil(duration_s / native - 1e-9))
    z = latent_ar1(n_native, p.ar1, rng)
    rates = np.interp(_std_normal_cdf(z), p.quantile_levels, p.quantile_mbps)
    edges = np.arange(n_native + 1, dtype=np.float64) * native
    edges[-1] = duration_s
    mbps = resample_bytes(edges, rates * np.diff(edges) * BYTES_PER_MBIT, step_s)
    if not float(mbps.sum()) > 0.0:
        raise ConfigError(
            f"preset {p.name!r} with seed {seed} gave no capacity in {duration_s:g} s "
            "(an outage throughout); use a longer duration or another seed"
        )
    return Trace(
        name=f"{p.name}-{seed}",
        family=p.name,
        source=f"synthetic:{p.name}:{seed}",
        step_s=step_s,
        mbps=mbps,
    )
