"""The metrics of a cell evaluation: per policy, per load level and per device class.

No survivorship bias at the episode's end: the headline ``mean_reward`` counts the cost of
finishing the requests still in the cell when the episode ends (``finish_cost``, see
:mod:`agents.evaluation.cell_rollout`); ``mean_reward_truncated`` is the figure without it.
Latency, TTFT, SLO and the other request figures are over *every decided request*, those
still in the cell at the end with the outcome they get when the cell runs on without new
decisions (no censoring: settling runs each of them to its last token). ``n_finished`` counts
the requests that finished inside the episode and ``unfinished_share`` the share that did not.
Reward and energy are the cell's (every device, every request in the system), so they are per
decision and are not split by device class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from agents.evaluation.cell_rollout import CLASS_NAMES, settled_reward
from agents.evaluation.confidence import mean_ci95
from agents.evaluation.metrics import has_lite_records, lite_summary, tier_names
from agents.evaluation.result import EvaluationResult
from agents.evaluation.rollout import concat_column
from offload_rl.cost_model import LITE_TIERS, TIERS

CELL_METRICS_SCHEMA_VERSION = 2  # 2: reward with finish_cost, outcomes of every request
Records = Sequence[dict[str, np.ndarray]]


def _finite(x: float) -> float | None:
    """JSON-safe: NaN/inf (an undefined rate) become null."""
    return float(x) if math.isfinite(x) else None


def per_request_means(records: Records) -> dict[str, float | None]:
    """Per-finished-request means of the interval sums: ``sum(key) / sum(n_finished)``."""
    n = float(concat_column(records, "n_finished").sum())
    keys = ("latency_s", "ttft_s", "slo_violated", "cache_hit", "usd", "queue_s", "preempted")
    return {k: _finite(float(concat_column(records, k).sum()) / n) if n else None for k in keys}


def request_outcomes(records: Records, device_class: int | None = None) -> dict[str, Any]:
    """Latency percentiles and rates over every decided request (of one class, if given):
    those finished after the episode's end included (``req_after_end``)."""
    lat = concat_column(records, "req_latency_s")
    keep = np.ones(lat.size, dtype=bool)
    if device_class is not None:
        keep = concat_column(records, "req_device_class") == device_class
    lat = lat[keep]
    n = int(lat.size)

    def mean(column: str) -> float | None:
        return _finite(float(concat_column(records, column)[keep].mean())) if n else None

    def pct(q: float) -> float | None:
        return _finite(float(np.percentile(lat, q))) if n else None

    ctx = concat_column(records, "req_has_context")[keep].astype(bool)
    hits = concat_column(records, "req_cache_hit")[keep].astype(bool)
    after_end = concat_column(records, "req_after_end")[keep].astype(bool)
    out = {
        "n_requests": n,
        "n_finished": int(n - after_end.sum()),
        "mean_latency_s": mean("req_latency_s"),
        "latency_p50_s": pct(50),
        "latency_p95_s": pct(95),
        "latency_p99_s": pct(99),
        "mean_ttft_s": mean("req_ttft_s"),
        "slo_violation_rate": mean("req_slo_violated"),
        "cache_hit_rate": _finite(float(hits[ctx].mean())) if ctx.any() else None,
        "mean_queue_s": mean("req_queue_s"),
        "preemptions_per_request": mean("req_preempted"),
        "usd_per_request": mean("req_usd"),
    }
    if has_lite_records(records, "req_quality"):  # per finished request, like the rest
        lite = concat_column(records, "req_lite")[keep].astype(bool)
        out.update(lite_summary(lite, concat_column(records, "req_quality")[keep]))
    return out


