"""Workload parameters: what the synthetic generator draws from, the shipped default, and
reading a parameters file (keys it leaves out keep the default's values)."""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from offload_rl.errors import ConfigError, DataFileError
from offload_rl.workloads.correlation import SessionCorrelation
from offload_rl.workloads.distributions import PositiveDist, StrictModel, TurnsDist

DEFAULT_PARAMS_RESOURCE = "workload_default.json"

PARAMS_SUFFIXES = (".yaml", ".yml", ".json")
"""Files that :func:`~offload_rl.workloads.load_workload` reads as workload parameters."""


class WorkloadParams(StrictModel):
    """Everything :class:`SyntheticWorkload` draws from.

    ``session_rate_per_s`` is the rate of new chat sessions in *one edge cell* (Poisson), not of
    a whole cloud service. ``gap_s`` is the time between the arrivals of consecutive turns of a
    session (think time plus the previous answer's generation). ``warmup_s``: sessions start
    from ``-warmup_s`` so a stream begins in steady state, with sessions already in progress.
    ``correlation``: ``None`` (the default) draws every length independently; a
    :class:`SessionCorrelation` correlates them across a session's turns, same marginals.
    """

    session_rate_per_s: float = Field(gt=0.0)
    warmup_s: float = Field(0.0, ge=0.0)
    turns: TurnsDist
    gap_s: PositiveDist
    first_prompt_tokens: PositiveDist
    followup_prompt_tokens: PositiveDist
    output_tokens: PositiveDist
    correlation: SessionCorrelation | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)

    def request_rate_per_s(self) -> float:
        """Mean requests per second of the stream (sessions x mean turns)."""
        return self.session_rate_per_s * self.turns.mean()


@functools.lru_cache(maxsize=1)
def default_workload_params() -> WorkloadParams:
    """The embedded default parameters (``offload_rl/data/workload_default.json``)."""
    resource = importlib.resources.files("offload_rl") / "data" / DEFAULT_PARAMS_RESOURCE
    return WorkloadParams.model_validate(json.loads(resource.read_text(encoding="utf-8")))


def load_workload_params(path: str | Path) -> WorkloadParams:
    """Read WorkloadParams from YAML or JSON; keys it leaves out keep the default's values.

    Nested distributions are replaced whole, never merged field by field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataFileError(path, f"cannot read: {err.strerror or err}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise DataFileError(path, f"invalid JSON: {err.msg}", line=err.lineno) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or "cannot parse"
        raise DataFileError(path, f"invalid YAML: {problem}", line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of workload parameters")
    base = default_workload_params().model_dump()
    provenance = data.get("provenance") or {
        "derived_from": "default",
        "overridden": sorted(data),
    }
    try:
        return WorkloadParams.model_validate({**base, **data, "provenance": provenance})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
