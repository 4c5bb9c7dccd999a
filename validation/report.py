"""The validation's report: ``validation.md`` (tables and set-up) and ``scatter.png``.

Both read only the ``validation.json`` document (:func:`validation.summary.summarise`), so a
report can be written again from a saved result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from validation.prediction import PER_MESSAGE_LINK, PER_TOKEN_UPLOADS


def _fmt(x: float | None, digits: int = 1) -> str:
    """A figure for a table cell (a dash where there is none)."""
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """``validation.md``: the error table and the set-up."""
    lines = [*_preamble(result["setup"]), *_class_table(result)]
    for label, other in result.get("other_profiles", {}).items():
        lines += _other_profile_table(label, other)
    lines += _closing(result)
    return "\n".join(lines)


def _preamble(setup: dict[str, Any]) -> list[str]:
    """The title and what was replayed, on which machine load."""
    return [
        f"# Simulator vs reference runtime: {setup['model']}",
        "",
        f"{setup['requests_per_trace']} requests x {len(setup['traces'])} traces, "
        f"{setup['repeats']} repeats each (median measured), {setup['threads_per_process']} "
        f"thread(s) per process, RTT {setup['rtt_ms']:g} ms; policy: {setup['policy']}.",
        f"Load average before/after: {setup['load_average_before']} / "
        f"{setup['load_average_after']}; other processes used "
        f"{_fmt(setup['cpus_used_by_other_processes'], 2)} CPUs on average while replaying "
        f"(waited {setup['waited_for_quiet_s']:.0f} s for quiet moments); wall time "
        f"{setup['wall_s']:.0f} s.",
        "",
    ]


def _class_table(result: dict[str, Any]) -> list[str]:
    """The primary profile's errors per split class, overall and over quiet requests."""
    lines = [
        "Absolute percentage error of the prediction (|predicted - measured| / measured):",
        "",
        "| split class | n | total median | total p90 | TTFT median | TTFT p90 | bias total "
        "| device compute bias | edge compute bias | overhead ms/token | median measured s "
        "| contended |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups = [
        *result["by_split_class"].items(),
        ("**overall**", result["overall"]),
        ("quiet requests only", result["quiet_only"]),
    ]
    for name, g in groups:
        lines.append(
            f"| {name} | {g['n']} | {_fmt(g['median_abs_pct_error_total'])}% | "
            f"{_fmt(g['p90_abs_pct_error_total'])}% | {_fmt(g['median_abs_pct_error_ttft'])}% | "
            f"{_fmt(g['p90_abs_pct_error_ttft'])}% | {_fmt(g['median_pct_error_total'])}% | "
            f"{_fmt(g['median_pct_error_device_compute'])}% | "
            f"{_fmt(g['median_pct_error_edge_compute'])}% | "
            f"{_fmt(g['median_overhead_ms_per_token'], 2)} | "
            f"{_fmt(g['median_measured_latency_s'], 3)} | {g['contended']} |"
        )
    return lines


def _other_profile_table(label: str, other: dict[str, Any]) -> list[str]:
    """The same replay predicted with another profile or the per-message variants."""
    lines = [
        "",
        f"Same replay predicted with `{label}`"
        + (
            " (offload_rl.profiler as is: one decoder layer timed alone)"
            if label == "profiler"
            else ""
        )
        + (
            ": decode uploads priced at their own start times (not in request_cost; what "
            "that change would give)"
            if label.endswith(PER_TOKEN_UPLOADS)
            else ""
        )
        + (
            ": every message priced at its own start time, token ids on the downlink "
            "trace too (not in request_cost; what that change would give)"
            if label.endswith(PER_MESSAGE_LINK)
            else ""
        )
        + ":",
        "",
        "| split class | n | total median | total p90 | TTFT median | TTFT p90 | bias total |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, g in [*other["by_split_class"].items(), ("**overall**", other["overall"])]:
        lines.append(
            f"| {name} | {g['n']} | {_fmt(g['median_abs_pct_error_total'])}% | "
            f"{_fmt(g['p90_abs_pct_error_total'])}% | "
            f"{_fmt(g['median_abs_pct_error_ttft'])}% | "
            f"{_fmt(g['p90_abs_pct_error_ttft'])}% | {_fmt(g['median_pct_error_total'])}% |"
        )
    return lines


def _closing(result: dict[str, Any]) -> list[str]:
    """Targets, how to read the table, traces, profile and simulator."""
    setup, t = result["setup"], result["targets"]
    return [
        "",
        f"Targets: median <= {t['median_abs_pct_error_total']:g}%, p90 <= "
        f"{t['p90_abs_pct_error_total']:g}% (total latency): "
        f"**{'met' if t['met'] else 'not met'}**.",
        "",
        "Bias columns are signed medians (negative: the simulator predicts less than ran). "
        "Overhead: measured latency - measured compute - the simulator's transfer and RTT "
        "time, per output token. Measured values are medians over the repeats during which "
        f"other processes used <= {setup['contention_threshold_cpus']:g} CPUs (all repeats "
        "where none was that quiet: those requests count as contended).",
        "",
        "Traces: "
        + ", ".join(
            f"{tr['spec']} ({tr['uplink']}, mean uplink {tr['mean_uplink_mbps']:.1f} Mbps)"
            for tr in setup["traces"]
        ),
        "",
        f"Profile ({setup['profile_method']}): {setup['profile']} ({setup['profile_provenance']}).",
        "",
        f"Profile method: {setup['profile_method_text']}",
        "",
        f"Simulator: {setup['simulator']}.",
        "",
    ]


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """validation.json, validation.md and scatter.png under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "validation.md").write_text(markdown(result))
    scatter_plot(result, out / "scatter.png")


def scatter_plot(result: dict[str, Any], path: Path) -> None:
    """Predicted vs measured total latency and TTFT, one colour per split class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    reqs = result["requests"]
    for ax, key, title in (
        (axes[0], "latency_s", "total latency"),
        (axes[1], "ttft_s", "time to first token"),
    ):
        lo, hi = math.inf, 0.0
        for name in result["by_split_class"]:
            pts = [
                (r["measured"][key], r["predicted"][key]) for r in reqs if r["split_class"] == name
            ]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, s=18, label=name, alpha=0.8)
            lo = min(lo, *xs, *ys)
            hi = max(hi, *xs, *ys)
        if hi > 0:
            lo = max(lo, 1e-4)
            grid = np.geomspace(lo * 0.8, hi * 1.2, 50)
            ax.plot(grid, grid, "k-", lw=1, label="y = x")
            ax.fill_between(grid, grid * 0.75, grid * 1.25, color="grey", alpha=0.15, label="±25%")
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {title} (s)")
        ax.set_ylabel(f"predicted {title} (s)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"simulator vs reference runtime ({result['setup']['model']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
