"""The cell validation's files: ``validation.json``, ``validation.md`` and two plots.

``scatter.png``: predicted against measured TTFT and total latency, one colour per load level.
``iterations.png``: the edge's iteration time against its batch's tokens: measured in the
runtime, the batched profile's price of those same batches, and the simulator's own iterations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from validation.repeatability import markdown_lines
from validation.report import _fmt


def markdown(result: dict[str, Any]) -> str:
    setup, overall, targets = result["setup"], result["overall"], result["targets"]
    lines = [
        "# Cell validation: EdgeCell-v0 against the cell runtime",
        "",
        f"Model {setup['model']} ({setup['n_layers']} layers, random weights), "
        f"{setup['devices']} devices x {setup['requests_per_device']} requests per load level, "
        f"{setup['threads_per_process']} torch thread per process, RTT {setup['rtt_ms']:g} ms, "
        f"policy {setup['policy']}.",
        f"Edge: KV pool {setup['pool_tokens']} tokens of the whole model "
        f"({setup['pool_bytes'] / 2**20:.1f} MiB; small on purpose, so that preemption happens), "
        f"budgets {setup['max_num_batched_tokens']} tokens / {setup['max_num_seqs']} sequences "
        "per iteration, the same on both sides.",
        f"Batched cost: {setup['batch_cost_source']}.",
        f"Wall time {setup['wall_s']:.0f} s.",
        "",
        "| run | load level | gap (s) | requests | median abs err total (%) | p90 (%) | median "
        "abs err TTFT (%) | batch >= 2 (runtime / sim) | preemptions (runtime / sim) | "
        "iteration err vs profile, median (%) | load avg before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in result["by_load_level"]:
        b = g["batches"]
        lines.append(
            f"| {g.get('run', 0) + 1} | {g['level']} | {g['gap_s']:g} | {g['scored']} | "
            f"{_fmt(g['median_abs_pct_error_total'])} | {_fmt(g['p90_abs_pct_error_total'])} | "
            f"{_fmt(g['median_abs_pct_error_ttft'])} | "
            f"{_fmt(100 * b['measured'].get('share_batch_ge_2', 0.0), 0)}% / "
            f"{_fmt(100 * b['simulated'].get('share_batch_ge_2', 0.0), 0)}% | "
            f"{g['preemptions']['measured']} / {g['preemptions']['predicted']} | "
            f"{_fmt(g['iteration_time']['median_abs_pct_error_profile'])} | "
            f"{_fmt(g['load_average_before'][0], 2)} / {_fmt(g['load_average_after'][0], 2)} |"
        )
    lines += ["", *_pricing_table(overall["iteration_time"]["by_kind"])]
    lines += ["", *(_outside_line(g) for g in result["by_load_level"])]
    lines += [
        "",
        "Diagnostic, not the validation's figure: the replay with the edge's costs x the "
        "run's own median measured/profile iteration ratio (fitted to the run) leaves "
        + "; ".join(
            f"gap {g['gap_s']:g} s: x{g['diagnostic_slowed_replay']['slowdown']:.2f} -> median "
            f"{_fmt(g['diagnostic_slowed_replay']['median_abs_pct_error_total'])}%, p90 "
            f"{_fmt(g['diagnostic_slowed_replay']['p90_abs_pct_error_total'])}%"
            for g in result["by_load_level"]
        )
        + ".",
        *_open_loop_line(result["by_load_level"]),
        *_pooled_lines(result.get("pooled_over_runs")),
        *markdown_lines(
            result.get("runtime_repeatability"),
            "The runtime against its own repeats (--same-streams): the floor under any "
            "per-request prediction",
        ),
        "",
        f"Overall: median {_fmt(overall['median_abs_pct_error_total'])}%, p90 "
        f"{_fmt(overall['p90_abs_pct_error_total'])}% absolute error of total latency "
        f"(targets {targets['median_pct']:g}% / {targets['p90_pct']:g}%: "
        f"{'met' if targets['median_met'] else 'not met'} / "
        f"{'met' if targets['p90_met'] else 'not met'}); the edge was "
        f"{'' if targets['under_contention'] else 'not '}under contention (batch >= 2 in "
        "at least half of its iterations and at least one preemption).",
        "",
    ]
    return "\n".join(lines)


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.1f}, {ci[1]:.1f}]"


def _pooled_lines(pooled: dict[str, Any] | None) -> list[str]:
    """Median and p90 pooled over the runs, with their 95% bootstrap intervals over runs."""
    if pooled is None or pooled["overall"]["runs"] < 2:
        return []
    lines = [
        "",
        f"Pooled over {pooled['overall']['runs']} runs (95% bootstrap interval over runs):",
        "",
        "| load level | gap (s) | median abs err total (%) | p90 (%) | per run: median / p90 (%) |",
        "|---|---|---|---|---|",
    ]
    for g in [*pooled["by_load_level"], {"level": "all", "gap_s": None, **pooled["overall"]}]:
        per_run = ", ".join(
            f"{_fmt(r['median_abs_pct_error_total'])} / {_fmt(r['p90_abs_pct_error_total'])}"
            for r in g["per_run"]
        )
        gap = "" if g["gap_s"] is None else f"{g['gap_s']:g}"
        lines.append(
            f"| {g['level']} | {gap} | {_fmt(g['median_abs_pct_error_total'])}"
            f"{_ci(g['median_ci95'])} | {_fmt(g['p90_abs_pct_error_total'])}"
            f"{_ci(g['p90_ci95'])} | {per_run} |"
        )
    return lines


def _open_loop_line(levels: list[dict[str, Any]]) -> list[str]:
    """The open-loop replay's error (every request at the runtime's start time), if any."""
    parts = [
        f"gap {g['gap_s']:g} s: median {_fmt(o['median_abs_pct_error_total'])}%, p90 "
        f"{_fmt(o['p90_abs_pct_error_total'])}%"
        for g in levels
        if (o := g.get("diagnostic_open_loop_replay"))
    ]
    if not parts:
        return []
    return [
        "",
        "Diagnostic: the replay open loop (each request started at the runtime's start time, "
        "not when its device is free in the simulator) gives " + "; ".join(parts) + ".",
    ]


def _outside_line(g: dict[str, Any]) -> str:
    """One load level's time outside the priced iterations, and its signed error."""
    o = g["outside_the_iterations"]
    q = o["mean_queued_s"]
    return (
        f"- gap {g['gap_s']:g} s: signed median error {_fmt(o['median_pct_error_total'])}% "
        f"(negative: predicted faster); edge loop between forwards {o['edge_loop_s']:.1f} s "
        f"({_fmt(100 * (o['edge_loop_share_of_forward'] or 0.0))}% of the forward time); "
        f"decision calls {_fmt(100 * (o['decision_share_of_latency'] or 0.0), 2)}% of the "
        f"latency; mean wait in the edge's queue {_fmt(q['measured'], 2)} s measured, "
        f"{_fmt(q['predicted'], 2)} s predicted."
    )


