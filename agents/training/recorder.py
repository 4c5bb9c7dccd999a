"""What a run keeps at its evaluation and checkpoint steps: the validation of the agent (with
the heuristics' values beside it in TensorBoard), ``best/``, ``checkpoints/step_N/`` and
``final/``, and the curve and timing that ``summary.json`` reports."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.checkpoints import BEST_DIR, CHECKPOINTS_DIR, FINAL_DIR, checkpoint_name
from agents.evaluation.progress import ProgressBar
from agents.train_config import TrainConfig
from agents.training.checkpointing import checkpoint_meta, save_checkpoint
from agents.training.model import Learner
from agents.training.validation import Validation, ValidationResult
from offload_rl.features import FeatureSpec
from offload_rl.scenario import Scenario

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


@dataclass
class RunRecorder:
    """Evaluates the learner and writes its checkpoints; remembers the best and the curve."""

    run_dir: Path
    config: TrainConfig
    spec: FeatureSpec
    scenario: Scenario  # the training scenario, for meta.json
    learner: Learner
    validation: Validation
    baselines: dict[str, ValidationResult]
    agent_writer: SummaryWriter
    baseline_writers: dict[str, SummaryWriter]
    progress: ProgressBar
    best: tuple[float, int] = (-math.inf, -1)  # (validation reward, step)
    history: list[tuple[int, float]] = field(default_factory=list)
    eval_s: float = 0.0  # wall-clock seconds spent in validation

    def meta(self, step: int, **extra: Any) -> dict[str, Any]:
        vecnorm = self.learner.vecnorm
        return checkpoint_meta(self.config, self.spec, self.scenario, vecnorm, step) | extra

    def evaluate(self, step: int) -> ValidationResult:
        """Validate the agent, write its and the heuristics' values, keep ``best/``."""
        from agents.sb3_policy import SB3Policy

        t = time.perf_counter()
        vecnorm = self.learner.vecnorm if self.config.normalize.obs else None
        policy = SB3Policy.from_model(self.learner.model, vecnorm, self.spec, name="ppo")
        result = self.validation.run(policy)
        result.write(self.agent_writer, step)
        for name, res in self.baselines.items():
            res.write(self.baseline_writers[name], step)
        self.history.append((step, result.mean_reward))
        if result.mean_reward > self.best[0]:
            self.best = (result.mean_reward, step)
            validated = {"validation": {"mean_reward": result.mean_reward}}
            self._save(self.run_dir / BEST_DIR, self.meta(step, **validated))
        self.eval_s += time.perf_counter() - t
        self.agent_writer.add_scalar("perf/eval_s", time.perf_counter() - t, step)
        self.progress.update(step, info=f"validation reward {result.mean_reward:.3f}")
        return result

    def checkpoint(self, step: int) -> None:
        """``checkpoints/step_<step>/``."""
        self._save(self.run_dir / CHECKPOINTS_DIR / checkpoint_name(step), self.meta(step))

    def save_final(self, step: int) -> None:
        """``final/``."""
        self._save(self.run_dir / FINAL_DIR, self.meta(step))

    def _save(self, target: Path, meta: dict[str, Any]) -> None:
        save_checkpoint(target, self.learner.model, self.learner.vecnorm, meta)
