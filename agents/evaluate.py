"""The evaluation harness's public names, in one place (the code lives in agents.evaluation).

The CLI, training's validation and the scripts in ``experiments/`` import from here; see
:mod:`agents.evaluation` for how the harness works and which module does what.
"""

from __future__ import annotations

from agents.evaluation.confidence import mean_ci95, t_quantile_975
from agents.evaluation.episodes import Episode, build_episodes
from agents.evaluation.metrics import METRICS_SCHEMA_VERSION, compute_metrics, summarise
from agents.evaluation.outputs import CSV_FIELDS, write_outputs
from agents.evaluation.result import EvaluationResult
from agents.evaluation.rollout import (
    BOOL_COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    decider,
    run_episode,
)
from agents.evaluation.runner import evaluate
from agents.evaluation.scenario_options import add_scenario_arguments, prepare_scenario
from agents.evaluation.tags import FAMILY_TAGS, SUMMARY_TAGS, run_dir_name, tag_safe
from agents.evaluation.tensorboard_runs import tensorboard_scalars

__all__ = [
    "BOOL_COLUMNS",
    "CSV_FIELDS",
    "FAMILY_TAGS",
    "FLOAT_COLUMNS",
    "INT_COLUMNS",
    "METRICS_SCHEMA_VERSION",
    "SUMMARY_TAGS",
    "Episode",
    "EvaluationResult",
    "add_scenario_arguments",
    "build_episodes",
    "compute_metrics",
    "decider",
    "evaluate",
    "mean_ci95",
    "prepare_scenario",
    "run_dir_name",
    "run_episode",
    "summarise",
    "t_quantile_975",
    "tag_safe",
    "tensorboard_scalars",
    "write_outputs",
]