def _pricing_table(by_kind: dict[str, dict[str, Any]]) -> list[str]:
    """The runtime's iterations by kind against the profile's price of the same batches."""
    lines = [
        "The runtime's own iterations against the profile's price of the same batch (all load "
        "levels; negative: priced too fast):",
        "",
        "| iteration | count | measured (s) | priced (s) | median error (%) |",
        "|---|---|---|---|---|",
    ]
    for kind, k in by_kind.items():
        lines.append(
            f"| {kind} | {k['iterations']} | {k['measured_s']:.1f} | {k['profile_s']:.1f} | "
            f"{_fmt(k['median_pct_error'])} |"
        )
    return lines


def write_cell_outputs(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.json").write_text(json.dumps(result, indent=1))
    (out / "validation.md").write_text(markdown(result))
    scatter_plot(result, out / "scatter.png")
    iteration_plot(result, out / "iterations.png")


def scatter_plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, key, title in zip(axes, ("ttft_s", "total_s"), ("TTFT", "total latency"), strict=True):
        hi = 0.0
        for level, gap in sorted({(g["level"], g["gap_s"]) for g in result["by_load_level"]}):
            rows = [r for r in result["requests"] if r["level"] == level and not r["rejected"]]
            xs = [r["measured"][key] for r in rows]
            ys = [r["predicted"][key] for r in rows]
            hi = max([hi, *xs, *ys])
            ax.scatter(xs, ys, s=14, alpha=0.7, label=f"gap {gap:g} s")
        ax.plot([0, hi], [0, hi], "k--", lw=0.8)
        ax.set_xlabel(f"measured {title} (s)")
        ax.set_ylabel(f"predicted {title} (s)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def iteration_plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [it for level in result["iterations"] for it in level["measured"]]
    simulated = [it for level in result["iterations"] for it in level["simulated"]]
    fig, ax = plt.subplots(figsize=(7, 4.6))
    ax.scatter(
        [m["tokens"] for m in measured],
        [1e3 * m["measured_s"] for m in measured],
        s=8,
        alpha=0.5,
        label="runtime, measured",
    )
    ax.scatter(
        [m["tokens"] for m in measured],
        [1e3 * m["profile_s"] for m in measured],
        s=8,
        marker="x",
        alpha=0.5,
        label="runtime's batches, profile's price",
    )
    ax.scatter(
        [s["tokens"] for s in simulated],
        [1e3 * s["predicted_s"] for s in simulated],
        s=8,
        marker="^",
        alpha=0.4,
        label="simulator's iterations",
    )
    ax.set_xscale("symlog", linthresh=8)
    ax.set_xlabel("tokens in the iteration")
    ax.set_ylabel("iteration time (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
