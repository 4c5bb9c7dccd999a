"""What a training run puts into a checkpoint folder and takes back out of it.

:mod:`agents.checkpoints` owns the folder mechanics (atomic writes, finding the newest complete
one); this module owns their content as training sees it: ``meta.json`` (with the digest of the
normalisation statistics that lets an export check them where ``vecnormalize.pkl`` is gone),
saving the three files, the folder ``--resume`` continues from, the best validation reward a
resumed run must beat, and whether a checkpoint fits the config's scenario.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.checkpoints import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    FINAL_DIR,
    META_FILE,
    META_FORMAT,
    META_FORMAT_VERSION,
    MODEL_FILE,
    VECNORMALIZE_FILE,
    is_complete,
    newest_state,
    read_meta,
    write_atomically,
)
from agents.train_config import TrainConfig
from offload_rl import __version__
from offload_rl.errors import ConfigError
from offload_rl.features import FEATURE_SCHEMA_VERSION, FeatureSpec
from offload_rl.scenario import Scenario

if TYPE_CHECKING:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import VecNormalize


def checkpoint_meta(
    config: TrainConfig,
    spec: FeatureSpec,
    scenario: Scenario,
    vecnormalize: VecNormalize,
    num_timesteps: int,
) -> dict[str, Any]:
    """``meta.json``: everything an exporter or loader needs without unpickling, and the
    digest of the statistics that lets an export check them where ``vecnormalize.pkl`` is gone."""
    import sb3_contrib
    import stable_baselines3
    import torch

    from agents.sb3_policy import ObsNormalization, normalization_digest
    from serving.policy_file import MASKED_LOGIT

    norm = ObsNormalization.from_vecnormalize(vecnormalize)
    per_s = config.ppo.discount_per_second()
    return {
        "format": META_FORMAT,
        "format_version": META_FORMAT_VERSION,
        "algorithm": "MaskablePPO",
        "environment": "EdgeCell-v0" if spec.cell else "SplitCache-v0",
        **({} if per_s is None else {"gamma_per_second": per_s}),
        "num_timesteps": int(num_timesteps),
        "scenario": config.scenario_ref(),
        "scenario_name": scenario.name,
        "feature_spec": {
            **spec.to_dict(),
            "obs_dim": spec.obs_dim,
            "n_actions": spec.layout.n_actions,
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "feature_names": spec.feature_names(),
        },
        "action_meanings": spec.layout.meanings(),
        "masked_logit": MASKED_LOGIT,
        "obs_normalization": norm.to_json() if norm is not None else None,
        "obs_normalization_sha256": normalization_digest(norm),
        "versions": {
            "offload_rl": __version__,
            "stable_baselines3": stable_baselines3.__version__,
            "sb3_contrib": sb3_contrib.__version__,
            "torch": torch.__version__,
        },
        "config": config.model_dump(mode="json", exclude_none=True),
    }


def save_checkpoint(
    target: Path, model: MaskablePPO, vecnormalize: VecNormalize, meta: dict[str, Any]
) -> Path:
    """Write model, statistics and metadata to ``target`` atomically."""

    def write(tmp: Path) -> None:
        model.save(tmp / MODEL_FILE)
        vecnormalize.save(str(tmp / VECNORMALIZE_FILE))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    return write_atomically(target, write)


def resolve_resume(resume: str | Path) -> tuple[Path, Path]:
    """``(run folder, checkpoint folder)`` for ``--resume`` (a run or a checkpoint folder).

    A run folder continues from its newest state (:func:`agents.checkpoints.newest_state`):
    a finished run from ``final/``, not from its last periodic checkpoint, so that no step is
    trained twice.
    """
    p = Path(resume)
    if is_complete(p) and p.parent.name == CHECKPOINTS_DIR:
        return p.parent.parent, p
    if is_complete(p) and p.name in (FINAL_DIR, BEST_DIR):
        return p.parent, p
    if not p.is_dir():
        raise ConfigError(f"--resume {p}: no such run folder")
    ckpt = newest_state(p)
    if ckpt is None:
        raise ConfigError(f"--resume {p}: no complete checkpoint to resume from")
    return p, ckpt


def previous_best(folder: Path) -> tuple[float, int]:
    """Validation reward and step of a run's ``best/`` (a resumed run must beat it)."""
    meta = read_meta(folder) if is_complete(folder) else None
    if meta is None or "validation" not in meta:
        return -math.inf, -1
    return float(meta["validation"]["mean_reward"]), int(meta["num_timesteps"])


def check_checkpoint_fits(ckpt: Path, spec: FeatureSpec) -> None:
    """Refuse a checkpoint whose observation or action size differs from the scenario's."""
    meta = read_meta(ckpt)
    if meta is None:
        raise ConfigError(f"{ckpt}: no {META_FILE}")
    trained = meta.get("feature_spec", {})
    want = {"obs_dim": spec.obs_dim, "n_actions": spec.layout.n_actions}
    bad = [f"{k} {trained.get(k)} != {v}" for k, v in want.items() if trained.get(k) != v]
    if bad:
        raise ConfigError(
            f"{ckpt}: checkpoint does not fit the config's scenario ({', '.join(bad)})"
        )
