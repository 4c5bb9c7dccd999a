"""Validation during training: masked deterministic episodes on a pinned set, the same at
every evaluation, and the heuristics' values on it (they do not learn: computed once)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.evaluation.tags import tag_safe
from agents.train_config import TrainConfig
from offload_rl.cost_model import TIERS
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import resolve_scenario

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from envs.split_cache import SplitCacheEnv


@dataclass
class Validation:
    """The fixed validation episodes and an environment to run them in."""

    env: SplitCacheEnv
    episodes: list[Any]  # agents.evaluate.Episode
    n_layers: int

    def run(self, policy: Any) -> ValidationResult:
        from agents.evaluate import run_episode

        records = [run_episode(policy, self.env, ep) for ep in self.episodes]
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

        def num(x: Any) -> float:
            return math.nan if x is None else float(x)

        summary = summarise(records, n_layers)
        scalars = {tag: num(summary[key]) for tag, key in SUMMARY_TAGS.items()}
        for tier in TIERS:
            scalars[f"eval/tier_share/{tier}"] = float(summary["tier_share"].get(tier, 0.0))
        scalars["eval/invalid_action_rate"] = num(summary["invalid_action_rate"])
        for family in sorted({ep.family for ep in episodes}):
            sub = [r for r, ep in zip(records, episodes, strict=True) if ep.family == family]
            fam = summarise(sub, n_layers)
            for name, key in FAMILY_TAGS.items():
                scalars[f"family/{tag_safe(family)}/{name}"] = num(fam[key])
        splits = np.concatenate([r["tier_index"] for r in records]).astype(np.float64)
        return cls(scalars=scalars, splits=splits, summary=summary)

    def write(self, writer: SummaryWriter, step: int) -> None:
        for tag, value in self.scalars.items():
            writer.add_scalar(tag, value, step)
        if self.splits.size:
            writer.add_histogram("eval/split", self.splits, step, bins="auto")
        writer.flush()


def build_validation(config: TrainConfig, scenario: Scenario) -> Validation:
    """``eval_episodes`` pinned episodes per trace family, drawn from ``eval_seed``."""
    from agents.evaluate import build_episodes
    from envs.split_cache import SplitCacheEnv

    resolved = resolve_scenario(scenario)
    episodes = build_episodes(resolved, config.eval_episodes, config.eval_seed)
    return Validation(env=SplitCacheEnv(resolved), episodes=episodes, n_layers=resolved.n_layers)


def heuristic_baselines(
    validation: Validation, config: TrainConfig, scenario: Scenario
) -> dict[str, ValidationResult]:
    """Each configured heuristic's result on the validation set, by name."""
    from agents.policies import resolve_policy

    return {
        name: validation.run(resolve_policy(name, scenario, seed=config.seed))
        for name in config.heuristics
    }
