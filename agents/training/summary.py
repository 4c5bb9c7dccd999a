"""``summary.json``: throughput, the validation set, the best step, the learning curve and
the final validation of the agent and of each heuristic."""

from __future__ import annotations

import json
from typing import Any

from agents.training.layout import AGENT_RUN, SUMMARY_FILE
from agents.training.recorder import RunRecorder
from agents.training.validation import ValidationResult

BRIEF_KEYS = (
    "mean_reward",
    "mean_reward_ci95",
    "mean_latency_s",
    "latency_p95_s",
    "mean_ttft_s",
    "slo_violation_rate",
    "energy_j_per_request",
    "cache_hit_rate",
    "keep_rate",
    "tier_share",
)
# a cell validation's own headline numbers (agents.evaluation.cell_metrics.summarise_cell)
CELL_BRIEF_KEYS = (
    "energy_j_per_decision",
    "unfinished_share",
    "mean_edge_batch",
    "mean_edge_kv_occupancy",
)


def write_summary(
    recorder: RunRecorder,
    final: ValidationResult,
    steps: int,
    resumed_from: int | None,
    learn_s: float,
    steps_per_s: float,
    validation_requests: int,
) -> dict[str, Any]:
    """Write ``OUT/summary.json`` and return it; ``learn_s`` is the wall time of ``learn()``."""
    config = recorder.config
    trained = steps - recorder.learner.start
    learn_only = learn_s - recorder.eval_s
    summary = {
        "num_timesteps": steps,
        "resumed_from": resumed_from,
        "warm_start": recorder.learner.warm_start,
        "learn_wall_s": round(learn_s, 2),
        "eval_wall_s": round(recorder.eval_s, 2),
        "env_steps_per_s": round(steps_per_s, 1),
        "env_steps_per_s_without_eval": round(trained / learn_only, 1) if learn_only > 0 else None,
        "n_envs": config.n_envs,
        "vec_env": config.vec_env if config.n_envs > 1 else "dummy",
        "validation": {
            "episodes": len(recorder.validation.episodes),
            "requests": validation_requests,
            "seed": config.eval_seed,
        },
        "best": {"step": recorder.best[1], "mean_reward": recorder.best[0]},
        "curve": [{"step": s, "mean_reward": r} for s, r in recorder.history],
        "final": {AGENT_RUN: brief(final.summary)}
        | {k: brief(v.summary) for k, v in recorder.baselines.items()},
    }
    (recorder.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an evaluation summary."""
    cell = {k: summary[k] for k in CELL_BRIEF_KEYS if k in summary}
    return {k: summary.get(k) for k in BRIEF_KEYS} | cell
