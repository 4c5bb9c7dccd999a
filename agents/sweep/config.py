"""Sweep files: which training configs, which grid or search space, which evaluation, how much
of a machine per trial.

::

    configs: [../configs/train_nyc-lte.yaml, ../configs/train_wifi.yaml]  # relative to this file
    seeds: [0, 1, 2, 3, 4]
    timesteps: 200000                      # optional: overrides every config's total_timesteps
    grid:                                  # training-config keys (dotted) -> values, all combined
      ppo.learning_rate: [1.0e-4, 3.0e-4]
    search:                                # optional: sampled on top of the grid (Ray Tune)
      num_samples: 8
      seed: 0
      space:
        ppo.ent_coef: {loguniform: [1.0e-4, 1.0e-2]}
    evaluate:                              # after each trial, on the config's held-out traces
      policies: [local, edge, cloud, greedy, oracle]
      episodes: 8
      seed: 12345
      select_on_train: [greedy, greedy-last]   # heuristic variants chosen on training traces
    resources: {cpu: 1}
    max_concurrent: 2
    max_failures: 2                        # retries of a trial whose worker process dies

Every key is validated (unknown keys too); errors name the file and the dotted key. The keys
of ``grid`` and ``search.space`` are checked against the training config when the trials are
planned (:mod:`agents.sweep.plan`), where each trial's config is loaded for real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from offload_rl.config_yaml import parse_yaml, validation_message
from offload_rl.errors import ConfigError

# keys a trial sets from the sweep's own fields, so the grid may not name them
RESERVED_KEYS: tuple[str, ...] = ("seed", "total_timesteps", "extends")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dimension(_Strict):
    """One searched parameter: exactly one of Ray Tune's sampling primitives."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = Field(None, description="integers in [low, high)")
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Dimension:
        given = [k for k in ("uniform", "loguniform", "randint", "choice") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, randint, choice")
        bounds = self.uniform or self.loguniform or self.randint
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]}: low must be below high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform: bounds must be > 0")
        return self


class SearchConfig(_Strict):
    """Random search (Ray Tune's variant generator), seeded: the same file gives the same trials,
    so ``--resume`` finds them again."""

    algorithm: str = Field("random", pattern="^random$")
    num_samples: int = Field(..., ge=1, description="samples of the space (per grid point)")
    seed: int = 0
    space: dict[str, Dimension] = Field(..., min_length=1)


class EvaluationConfig(_Strict):
    """What runs after a trial's training: ``offload-rl evaluate`` of the trained agent beside
    ``policies`` on the config's validation scenario (its held-out trace files)."""

    policies: list[str] = Field(default_factory=list, description="heuristics and oracle")
    episodes: int = Field(8, ge=1, description="episodes per trace family")
    seed: int = Field(12345, description="seed of the episode set")
    loads: list[float] | None = Field(None, min_length=1, description="cell scenarios only")
    select_on_train: list[str] = Field(
        default_factory=list,
        description=(
            "heuristic variants also scored on the training traces, so that a table can choose "
            "among them without looking at the held-out episodes"
        ),
    )

    @field_validator("policies", "select_on_train")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        names = [p.strip() for p in v]
        if len(set(names)) != len(names):
            raise ValueError("a policy is listed twice")
        return names


class Resources(_Strict):
    """Ray resources one trial holds (a trial trains with ``torch_threads`` threads)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class SweepConfig(_Strict):
    """A whole sweep."""

    configs: list[str] = Field(..., min_length=1, description="training config files")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    timesteps: int | None = Field(None, ge=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    search: SearchConfig | None = None
    evaluate: EvaluationConfig | None = Field(default_factory=EvaluationConfig)
    resources: Resources = Field(default_factory=Resources)
    max_concurrent: int | None = Field(None, ge=1, description="default: what resources allow")
    max_failures: int = Field(2, ge=0, description="retries of a trial whose worker dies")
    base_dir: str | None = Field(None, exclude=True)
    source: str = Field("sweep", exclude=True)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("a seed is listed twice")
        return v

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            _check_key(key)
            if not values:
                raise ValueError(f"{key}: give at least one value")
        return v

    @model_validator(mode="after")
    def _no_key_twice(self) -> SweepConfig:
        if self.search is not None:
            for key in self.search.space:
                _check_key(key)
                if key in self.grid:
                    raise ValueError(f"search.space.{key} is also in grid")
        return self

    def config_paths(self) -> list[Path]:
        """The training configs, relative to the sweep file."""
        base = Path(self.base_dir) if self.base_dir is not None else Path.cwd()
        return [(base / Path(c).expanduser()).resolve() for c in self.configs]


def _check_key(key: str) -> None:
    if not key or any(not part for part in key.split(".")):
        raise ValueError(f"{key!r}: expected a dotted training-config key like ppo.learning_rate")
    if key in RESERVED_KEYS:
        raise ValueError(f"{key}: set by the sweep itself (use seeds: / timesteps:)")


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep file; every error is a one-line :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: sweep file not found")
    data = parse_yaml(p.read_text(), str(p))
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    try:
        config = SweepConfig.model_validate(
            {**data, "base_dir": str(p.resolve().parent), "source": str(p)}
        )
    except ValidationError as err:
        raise ConfigError(validation_message(str(p), err)) from None
    for i, c in enumerate(config.config_paths()):
        if not c.is_file():
            raise ConfigError(f"{p}: configs.{i}: {c} not found")
    return config
