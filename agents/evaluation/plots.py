"""The evaluation's PNG plots: latency CDF, chosen split against throughput, family rewards.

Hindsight policies are drawn dashed or hatched and labelled as not deployable, so a reader of
a plot alone cannot mistake the oracle for a rival.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation.result import EvaluationResult
from agents.evaluation.rollout import concat_column


def _policy_label(spec: str, deployable: bool) -> str:
    return spec if deployable else f"{spec} (hindsight, not deployable)"


def write_plots(result: EvaluationResult, metrics: dict[str, Any], out: Path) -> dict[str, str]:
    """Write the three plots under ``out``; returns ``{plot key: file name}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(metrics["families"])
    n_eps = len(result.episodes)
    n_fam = len(families)
    requests = metrics["policies"][result.policies[0]]["n_requests"]
    subtitle = f"{n_fam} trace famil{'y' if n_fam == 1 else 'ies'}, {n_eps} episodes, "
    subtitle += f"{requests} requests per policy"
    builders: dict[str, Callable[[], tuple[Any, str]]] = {
        "latency_cdf": lambda: _latency_cdf(plt, result, subtitle),
        "split_vs_throughput": lambda: _split_vs_throughput(plt, result, subtitle),
        "family_reward": lambda: _family_reward(plt, result, metrics, subtitle),
    }
    plots: dict[str, str] = {}
    for key, build in builders.items():  # one figure open at a time
        fig, file = build()
        fig.tight_layout()
        fig.savefig(out / file, dpi=110)
        plt.close(fig)
        plots[key] = file
    return plots


def _latency_cdf(plt: Any, result: EvaluationResult, subtitle: str) -> tuple[Any, str]:
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, spec in enumerate(result.policies):
        lat = np.sort(concat_column(result.records[spec], "latency_s"))
        if lat.size:
            y = np.arange(1, lat.size + 1) / lat.size
            style = "--" if not result.deployable[spec] else "-"
            ax.step(lat, y, where="post", color=colors(i % 10), linestyle=style,
                    label=_policy_label(spec, result.deployable[spec]))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("request latency, arrival to last token (s, log scale)")
    ax.set_ylabel("share of requests with latency <= x")
    ax.set_title(f"Latency CDF per policy\n{subtitle}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig, "latency_cdf.png"


def _split_vs_throughput(plt: Any, result: EvaluationResult, subtitle: str) -> tuple[Any, str]:
    """One panel per policy; the cloud is drawn one row apart from fully local."""
    colors = plt.get_cmap("tab10")
    specs = result.policies
    L = result.n_layers
    cols = min(3, len(specs))
    rows = math.ceil(len(specs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    jitter_rng = np.random.default_rng(0)
    for i, spec in enumerate(specs):
        ax = axes[i // cols][i % cols]
        mbps = np.clip(concat_column(result.records[spec], "mbps"), 1e-2, None)
        tier = concat_column(result.records[spec], "tier_index")
        y = np.where(tier > L, L + 2, tier)  # the cloud one row apart from fully local
        jitter = jitter_rng.uniform(-0.25, 0.25, size=tier.size)
        ax.scatter(mbps, y + jitter, s=5, alpha=0.35, color=colors(i % 10), linewidths=0)
        ax.set_xscale("log")
        ax.set_ylim(-1, L + 3)
        ticks = sorted({0, L // 4, L // 2, 3 * L // 4, L})
        labels = [f"{k} edge" if k == 0 else f"{k} local" if k == L else str(k) for k in ticks]
        ax.set_yticks([*ticks, L + 2], [*labels, "cloud"])
        ax.set_title(_policy_label(spec, result.deployable[spec]), fontsize=9)
        ax.set_xlabel("measured uplink throughput (Mbps, newest sample; >= 0.01)", fontsize=8)
        ax.set_ylabel("chosen split k (layers on device)", fontsize=8)
        ax.grid(True, alpha=0.3)
    for j in range(len(specs), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"Chosen split against the measured uplink throughput, per policy\n{subtitle}")
    return fig, "split_vs_throughput.png"


def _family_reward(
    plt: Any, result: EvaluationResult, metrics: dict[str, Any], subtitle: str
) -> tuple[Any, str]:
    """Per-family bars of mean reward with 95% CIs."""
    colors = plt.get_cmap("tab10")
    specs = result.policies
    families = list(metrics["families"])
    n_fam = len(families)
    fig, ax = plt.subplots(figsize=(min(14.0, max(7.0, 0.3 * n_fam * len(specs) + 3)), 5.5))
    width = 0.8 / len(specs)
    x = np.arange(n_fam)
    for i, spec in enumerate(specs):
        means = [metrics["families"][f][spec]["mean_reward"] for f in families]
        halves = [metrics["families"][f][spec]["mean_reward_ci95"] for f in families]
        ax.bar(
            x + (i - (len(specs) - 1) / 2) * width,
            [np.nan if m is None else m for m in means],
            width,
            yerr=[0.0 if h is None else h for h in halves],
            capsize=2,
            color=colors(i % 10),
            hatch="//" if not result.deployable[spec] else None,
            label=_policy_label(spec, result.deployable[spec]),
        )
    ax.set_xticks(x, families, rotation=20, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("mean reward per request (higher is better)")
    ax.set_title(f"Mean reward per trace family and policy (error bars: 95% CI over episodes)\n"
                 f"{subtitle}")  # fmt: skip
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig, "family_reward.png"
