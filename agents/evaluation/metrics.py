"""The metrics of an evaluation: per policy and per trace family, with paired differences.

The content of ``metrics.json`` is deterministic (no wall-clock values), so two runs with the
same arguments write the same file whatever ``workers`` was.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from agents.evaluation.confidence import mean_ci95
from agents.evaluation.result import EvaluationResult
from agents.evaluation.rollout import concat_column
from offload_rl.cost_model import LITE_TIERS, TIERS

METRICS_SCHEMA_VERSION = 1


def _finite(x: float) -> float | None:
    """JSON-safe: NaN/inf (an undefined rate) become null."""
    return float(x) if math.isfinite(x) else None


def has_lite_records(records: Sequence[dict[str, np.ndarray]], column: str = "quality") -> bool:
    """Whether the records come from a scenario with a device-lite model (they carry the
    benchmark score of the model that answered each request)."""
    return bool(records) and column in records[0]


def tier_names(n_layers: int, lite: bool) -> np.ndarray:
    """Tier name of every tier index ``0 .. L+1`` (``.. L+2`` with a lite model)."""
    names = ["edge"] + ["split"] * (n_layers - 1) + ["device", "cloud"] + (["lite"] if lite else [])
    return np.array(names, dtype=object)


def lite_summary(lite: np.ndarray, quality: np.ndarray) -> dict[str, float | None]:
    """Share of requests the device-lite model answered and the mean benchmark score delivered."""
    n = int(quality.size)
    return {
        "lite_share": _finite(float(lite.mean())) if n else None,
        "mean_quality": _finite(float(quality.mean())) if n else None,
    }


def summarise(records: Sequence[dict[str, np.ndarray]], n_layers: int) -> dict[str, Any]:
    """Summary metrics of a list of episodes' records (with ``lite_share``, ``mean_quality``
    and a ``lite`` tier share when they come from a scenario with a device-lite model)."""
    per_episode = [float(r["reward"].mean()) for r in records if r["reward"].size]
    mean, half = mean_ci95(per_episode)
    lat = concat_column(records, "latency_s")
    tier = concat_column(records, "tier_index").astype(np.int64)
    n = int(lat.size)
    has_ctx = concat_column(records, "has_context").astype(bool)
    hits = concat_column(records, "cache_hit").astype(bool)
    L = n_layers
    lite = has_lite_records(records)
    top = L + 2 if lite else L + 1
    names = tier_names(L, lite)
    tiers_of = names[np.clip(tier, 0, top)] if n else np.zeros(0, dtype=object)
    split_counts = np.bincount(np.clip(tier, 0, top), minlength=top + 1) if n else np.zeros(top + 1)

    def pct(q: float) -> float | None:
        return _finite(float(np.percentile(lat, q))) if n else None

    def rate(column: str) -> float | None:
        return _finite(float(concat_column(records, column).mean())) if n else None

    n_ctx = int(has_ctx.sum())
    out = {
        "mean_reward": _finite(mean),
        "mean_reward_ci95": _finite(half),
        "mean_reward_ci95_low": _finite(mean - half),
        "mean_reward_ci95_high": _finite(mean + half),
        "episodes": len(per_episode),
        "n_requests": n,
        "mean_latency_s": _finite(float(lat.mean())) if n else None,
        "latency_p50_s": pct(50),
        "latency_p95_s": pct(95),
        "latency_p99_s": pct(99),
        "mean_ttft_s": rate("ttft_s"),
        "slo_violation_rate": rate("slo_violated"),
        "energy_j_per_request": rate("energy_j"),
        "usd_per_request": rate("usd"),
        "cache_hit_rate": _finite(float(hits[has_ctx].mean())) if n_ctx else None,
        "requests_with_context": n_ctx,
        "keep_rate": rate("keep"),
        "invalid_action_rate": rate("invalid_action"),
        "tier_share": {
            t: float((tiers_of == t).mean()) if n else 0.0 for t in (LITE_TIERS if lite else TIERS)
        },
        "split_share": {
            **{str(k): float(split_counts[k] / n) if n else 0.0 for k in range(L + 1)},
            "cloud": float(split_counts[L + 1] / n) if n else 0.0,
        },
    }
    if lite:
        out.update(lite_summary(concat_column(records, "lite"), concat_column(records, "quality")))
    return out


def compute_metrics(result: EvaluationResult) -> dict[str, Any]:
    """The content of ``metrics.json`` (deterministic: no wall-clock values)."""
    families = sorted({ep.family for ep in result.episodes})
    policies: dict[str, Any] = {}
    fam_metrics: dict[str, dict[str, Any]] = {f: {} for f in families}
    for spec in result.policies:
        recs = result.records[spec]
        policies[spec] = {
            "deployable": result.deployable[spec],
            **summarise(recs, result.n_layers),
        }
        for f in families:
            sub = [r for r, ep in zip(recs, result.episodes, strict=True) if ep.family == f]
            fam_metrics[f][spec] = {
                "deployable": result.deployable[spec],
                **summarise(sub, result.n_layers),
            }
    best_deployable = best_policy({k: v for k, v in policies.items() if v["deployable"]})
    if best_deployable is not None:
        _add_paired(policies, result.records, None, best_deployable, result)
        for f in families:
            ref = best_policy({k: v for k, v in fam_metrics[f].items() if v["deployable"]})
            if ref is not None:
                _add_paired(fam_metrics[f], result.records, f, ref, result)
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "args": result.args,
        "n_layers": result.n_layers,
        "best_policy": best_policy(policies),
        "best_deployable_policy": best_deployable,
        "policies": policies,
        "families": fam_metrics,
        "episodes": [asdict(ep) for ep in result.episodes],
    }


def _add_paired(
    scope: dict[str, Any],
    records: dict[str, list[dict[str, np.ndarray]]],
    family: str | None,
    reference: str,
    result: EvaluationResult,
) -> None:
    """Per policy: mean reward minus ``reference``'s, paired over the same episodes, with its
    95% CI (much tighter than comparing two unpaired CIs: the episodes are shared)."""
    keep = [family is None or ep.family == family for ep in result.episodes]
    ref = np.array([r["reward"].mean() for r, k in zip(records[reference], keep, strict=True) if k])
    for spec, m in scope.items():
        mine = np.array([r["reward"].mean() for r, k in zip(records[spec], keep, strict=True) if k])
        diff, half = mean_ci95(mine - ref)
        m["paired_reference"] = reference
        m["paired_diff"] = _finite(diff)
        m["paired_diff_ci95"] = _finite(half)


def best_policy(policies: dict[str, Any]) -> str | None:
    """The policy with the highest mean reward (None when no policy has one)."""
    scored = [(v["mean_reward"], k) for k, v in policies.items() if v["mean_reward"] is not None]
    return max(scored)[1] if scored else None
