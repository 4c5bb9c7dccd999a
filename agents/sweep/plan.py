"""A sweep file expanded into its trials, each with a training config file of its own.

The list is fixed before anything runs (the random search is sampled here, seeded, with Ray
Tune's own variant generator), so a re-run with ``--resume`` meets the same trials in the same
folders. Each trial's config is a small YAML that ``extends`` the base config and states the
trial's seed, length and parameters; it is loaded here for real, so a bad key or value in the
grid fails before any training, naming the sweep file, the trial and the key. The same file
reproduces the trial alone: ``offload-rl train --config OUT/trials/<id>/config.yaml``.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.sweep.config import SweepConfig
from offload_rl.errors import ConfigError

TRIALS_DIR = "trials"
TRIAL_CONFIG = "config.yaml"
_MAX_ID_PART = 60  # longer parameter strings become a hash (folder names stay readable)


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a base config, a seed, a length and parameter values (dotted keys)."""

    trial_id: str
    label: str
    config: str
    seed: int
    timesteps: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        return cls(**data)


def config_label(path: Path) -> str:
    """``train_nyc-lte.yaml`` -> ``nyc-lte`` (the name the results table uses)."""
    return path.stem.removeprefix("train_")


def trial_dir(out: Path, trial_id: str) -> Path:
    return out / TRIALS_DIR / trial_id


def plan_trials(sweep: SweepConfig) -> list[TrialSpec]:
    """Every trial of the sweep: configs x grid x search samples x seeds, in that order."""
    points = _grid_points(sweep.grid)
    trials: list[TrialSpec] = []
    seen: set[str] = set()
    for path in sweep.config_paths():
        label = config_label(path)
        for point in points:
            for sample in _search_samples(sweep):
                params = {**point, **sample}
                middle = _params_part(params)
                for seed in sweep.seeds:
                    base = "/".join(p for p in (label, middle, f"seed{seed}") if p)
                    trial_id, n = base, 2
                    while trial_id in seen:  # two equal samples of a choice
                        trial_id, n = f"{base}-{n}", n + 1
                    seen.add(trial_id)
                    trials.append(
                        TrialSpec(trial_id, label, str(path), seed, sweep.timesteps, params)
                    )
    return trials


def write_trial_configs(sweep: SweepConfig, trials: list[TrialSpec], out: Path) -> None:
    """Write and load every trial's config (a bad grid value fails here, before training)."""
    from agents.train_config import load_train_config

    for trial in trials:
        path = trial_dir(out, trial.trial_id) / TRIAL_CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(trial_config_text(trial, sweep.source))
        try:
            load_train_config(path)
        except ConfigError as err:
            raise ConfigError(f"{sweep.source}: trial {trial.trial_id}: {err}") from None


def trial_config_text(trial: TrialSpec, source: str) -> str:
    """The trial's training config: ``extends`` the base, then seed, length and parameters."""
    data: dict[str, Any] = {"extends": trial.config, "seed": trial.seed}
    if trial.timesteps is not None:
        data["total_timesteps"] = trial.timesteps
    for key, value in trial.params.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {key}: {part} is both a value and a section")
            node = child
        node[leaf] = value
    head = f"# written by offload-rl sweep ({source}): trial {trial.trial_id}\n"
    return head + yaml.safe_dump(data, sort_keys=False)


def _grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def _search_samples(sweep: SweepConfig) -> list[dict[str, Any]]:
    """``num_samples`` draws of the search space (Ray Tune's sampling, seeded), or one empty."""
    search = sweep.search
    if search is None:
        return [{}]
    try:
        import numpy as np
        from ray import tune
        from ray.tune.search.variant_generator import generate_variants
    except ImportError:
        raise ConfigError(
            f"{sweep.source}: search: needs Ray Tune: pip install 'offload-rl[sweep]'"
        ) from None

    space: dict[str, Any] = {}
    for key, dim in search.space.items():
        if dim.uniform is not None:
            space[key] = tune.uniform(*dim.uniform)
        elif dim.loguniform is not None:
            space[key] = tune.loguniform(*dim.loguniform)
        elif dim.randint is not None:
            space[key] = tune.randint(*dim.randint)
        else:
            space[key] = tune.choice(list(dim.choice or []))
    rng = np.random.RandomState(search.seed)
    samples = []
    for _ in range(search.num_samples):
        _, resolved = next(iter(generate_variants(space, random_state=rng)))
        samples.append({k: _plain(resolved[k]) for k in search.space})
    return samples


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (for YAML and JSON)."""
    return value.item() if hasattr(value, "item") else value


def _params_part(params: dict[str, Any]) -> str:
    if not params:
        return ""
    text = ",".join(f"{k}={_short(v)}" for k, v in params.items())
    text = text.replace("/", "_").replace(" ", "")
    if len(text) > _MAX_ID_PART:
        text = f"p{zlib.crc32(text.encode()):08x}"
    return text


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
