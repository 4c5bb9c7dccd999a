"""TensorBoard for a training run: the agent's run through SB3's logger, one sibling run per
heuristic, the config and warm-start texts, and the hyper-parameters.

Imports SB3 and torch at module level: only :func:`agents.training.loop.train` imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sb3_contrib import MaskablePPO
from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat
from torch.utils.tensorboard import SummaryWriter

from agents.evaluation.tags import run_dir_name
from agents.train_config import TrainConfig
from agents.training.layout import AGENT_RUN, TB_DIR


class ResumableTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard output, reopened with ``purge_step`` when a run resumes."""

    def __init__(self, folder: str, purge_step: int | None) -> None:
        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False


def open_agent_run(
    model: MaskablePPO, run_dir: Path, purge_step: int | None
) -> ResumableTensorBoard:
    """Point the model's logger at ``tb/ppo`` and return that output (its ``writer`` too)."""
    agent_tb = ResumableTensorBoard(str(run_dir / TB_DIR / AGENT_RUN), purge_step)
    model.set_logger(Logger(folder=None, output_formats=[agent_tb]))
    return agent_tb


def open_heuristic_runs(
    run_dir: Path, names: list[str], purge_step: int | None
) -> dict[str, SummaryWriter]:
    """One writer per heuristic, in a run beside the agent's (same tags, same steps)."""
    return {
        name: SummaryWriter(
            log_dir=str(run_dir / TB_DIR / run_dir_name(name)), purge_step=purge_step
        )
        for name in names
    }


def write_start_texts(
    writer: SummaryWriter, config: TrainConfig | None, warm_report: dict[str, Any] | None
) -> None:
    """At step 0: the config (a fresh run only) and the warm-start report, when there is one."""
    if config is not None:
        writer.add_text("config", as_code(config.to_yaml()), 0)
    if warm_report is not None:
        writer.add_text("warm_start", as_code(json.dumps(warm_report, indent=1)), 0)
        writer.add_scalar("warm_start/heldout_agreement", warm_report["heldout_agreement"], 0)


def hparams(config: TrainConfig) -> dict[str, Any]:
    """Flat scalar hyper-parameters for TensorBoard's HPARAMS tab."""
    out: dict[str, Any] = {
        "scenario": config.scenario,
        "n_envs": config.n_envs,
        "seed": config.seed,
        "total_timesteps": config.total_timesteps,
        "episode_requests": config.episode_requests or 0,
        "normalize_obs": config.normalize.obs,
        "normalize_reward": config.normalize.reward,
    }
    for k, v in config.ppo.model_dump().items():
        out[f"ppo.{k}"] = "x".join(map(str, v)) if isinstance(v, list) else v
    return out


def as_code(text: str) -> str:
    """Markdown code block for TensorBoard's text tab."""
    return "\n".join("    " + line for line in text.splitlines())
