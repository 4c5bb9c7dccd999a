"""Writing an evaluation's files: metrics.json / metrics.csv / run.json, then TensorBoard
runs, plots and the markdown report (each in its own module)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from agents.evaluation.cell_outputs import write_cell_outputs
from agents.evaluation.metrics import compute_metrics
from agents.evaluation.plots import write_plots
from agents.evaluation.report import write_report
from agents.evaluation.result import EvaluationResult
from agents.evaluation.tags import LITE_FIELDS
from agents.evaluation.tensorboard_runs import write_tensorboard

CSV_FIELDS: tuple[str, ...] = (
    "scope",
    "family",
    "policy",
    "deployable",
    "mean_reward",
    "mean_reward_ci95",
    "episodes",
    "n_requests",
    "mean_latency_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "mean_ttft_s",
    "slo_violation_rate",
    "energy_j_per_request",
    "usd_per_request",
    "cache_hit_rate",
    "keep_rate",
    "invalid_action_rate",
    "paired_reference",
    "paired_diff",
    "paired_diff_ci95",
)


def write_outputs(result: EvaluationResult, out: Path) -> dict[str, Any]:
    """Write every output file under ``out``; returns the metrics (the cell's: its own files)."""
    if result.loads:
        return write_cell_outputs(result, out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(result)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    _write_csv(metrics, out / "metrics.csv")
    run_info = {
        "wall_s": round(result.wall_s, 3),
        "workers": result.workers,
        "out": str(out),
        "python": sys.version.split()[0],
    }
    (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    write_tensorboard(result, metrics, out / "tb")
    plots = write_plots(result, metrics, out)
    write_report(metrics, plots, out / "report.md")
    return metrics


def _write_csv(metrics: dict[str, Any], path: Path) -> None:
    """One row per policy over all families, then one per (family, policy)."""
    with path.open("w", newline="") as fh:
        lite = [f for f in LITE_FIELDS if f in next(iter(metrics["policies"].values()))]
        writer = csv.DictWriter(fh, fieldnames=[*CSV_FIELDS, *lite, *_share_fields(metrics)])
        writer.writeheader()
        for spec, m in metrics["policies"].items():
            writer.writerow(_csv_row("all", "", spec, m))
        for family, per_policy in metrics["families"].items():
            for spec, m in per_policy.items():
                writer.writerow(_csv_row("family", family, spec, m))


def _share_fields(metrics: dict[str, Any]) -> list[str]:
    any_policy = next(iter(metrics["policies"].values()))
    return [f"tier_share_{t}" for t in any_policy["tier_share"]] + [
        f"split_share_{k}" for k in any_policy["split_share"]
    ]


def _csv_row(scope: str, family: str, spec: str, m: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"scope": scope, "family": family, "policy": spec}
    for key in (*CSV_FIELDS[3:], *(f for f in LITE_FIELDS if f in m)):
        value = m.get(key)
        row[key] = "" if value is None else value
    for t, v in m["tier_share"].items():
        row[f"tier_share_{t}"] = v
    for k, v in m["split_share"].items():
        row[f"split_share_{k}"] = v
    return row