def decision_shares(records: Records, n_layers: int, device_class: int | None = None) -> dict:
    """Where the decisions went (tier shares), keep and invalid rates (of one class, if given)."""
    tier = concat_column(records, "tier_index").astype(np.int64)
    keep = np.ones(tier.size, dtype=bool)
    if device_class is not None:
        keep = concat_column(records, "device_class") == device_class
    tier = tier[keep]
    n = int(tier.size)
    lite = has_lite_records(records, "req_quality")
    names = tier_names(n_layers, lite)
    tiers_of = names[np.clip(tier, 0, len(names) - 1)] if n else np.zeros(0, dtype=object)

    def rate(column: str) -> float | None:
        return _finite(float(concat_column(records, column)[keep].mean())) if n else None

    return {
        "decisions": n,
        "keep_rate": rate("keep"),
        "invalid_action_rate": rate("invalid_action"),
        "tier_share": {
            t: float((tiers_of == t).mean()) if n else 0.0 for t in (LITE_TIERS if lite else TIERS)
        },
    }


def summarise_cell(records: Records, n_layers: int) -> dict[str, Any]:
    """Every policy-level figure of a list of cell episodes' records."""
    per_episode = [settled_reward(r) for r in records if r["reward"].size]
    mean, half = mean_ci95(per_episode)
    truncated, truncated_half = mean_ci95(
        [float(r["reward"].mean()) for r in records if r["reward"].size]
    )
    decisions = decision_shares(records, n_layers)
    outcomes = request_outcomes(records)
    n_dec = decisions["decisions"]
    duration = sum(float(r["dt"].sum()) for r in records)

    def avg(column: str) -> float | None:
        return _finite(float(concat_column(records, column).mean())) if n_dec else None

    return {
        "mean_reward": _finite(mean),
        "mean_reward_ci95": _finite(half),
        "mean_reward_truncated": _finite(truncated),
        "mean_reward_truncated_ci95": _finite(truncated_half),
        "episodes": len(per_episode),
        **outcomes,
        "unfinished_share": _finite(1.0 - outcomes["n_finished"] / n_dec) if n_dec else None,
        "energy_j_per_decision": _finite(float(concat_column(records, "energy_j").sum()) / n_dec)
        if n_dec
        else None,
        "requests_per_s": _finite(n_dec / duration) if duration > 0 else None,
        "mean_edge_batch": avg("edge_batch"),
        "mean_edge_kv_occupancy": avg("edge_kv_occupancy"),
        "max_device_temp_c": _finite(float(concat_column(records, "device_temp_c").max()))
        if n_dec
        else None,
        **decisions,
    }


def compute_cell_metrics(result: EvaluationResult) -> dict[str, Any]:
    """The content of a cell evaluation's ``metrics.json`` (deterministic)."""
    n_eps = len(result.episodes)
    base = result.loads.index(1.0) if 1.0 in result.loads else 0
    policies: dict[str, Any] = {}
    loads: dict[str, dict[str, Any]] = {}
    classes: dict[str, dict[str, Any]] = {c: {} for c in CLASS_NAMES}
    for spec in result.policies:
        recs = result.records[spec]
        at_base = recs[base * n_eps : (base + 1) * n_eps]
        policies[spec] = {"deployable": result.deployable[spec]}
        policies[spec].update(summarise_cell(at_base, result.n_layers))
        for i, load in enumerate(result.loads):
            level = recs[i * n_eps : (i + 1) * n_eps]
            loads.setdefault(f"{load:g}", {})[spec] = summarise_cell(level, result.n_layers)
        for c, name in enumerate(CLASS_NAMES):
            classes[name][spec] = {
                **request_outcomes(at_base, c),
                **decision_shares(at_base, result.n_layers, c),
            }
    return {
        "schema_version": CELL_METRICS_SCHEMA_VERSION,
        "env": "EdgeCell-v0",
        "args": result.args,
        "n_layers": result.n_layers,
        "base_load": result.loads[base],
        "policies": policies,
        "loads": loads,
        "device_classes": {
            c: v for c, v in classes.items() if any(m["decisions"] for m in v.values())
        },
        "episodes": [asdict(ep) for ep in result.episodes],
    }
