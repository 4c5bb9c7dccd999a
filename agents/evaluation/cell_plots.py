"""The cell evaluation's plots: latency against load, the edge over an episode, device heat.

The "over an episode" plots show the first episode at the base load, one line per policy
(batch, KV occupancy) or one panel per policy (temperature, one line per device), so that a
reader sees what each policy does to the shared edge and to the phones, not only averages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation.cell_rollout import CLASS_NAMES
from agents.evaluation.result import EvaluationResult


def write_cell_plots(
    result: EvaluationResult, metrics: dict[str, Any], out: Path
) -> dict[str, str]:
    """Write the three plots under ``out``; returns ``{plot key: file name}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = result.loads.index(metrics["base_load"]) * len(result.episodes)
    first = {spec: result.records[spec][base] for spec in result.policies}
    plots: dict[str, str] = {}
    for key, fig in (
        ("latency_vs_load", _latency_vs_load(plt, result, metrics)),
        ("edge_over_episode", _edge_over_episode(plt, result, first)),
        ("device_temperature", _device_temperature(plt, result, first)),
    ):
        fig.tight_layout()
        fig.savefig(out / f"{key}.png", dpi=110)
        plt.close(fig)
        plots[key] = f"{key}.png"
    return plots


def _latency_vs_load(plt: Any, result: EvaluationResult, metrics: dict[str, Any]) -> Any:
    """Mean (solid) and p95 (dashed) latency per finished request at each load level."""
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8, 5))
    levels = [f"{x:g}" for x in result.loads]
    for i, spec in enumerate(result.policies):
        rate = [metrics["loads"][lv][spec]["requests_per_s"] or np.nan for lv in levels]
        mean = [metrics["loads"][lv][spec]["mean_latency_s"] or np.nan for lv in levels]
        p95 = [metrics["loads"][lv][spec]["latency_p95_s"] or np.nan for lv in levels]
        ax.plot(rate, mean, "o-", color=colors(i % 10), label=f"{spec} mean")
        ax.plot(rate, p95, "s--", color=colors(i % 10), alpha=0.6, label=f"{spec} p95")
    ax.set_yscale("log")
    ax.set_xlabel(
        "cell load: decided requests per second (arrival-rate scale " + ", ".join(levels) + ")"
    )
    ax.set_ylabel("latency per finished request, arrival to last token (s, log)")
    ax.set_title(f"Latency against cell load ({len(result.episodes)} episodes per level)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def _edge_over_episode(plt: Any, result: EvaluationResult, first: dict[str, Any]) -> Any:
    """The edge's running batch and KV-pool occupancy at every decision of one episode."""
    colors = plt.get_cmap("tab10")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for i, spec in enumerate(result.policies):
        rec = first[spec]
        top.step(rec["time_s"], rec["edge_batch"], where="post", color=colors(i % 10), label=spec)
        bottom.step(
            rec["time_s"], 100 * rec["edge_kv_occupancy"], where="post", color=colors(i % 10)
        )
    top.set_ylabel("edge batch size (sequences)")
    bottom.set_ylabel("edge KV pool used (%)")
    bottom.set_xlabel("time since the episode's first decision (s)")
    top.set_title(f"The edge over one episode ({result.episodes[0].trace_name}, base load)")
    top.legend(fontsize=8)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return fig


def _device_temperature(plt: Any, result: EvaluationResult, first: dict[str, Any]) -> Any:
    """Each device's temperature at its own decisions, one panel per policy."""
    colors = plt.get_cmap("Set1")
    n = len(result.policies)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n + 0.6), sharex=True, squeeze=False)
    for ax, spec in zip(axes[:, 0], result.policies, strict=True):
        rec = first[spec]
        seen: set[int] = set()
        for device in np.unique(rec["device"]):
            mine = rec["device"] == device
            cls = int(rec["device_class"][mine][0])
            label = CLASS_NAMES[cls] if cls not in seen else None
            seen.add(cls)
            ax.plot(rec["time_s"][mine], rec["device_temp_c"][mine], ".-", lw=0.8,
                    color=colors(cls), label=label)  # fmt: skip
        ax.set_title(spec, fontsize=9)
        ax.set_ylabel("device °C")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("time since the episode's first decision (s); one line per device")
    fig.suptitle("Device temperature over one episode (base load)")
    return fig
