"""``agents.train``: the names the CLI, the experiments, the demo and the tests import.

The code lives in :mod:`agents.training` (start at :mod:`agents.training.loop`). Models saved
with ``lr_schedule: linear`` before the split pickled ``agents.train.LinearSchedule``; this
module keeps that name importable so that their checkpoints still load.
"""

from __future__ import annotations

from agents.checkpoints import BEST_DIR
from agents.training.checkpointing import checkpoint_meta, resolve_resume, save_checkpoint
from agents.training.envs import FamilyBalancedReset, make_env, make_vec_env
from agents.training.layout import AGENT_RUN, CONFIG_FILE, SPLIT_FILE, SUMMARY_FILE
from agents.training.loop import train
from agents.training.model import LinearSchedule, build_model
from agents.training.validation import Validation, ValidationResult, build_validation

__all__ = [
    "AGENT_RUN",
    "BEST_DIR",
    "CONFIG_FILE",
    "SPLIT_FILE",
    "SUMMARY_FILE",
    "FamilyBalancedReset",
    "LinearSchedule",
    "Validation",
    "ValidationResult",
    "build_model",
    "build_validation",
    "checkpoint_meta",
    "make_env",
    "make_vec_env",
    "resolve_resume",
    "save_checkpoint",
    "train",
]
