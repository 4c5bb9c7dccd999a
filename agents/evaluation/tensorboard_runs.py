"""One TensorBoard run per policy, every run with the same tag set (see ``tags``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.evaluation.result import EvaluationResult
from agents.evaluation.tags import FAMILY_TAGS, LITE_TAGS, SUMMARY_TAGS, run_dir_name, tag_safe
from offload_rl.errors import ConfigError


def tensorboard_scalars(
    result: EvaluationResult, metrics: dict[str, Any], spec: str
) -> list[tuple[str, float, int]]:
    """``(tag, value, step)`` of one policy's run; the tag set is the same for every policy.

    Summary values are logged at step 0; per-episode curves (``episode/...``) use the episode
    index as step, so all policies overlay on one chart.
    """
    m = metrics["policies"][spec]
    out: list[tuple[str, float, int]] = []

    def value(x: Any) -> float:
        return float("nan") if x is None else float(x)

    for tag, key in SUMMARY_TAGS.items():
        out.append((tag, value(m[key]), 0))
    for tag, key in LITE_TAGS.items():  # scenarios with a device-lite model only
        if key in m:
            out.append((tag, value(m[key]), 0))
    for tier, share in m["tier_share"].items():
        out.append((f"eval/tier_share/{tier}", float(share), 0))
    for family, per_policy in metrics["families"].items():
        fm = per_policy[spec]
        for name, key in FAMILY_TAGS.items():
            out.append((f"family/{tag_safe(family)}/{name}", value(fm[key]), 0))
    for ep, rec in zip(result.episodes, result.records[spec], strict=True):
        n = max(rec["reward"].size, 1)
        out.append(("episode/mean_reward", float(rec["reward"].sum() / n), ep.index))
        out.append(("episode/latency_mean_s", float(rec["latency_s"].sum() / n), ep.index))
        out.append(("episode/slo_violation_rate", float(rec["slo_violated"].sum() / n), ep.index))
        out.append(("episode/energy_j", float(rec["energy_j"].sum() / n), ep.index))
    return out


def summary_writer(run: Path) -> Any:
    """A SummaryWriter for ``run``, whose old event files are removed (a rerun replaces it)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            f"evaluate needs torch and tensorboard for its TensorBoard runs ({err}); "
            "install the 'train' extra"
        ) from None
    if run.is_dir():
        for old in run.glob("events.out.tfevents.*"):
            old.unlink()
    return SummaryWriter(log_dir=str(run))


def run_names(specs: list[str]) -> dict[str, str]:
    """One distinct run folder per policy spec (two specs that clean to one name get ``_``)."""
    names: dict[str, str] = {}
    for spec in specs:
        name = run_dir_name(spec)
        while name in names.values():
            name += "_"
        names[spec] = name
    return names


def write_tensorboard(result: EvaluationResult, metrics: dict[str, Any], tb: Path) -> None:
    """Write the runs under ``tb``; a rerun replaces a policy's run instead of appending."""
    for spec, name in run_names(result.policies).items():
        writer = summary_writer(tb / name)
        try:
            for tag, v, step in tensorboard_scalars(result, metrics, spec):
                writer.add_scalar(tag, v, step)
            deployable = "deployable" if result.deployable[spec] else "NOT deployable (hindsight)"
            writer.add_text("eval/policy", f"`{spec}`: {deployable}", 0)
        finally:
            writer.close()
