"""Summary statistics of bandwidth traces, per trace and per family.

Everything is computed on 1-second averages (bytes integrated over each whole second; a final
partial second is dropped, and a trace shorter than one second counts as a single average).
That is how the table in ``../shared/README.md`` is defined, and this module reproduces it:

* a **family's** mean, median, p10, p90 and share of seconds below 0.1 Mbps **pool all seconds**
  of all its traces (long traces weigh more). Averaging per-trace means instead gives e.g.
  3.97 Mbps for the mahimahi uplinks, against the table's 1.63;
* its lag-1 autocorrelation is the **median over traces** of each trace's lag-1 autocorrelation;
* mahimahi ``.up`` and ``.down`` files in one folder are different links, so they are reported as
  two families, ``<folder> (.up)`` and ``<folder> (.down)`` (see :func:`family_key`).

Percentiles use numpy's default (linear interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from offload_rl.traces import BYTES_PER_MBIT, Trace

OUTAGE_MBPS: float = 0.1
"""Seconds averaging below this rate count as outage seconds (``share_below_0_1``)."""

MAHIMAHI_DIRECTIONS: tuple[str, ...] = (".up", ".down")


@dataclass(frozen=True)
class TraceStats:
    """1-second statistics of one trace or one family (rates in Mbps).

    ``share_below_0_1`` is a fraction in [0, 1]. ``lag1_autocorr`` is None when undefined (a
    constant series, or fewer than 3 seconds). ``duration_s`` is the total of whole seconds used.
    """

    name: str
    family: str
    n_traces: int
    duration_s: float
    mean_mbps: float
    median_mbps: float
    p10_mbps: float
    p90_mbps: float
    share_below_0_1: float
    lag1_autocorr: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def family_key(trace: Trace) -> str:
    """The family a trace is reported under: its folder, split by direction for mahimahi."""
    for suffix in MAHIMAHI_DIRECTIONS:
        if trace.name.endswith(suffix):
            return f"{trace.family} ({suffix})"
    return trace.family


def seconds_mbps(trace: Trace) -> npt.NDArray[np.float64]:
    """Average capacity of each whole second of one period (exact integration)."""
    whole = math.floor(trace.duration_s + 1e-9)
    cum = trace.cum_bytes
    edges = np.arange(cum.size, dtype=np.float64) * trace.step_s
    if whole < 1:
        return np.array([trace.total_bytes / (BYTES_PER_MBIT * trace.duration_s)])
    bounds = np.arange(whole + 1, dtype=np.float64)
    cum_at = np.interp(bounds, edges, cum)
    return np.diff(cum_at) / BYTES_PER_MBIT


def lag1_autocorr(x: npt.NDArray[np.float64]) -> float | None:
    """Sample lag-1 autocorrelation ``sum(d[t] d[t+1]) / sum(d[t]^2)``, ``d = x - mean(x)``."""
    if x.size < 3:
        return None
    d = x - x.mean()
    denom = float(np.dot(d, d))
    if denom <= 1e-12 * max(1.0, float(x.mean()) ** 2) * x.size:
        return None
    return float(np.dot(d[:-1], d[1:]) / denom)


def _summarise(
    name: str, family: str, series: Sequence[npt.NDArray[np.float64]], autocorrs: list[float]
) -> TraceStats:
    pooled = np.concatenate(series)
    p10, median, p90 = np.percentile(pooled, [10.0, 50.0, 90.0])
    return TraceStats(
        name=name,
        family=family,
        n_traces=len(series),
        duration_s=float(sum(s.size for s in series)),
        mean_mbps=float(pooled.mean()),
        median_mbps=float(median),
        p10_mbps=float(p10),
        p90_mbps=float(p90),
        share_below_0_1=float(np.mean(pooled < OUTAGE_MBPS)),
        lag1_autocorr=float(np.median(autocorrs)) if autocorrs else None,
    )


def trace_stats(trace: Trace) -> TraceStats:
    """Statistics of one trace on its 1-second averages."""
    series = seconds_mbps(trace)
    ac = lag1_autocorr(series)
    return _summarise(trace.name, family_key(trace), [series], [] if ac is None else [ac])


def family_stats(traces: Sequence[Trace]) -> dict[str, TraceStats]:
    """Statistics per family (see :func:`family_key`), in order of first appearance.

    Rates pool every second of every trace; lag-1 AC is the median of the traces' values.
    """
    groups: dict[str, list[npt.NDArray[np.float64]]] = {}
    autocorrs: dict[str, list[float]] = {}
    for trace in traces:
        key = family_key(trace)
        series = seconds_mbps(trace)
        groups.setdefault(key, []).append(series)
        acs = autocorrs.setdefault(key, [])
        ac = lag1_autocorr(series)
        if ac is not None:
            acs.append(ac)
    return {key: _summarise(key, key, series, autocorrs[key]) for key, series in groups.items()}
