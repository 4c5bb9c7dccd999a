"""Writing a cell evaluation: metrics.json/csv, run.json, TensorBoard runs, plots and report.md.

The same files as a SplitCache evaluation, with the cell's scopes: rows per load level and per
device class; TensorBoard tags ``cell/*``, ``load/<x>/*``, ``device_class/<c>/*`` and
``episode/*``, identical for every policy.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from agents.cell_oracle import REPORT_NOTE
from agents.evaluation.cell_metrics import compute_cell_metrics
from agents.evaluation.cell_plots import write_cell_plots
from agents.evaluation.cell_rollout import settled_reward
from agents.evaluation.result import EvaluationResult
from agents.evaluation.tags import LITE_FIELDS, tag_safe

CELL_FIELDS: tuple[str, ...] = (
    "mean_reward",
    "mean_reward_ci95",
    "mean_reward_truncated",
    "n_requests",
    "n_finished",
    "unfinished_share",
    "mean_latency_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "mean_ttft_s",
    "slo_violation_rate",
    "cache_hit_rate",
    "mean_queue_s",
    "preemptions_per_request",
    "energy_j_per_decision",
    "requests_per_s",
    "mean_edge_batch",
    "mean_edge_kv_occupancy",
    "max_device_temp_c",
    "decisions",
    "keep_rate",
    "invalid_action_rate",
)
# per load level and per device class: the figures a reader compares across scopes
SCOPE_TAGS: tuple[str, ...] = (
    "mean_latency_s",
    "latency_p95_s",
    "slo_violation_rate",
    "n_finished",
)

REPORT_COLUMNS: tuple[str, ...] = (
    "mean_reward",
    "lite_share",  # only with a device-lite model (the report shows the columns it has)
    "mean_quality",
    "n_finished",
    "unfinished_share",
    "mean_latency_s",
    "latency_p95_s",
    "mean_ttft_s",
    "slo_violation_rate",
    "mean_edge_batch",
    "mean_edge_kv_occupancy",
)


def write_cell_outputs(result: EvaluationResult, out: Path) -> dict[str, Any]:
    """Write every output file under ``out``; returns the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_cell_metrics(result)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_csv(metrics, out / "metrics.csv")
    run_info = {"wall_s": round(result.wall_s, 3), "workers": result.workers, "out": str(out),
                "python": sys.version.split()[0]}  # fmt: skip
    (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    write_cell_tensorboard(result, metrics, out / "tb")
    plots = write_cell_plots(result, metrics, out)
    (out / "report.md").write_text(cell_report(metrics, plots))
    return metrics


def _scopes(metrics: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(scope, key, {policy: figures})``: all (base load), each load, each device class."""
    rows = [("all", f"{metrics['base_load']:g}", metrics["policies"])]
    rows += [("load", lv, per) for lv, per in metrics["loads"].items()]
    rows += [("device_class", c, per) for c, per in metrics["device_classes"].items()]
    return rows


def _fields(metrics: dict[str, Any]) -> tuple[str, ...]:
    """:data:`CELL_FIELDS`, then :data:`LITE_FIELDS` when the scenario has a device-lite model."""
    first = next(iter(metrics["policies"].values()))
    return (*CELL_FIELDS, *(f for f in LITE_FIELDS if f in first))


def _write_csv(metrics: dict[str, Any], path: Path) -> None:
    """One row per (scope, key, policy); a figure a scope does not have is left empty."""
    with path.open("w", newline="") as fh:
        fields = _fields(metrics)
        writer = csv.DictWriter(fh, fieldnames=["scope", "key", "policy", *fields])
        writer.writeheader()
        for scope, key, per_policy in _scopes(metrics):
            for spec, m in per_policy.items():
                row = {"scope": scope, "key": key, "policy": spec}
                row.update({f: "" if m.get(f) is None else m[f] for f in fields})
                writer.writerow(row)


def cell_scalars(
    result: EvaluationResult, metrics: dict[str, Any], spec: str
) -> list[tuple[str, float, int]]:
    """``(tag, value, step)`` of one policy's run; the tag set is the same for every policy."""

    def value(x: Any) -> float:
        return float("nan") if x is None else float(x)

    m = metrics["policies"][spec]
    out = [(f"cell/{f}", value(m[f]), 0) for f in _fields(metrics)]
    out += [(f"cell/tier_share/{t}", float(v), 0) for t, v in m["tier_share"].items()]
    for lv, per in metrics["loads"].items():
        out += [(f"load/{tag_safe(lv)}/{f}", value(per[spec][f]), 0) for f in SCOPE_TAGS]
    for c, per in metrics["device_classes"].items():
        out += [(f"device_class/{tag_safe(c)}/{f}", value(per[spec][f]), 0) for f in SCOPE_TAGS]
    base = result.loads.index(metrics["base_load"]) * len(result.episodes)
    for ep in result.episodes:
        rec = result.records[spec][base + ep.index]
        latency = rec["req_latency_s"]
        out.append(("episode/mean_reward", settled_reward(rec), ep.index))
        out.append(
            ("episode/latency_mean_s", float(latency.mean()) if latency.size else 0.0, ep.index)
        )
        out.append(("episode/edge_batch_mean", float(rec["edge_batch"].mean()), ep.index))
    return out


def write_cell_tensorboard(result: EvaluationResult, metrics: dict[str, Any], tb: Path) -> None:
    """One run per policy under ``tb`` (a rerun replaces a policy's run)."""
    from agents.evaluation.tensorboard_runs import run_names, summary_writer

    for spec, name in run_names(result.policies).items():
        writer = summary_writer(tb / name)
        try:
            for tag, v, step in cell_scalars(result, metrics, spec):
                writer.add_scalar(tag, v, step)
            writer.add_text("eval/policy", f"`{spec}` on EdgeCell-v0", 0)
        finally:
            writer.close()


def cell_report(metrics: dict[str, Any], plots: dict[str, str]) -> str:
    """``report.md``: one table per scope, then the plots."""
    lines = [
        "# Policy evaluation on EdgeCell-v0",
        "",
        "Every policy ran the same episodes (pinned trace, offset, workload seed) at every load",
        "level (the cell's session arrival rate x load). `mean_reward` counts the cost of",
        "finishing the requests still in the cell at an episode's end (`finish_cost`; the",
        "metrics files also give `mean_reward_truncated`, without it). Latency, TTFT and SLO",
        "figures are over every decided request: those still in the system at the end",
        "(`unfinished_share`) with the outcome they get when the cell runs on to their last",
        "token. Reward and energy are the whole cell's, per decision.",
        "",
        "Command arguments: " + ", ".join(f"`{k}={v}`" for k, v in metrics["args"].items()),
        "",
    ]
    hindsight = {s for s, m in metrics["policies"].items() if not m["deployable"]}
    if hindsight:
        lines += ["Policies marked *(hindsight)* read the simulator's future and are **not**",
                  "deployable; they are a reference. " + REPORT_NOTE, ""]  # fmt: skip
    for scope, key, per_policy in _scopes(metrics):
        shown = [c for c in REPORT_COLUMNS if c in next(iter(per_policy.values()))]
        lines += [f"## {scope} = {key}", "", "| policy | " + " | ".join(shown) + " |",
                  "|---" * (len(shown) + 1) + "|"]  # fmt: skip
        for spec, m in per_policy.items():
            cells = ["–" if m[c] is None else f"{m[c]:.3g}" for c in shown]
            label = f"{spec} *(hindsight)*" if spec in hindsight else spec
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"![{key}]({file})" for key, file in plots.items()]
    lines += ["", "TensorBoard: `tensorboard --logdir tb` (`cell/*`, `load/*`, `device_class/*`",
              "at step 0, `episode/*` per episode at the base load).", ""]  # fmt: skip
    return "\n".join(lines)
