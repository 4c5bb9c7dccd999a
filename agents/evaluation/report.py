"""The markdown report of an evaluation (``report.md``): tables, plots, how to read them.

It says on its first lines which policies are hindsight references, and points the reader to
the paired differences: every policy ran the same episodes, so those are the fair comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.evaluation.metrics import best_policy

PLOT_CAPTIONS: dict[str, str] = {
    "latency_cdf": "Latency CDF per policy",
    "split_vs_throughput": "Chosen split against measured uplink throughput, per policy",
    "family_reward": "Mean reward per trace family",
}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def write_report(metrics: dict[str, Any], plots: dict[str, str], path: Path) -> None:
    """Write ``report.md`` from the metrics and the plot files."""
    args = metrics["args"]
    lines = [
        "# Policy evaluation",
        "",
        "Every policy ran exactly the same episodes (pinned trace, offset and workload seed).",
        "Policies marked *hindsight* read the future from the simulator and are **not**",
        "deployable; they are an upper reference.",
        "",
        "Command arguments: " + ", ".join(f"`{k}={v}`" for k, v in args.items()),
        "",
        *_policy_table(metrics["policies"]),
        *_lite_table(metrics["policies"]),
        *_family_table(metrics),
        *_plots_section(plots),
        "TensorBoard: `tensorboard --logdir tb` shows one run per policy with the same tags "
        "(`eval/*` and `family/*` at step 0, `episode/*` per episode index).",
        "",
    ]
    path.write_text("\n".join(lines))


def _policy_table(pol: dict[str, Any]) -> list[str]:
    """Every policy over all families."""
    lines = [
        "## All families",
        "",
        "| policy | deployable | mean reward (95% CI) | latency mean / p50 / p95 / p99 (s) "
        "| TTFT (s) | SLO viol. | energy (J/req) | cache hit | edge / split / device / cloud "
        "| requests | paired diff. to best deployable (95% CI) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, m in pol.items():
        ts = m["tier_share"]
        lines.append(
            f"| `{spec}` | {'yes' if m['deployable'] else '**no (hindsight)**'} "
            f"| {_fmt(m['mean_reward'])} ± {_fmt(m['mean_reward_ci95'])} "
            f"| {_fmt(m['mean_latency_s'], 2)} / {_fmt(m['latency_p50_s'], 2)} / "
            f"{_fmt(m['latency_p95_s'], 2)} / {_fmt(m['latency_p99_s'], 2)} "
            f"| {_fmt(m['mean_ttft_s'], 2)} | {_fmt(m['slo_violation_rate'])} "
            f"| {_fmt(m['energy_j_per_request'], 2)} | {_fmt(m['cache_hit_rate'])} "
            f"| {ts['edge']:.2f} / {ts['split']:.2f} / {ts['device']:.2f} / {ts['cloud']:.2f} "
            f"| {m['n_requests']} | {_fmt(m.get('paired_diff'))} ± "
            f"{_fmt(m.get('paired_diff_ci95'))} |"
        )
    return lines


def _lite_table(pol: dict[str, Any]) -> list[str]:
    """With a device-lite model: who answered, and the answer quality beside latency and energy."""
    if not pol or "lite_share" not in next(iter(pol.values())):
        return []
    lines = [
        "",
        "## Device-lite model",
        "",
        "Share of requests the small on-device model answered and the mean benchmark score of",
        "the answers delivered (the scenario's `lite.benchmark`).",
        "",
        "| policy | lite share | mean quality | latency mean (s) | energy (J/req) | mean reward |",
        "|---|---|---|---|---|---|",
    ]
    for spec, m in pol.items():
        lines.append(
            f"| `{spec}` | {_fmt(m['lite_share'])} | {_fmt(m['mean_quality'], 4)} "
            f"| {_fmt(m['mean_latency_s'], 2)} | {_fmt(m['energy_j_per_request'], 2)} "
            f"| {_fmt(m['mean_reward'])} |"
        )
    return lines


def _family_table(metrics: dict[str, Any]) -> list[str]:
    """Mean reward per family and policy, the best deployable policy of each family in bold."""
    specs = list(metrics["policies"])
    lines = [
        "",
        "## Mean reward per trace family (95% CI over episodes)",
        "",
        "| family | " + " | ".join(f"`{s}`" for s in specs) + " |",
        "|---|" + "---|" * len(specs),
    ]
    for family, per_policy in metrics["families"].items():
        best = best_policy({k: v for k, v in per_policy.items() if v["deployable"]})
        cells = []
        for s in specs:
            m = per_policy[s]
            cell = f"{_fmt(m['mean_reward'])} ± {_fmt(m['mean_reward_ci95'])}"
            cells.append(f"**{cell}**" if s == best else cell)
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Bold: the best deployable policy of the family. Differences between policies are best",
        "read from the paired differences (`paired_diff` in metrics.json): every policy ran the",
        "same episodes, so episode-to-episode variation cancels.",
        "",
    ]
    return lines


def _plots_section(plots: dict[str, str]) -> list[str]:
    lines = ["## Plots", ""]
    for key, file in plots.items():
        caption = PLOT_CAPTIONS.get(key, key)
        lines += [f"### {caption}", "", f"![{caption}]({file})", ""]
    return lines
