"""The sweep's summary: ``results.json`` (every trial's record) and ``results.md`` (a table).

The table has one row per trial (status, attempts, the agent's mean reward on the held-out
episodes, the best other policy there) and one row per group of trials that differ only in
their seed (mean over seeds with its 95% t-interval). TensorBoard: ``OUT/trials`` is one logdir
holding every trial's training runs (``<id>/run/tb/...``) and evaluations (``<id>/eval/tb/...``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.sweep.plan import TRIALS_DIR
from agents.sweep.trial import FINISHED

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


def agent_reward(record: dict[str, Any]) -> float | None:
    """The trained agent's mean reward on the held-out episodes, if the trial got that far."""
    metrics = record.get("metrics") or {}
    value = (metrics.get("held_out") or {}).get(metrics.get("agent"))
    return None if value is None or not math.isfinite(float(value)) else float(value)


def best_other(record: dict[str, Any]) -> tuple[str, float] | None:
    """The best policy other than the agent on the held-out episodes (hindsight included)."""
    metrics = record.get("metrics") or {}
    scored = {
        k: float(v)
        for k, v in (metrics.get("held_out") or {}).items()
        if k != metrics.get("agent") and v is not None and math.isfinite(float(v))
    }
    if not scored:
        return None
    best = max(scored, key=lambda k: scored[k])
    return best, scored[best]


def write_summary(
    out: Path, meta: dict[str, Any], records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Write ``results.json`` and ``results.md`` into ``out``; returns the JSON document."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    report = {"meta": {**meta, "counts": counts}, "trials": list(records)}
    (out / RESULTS_JSON).write_text(json.dumps(report, indent=1) + "\n")
    (out / RESULTS_MD).write_text(render_markdown(report))
    return report


def render_markdown(report: dict[str, Any]) -> str:
    meta, records = report["meta"], report["trials"]
    lines = [
        f"# Sweep {meta.get('sweep', '')}",
        "",
        f"- Command: `{meta.get('command', '')}`",
        f"- Ray: {meta.get('ray', '')}; wall time {meta.get('wall_s', 0.0) / 60:.1f} min",
        f"- Trials: {meta['counts']}",
        f"- TensorBoard: `tensorboard --logdir {Path(meta.get('out', '.')) / TRIALS_DIR}`",
        "",
        "| trial | status | attempts | agent reward (held-out) | best other policy | wall s |",
        "|---|---|---:|---:|---|---:|",
    ]
    for r in records:
        reward = agent_reward(r)
        other = best_other(r)
        status = r.get("status", "?")
        if r.get("error"):
            status += f": {r['error']}".replace("|", "/")
        lines.append(
            f"| {r.get('trial_id')} | {status} | {len(r.get('attempts', []))} | "
            f"{'–' if reward is None else f'{reward:.3f}'} | "
            f"{'–' if other is None else f'{other[0]} {other[1]:.3f}'} | "
            f"{r.get('wall_s', 0.0):.0f} |"
        )
    lines += ["", *_group_lines(records), ""]
    return "\n".join(lines)


def _group_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    """Mean agent reward over seeds for each (config, parameters), with its 95% t-interval."""
    from agents.evaluate import mean_ci95

    groups: dict[str, list[float]] = {}
    for r in records:
        key = r.get("label", "?") + "".join(f" {k}={v}" for k, v in r.get("params", {}).items())
        groups.setdefault(key, [])
        reward = agent_reward(r)
        if r.get("status") == FINISHED and reward is not None:
            groups[key].append(reward)
    lines = [
        "| config and parameters | seeds finished | agent reward mean ± 95% CI |",
        "|---|---:|---:|",
    ]
    for key, values in groups.items():
        if not values:
            lines.append(f"| {key} | 0 | – |")
            continue
        mean, ci = mean_ci95(values)
        ci_text = "–" if not math.isfinite(ci) else f"{ci:.3f}"
        lines.append(f"| {key} | {len(values)} | {mean:.3f} ± {ci_text} |")
    return lines
