"""Validation during training: masked deterministic episodes on a pinned set, the same at
every evaluation, and the heuristics' values on it (they do not learn: computed once).

A cell scenario validates on EdgeCell-v0 with the evaluation harness's cell loop and metrics
(:mod:`agents.evaluation.cell_rollout`, :mod:`agents.evaluation.cell_metrics`): request outcomes
per *finished* request, reward and energy per decision, and the edge's batch and KV occupancy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from agents.evaluation.tags import tag_safe
from agents.train_config import TrainConfig
from offload_rl.cost_model import TIERS
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import resolve_scenario

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from envs.edge_cell import EdgeCellEnv
    from envs.split_cache import SplitCacheEnv


# eval/* tags of a cell validation beyond the single-device ones (SUMMARY_TAGS, the energy per
# request excepted): tag -> key of agents.evaluation.cell_metrics.summarise_cell
CELL_EXTRA_TAGS: dict[str, str] = {
    "eval/energy_j_per_decision": "energy_j_per_decision",
    "eval/queue_mean_s": "mean_queue_s",
    "eval/unfinished_share": "unfinished_share",
    "eval/edge_batch": "mean_edge_batch",
    "eval/edge_kv_occupancy": "mean_edge_kv_occupancy",
}
CELL_FAMILY_TAGS: dict[str, str] = {
    "mean_reward": "mean_reward",
    "latency_p95_s": "latency_p95_s",
    "slo_violation_rate": "slo_violation_rate",
    "energy_j_per_decision": "energy_j_per_decision",
}


@dataclass
class Validation:
    """The fixed validation episodes and an environment to run them in."""

    env: SplitCacheEnv | EdgeCellEnv
    episodes: list[Any]  # agents.evaluate.Episode
    n_layers: int
    cell: bool = False  # EdgeCell-v0: the cell's episode loop and metrics

    def run(self, policy: Any) -> ValidationResult:
        if self.cell:
            from agents.evaluation.cell_rollout import run_cell_episode

            env = cast("EdgeCellEnv", self.env)
            cell_records = [run_cell_episode(policy, env, ep) for ep in self.episodes]
            return ValidationResult.from_cell_records(cell_records, self.episodes, self.n_layers)
        from agents.evaluate import run_episode

        split_env = cast("SplitCacheEnv", self.env)
        records = [run_episode(policy, split_env, ep) for ep in self.episodes]
        return ValidationResult.from_records(records, self.episodes, self.n_layers)


@dataclass
class ValidationResult:
    """Scalars (same tags for every policy) and the split histogram of one validation run."""

    scalars: dict[str, float]
    splits: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_reward(self) -> float:
        return self.scalars["eval/mean_reward"]

    @classmethod
    def from_records(
        cls, records: list[dict[str, np.ndarray]], episodes: Sequence[Any], n_layers: int
    ) -> ValidationResult:
        from agents.evaluate import FAMILY_TAGS, SUMMARY_TAGS, summarise

        def summary(recs: list[dict[str, np.ndarray]]) -> dict[str, Any]:
            return summarise(recs, n_layers)

        return cls._tabulate(records, episodes, summary, SUMMARY_TAGS, FAMILY_TAGS)

    @classmethod
    def from_cell_records(
        cls, records: list[dict[str, np.ndarray]], episodes: Sequence[Any], n_layers: int
    ) -> ValidationResult:
        from agents.evaluate import SUMMARY_TAGS
        from agents.evaluation.cell_metrics import summarise_cell

        def summary(recs: list[dict[str, np.ndarray]]) -> dict[str, Any]:
            return summarise_cell(recs, n_layers)

        per_request_energy = "energy_j_per_request"  # the cell's energy is per decision
        tags = {t: k for t, k in SUMMARY_TAGS.items() if k != per_request_energy}
        return cls._tabulate(records, episodes, summary, tags | CELL_EXTRA_TAGS, CELL_FAMILY_TAGS)

    @classmethod
    def _tabulate(
        cls,
        records: list[dict[str, np.ndarray]],
        episodes: Sequence[Any],
        summarise: Callable[[list[dict[str, np.ndarray]]], dict[str, Any]],
        tags: dict[str, str],
        family_tags: dict[str, str],
    ) -> ValidationResult:
        """``tags`` of the whole set's summary, tier shares, ``family_tags`` per family."""
        summary = summarise(records)
        scalars = {tag: _number(summary[key]) for tag, key in tags.items()}
        for tier in TIERS:
            scalars[f"eval/tier_share/{tier}"] = float(summary["tier_share"].get(tier, 0.0))
        scalars["eval/invalid_action_rate"] = _number(summary["invalid_action_rate"])
        for family in sorted({ep.family for ep in episodes}):
            sub = [r for r, ep in zip(records, episodes, strict=True) if ep.family == family]
            fam = summarise(sub)
            for name, key in family_tags.items():
                scalars[f"family/{tag_safe(family)}/{name}"] = _number(fam[key])
        splits = np.concatenate([r["tier_index"] for r in records]).astype(np.float64)
        return cls(scalars=scalars, splits=splits, summary=summary)

    def write(self, writer: SummaryWriter, step: int) -> None:
        for tag, value in self.scalars.items():
            writer.add_scalar(tag, value, step)
        if self.splits.size:
            writer.add_histogram("eval/split", self.splits, step, bins="auto")
        writer.flush()


def build_validation(config: TrainConfig, scenario: Scenario) -> Validation:
    """``eval_episodes`` pinned episodes per trace family, drawn from ``eval_seed`` (for a
    cell: device 0's trace, offset and the workload seed that draws the other devices)."""
    from agents.evaluate import build_episodes

    resolved = resolve_scenario(scenario)
    episodes = build_episodes(resolved, config.eval_episodes, config.eval_seed)
    if scenario.cell is not None:
        from envs.edge_cell import EdgeCellEnv

        env = EdgeCellEnv(resolved)
        return Validation(env=env, episodes=episodes, n_layers=env.layout.n_layers, cell=True)
    from envs.split_cache import SplitCacheEnv

    return Validation(env=SplitCacheEnv(resolved), episodes=episodes, n_layers=resolved.n_layers)


def _number(x: Any) -> float:
    """A summary value as a scalar (an undefined one, ``None``, as NaN)."""
    return math.nan if x is None else float(x)


def heuristic_baselines(
    validation: Validation, config: TrainConfig, scenario: Scenario
) -> dict[str, ValidationResult]:
    """Each configured heuristic's result on the validation set, by name."""
    from agents.policies import resolve_policy

    return {
        name: validation.run(resolve_policy(name, scenario, seed=config.seed))
        for name in config.heuristics
    }
