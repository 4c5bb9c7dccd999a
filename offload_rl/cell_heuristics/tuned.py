"""The cell heuristics' tuned parameters: one JSON file in package data, validated on load.

Every free parameter of :mod:`offload_rl.cell_heuristics` lives here, with the value that
``experiments/tuning/tune_cell_heuristics.py`` found on *training* episodes (never on the
episodes a heuristic is scored on). The file records the command, the date and the training
episodes beside the values, so a reader can tell where a number came from. A missing or invalid
file is a :class:`~offload_rl.errors.DataFileError` naming it, on one line.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from offload_rl.config_yaml import validation_message
from offload_rl.errors import DataFileError

TUNED_RESOURCE = "cell_heuristics.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _per_os_level(default: float, description: str) -> Any:
    """A field of one value per OS thermal level (nominal, fair, serious, critical)."""
    return Field(
        default_factory=lambda: [default] * 4,
        min_length=4,
        max_length=4,
        description=description,
    )


class PredictorParams(_Strict):
    """What every cell heuristic predicts with (see :mod:`.predictor`)."""

    estimator: Literal["last", "hmean", "ewma"] = "ewma"
    throughput_margin: float = Field(1.0, gt=0.0, le=2.0, description="x the estimate")
    output_prev_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="log-space weight of the previous turn's output length"
    )
    device_wait_s: list[float] = _per_os_level(
        0.0,
        "mean seconds the device's compute queue is still busy, per OS thermal level (given "
        "that it is busy: see device_busy_p)",
    )
    device_busy_p: list[float] = _per_os_level(
        1.0,
        "share of requests that find the device's compute queue busy, per OS thermal level (1: "
        "every request waits device_wait_s, the forecast before this field existed)",
    )

    @field_validator("device_busy_p")
    @classmethod
    def _shares(cls, value: list[float]) -> list[float]:
        if any(not (0.0 <= p <= 1.0) for p in value):
            raise ValueError(f"shares must lie in [0, 1], got {value}")
        return value


class ExternalityParams(_Strict):
    """``greedy-externality``: the price of a second of delay imposed on another request."""

    price: float = Field(1.0, ge=0.0)


class ThermalMPCParams(_Strict):
    """``thermal-mpc``: lookahead horizon (future requests of the device) and prices."""

    horizon: int = Field(2, ge=1, le=16)
    heat_price: float = Field(1.0, ge=0.0)
    radio_price: float = Field(1.0, ge=0.0)


class LyapunovParams(_Strict):
    """``lyapunov``: drift-plus-penalty weight ``V`` and the per-request budgets."""

    v: float = Field(1.0, gt=0.0)
    energy_budget_j: float = Field(10.0, ge=0.0, description="device joules per request")
    slo_budget: float = Field(0.1, ge=0.0, le=1.0, description="SLO-violation share")


class GDSFParams(_Strict):
    """The value-per-byte cache rule: keep iff value per pool share >= threshold x occupancy."""

    threshold: float = Field(1.0, ge=0.0)


class ReturnModelParams(_Strict):
    """P(the session has another turn | 0-based turn t), fitted on training sessions."""

    p_return: list[float] = Field(min_length=1)
    sessions: int = Field(0, ge=0, description="training sessions it was fitted on")

    def at_turn(self, turn: int) -> float:
        p = self.p_return
        return float(p[min(max(int(turn), 0), len(p) - 1)])


class TunedParams(_Strict):
    """All of them, with where they came from."""

    command: str
    date: str
    training: dict[str, Any]
    predictor: PredictorParams
    externality: ExternalityParams
    thermal_mpc: ThermalMPCParams
    lyapunov: LyapunovParams
    gdsf: GDSFParams
    return_model: ReturnModelParams
    scores: dict[str, float] = Field(default_factory=dict)


def default_tuned_path() -> Path:
    """Where the shipped file lies (inside the installed package)."""
    return Path(str(importlib.resources.files("offload_rl") / "data" / "tuned" / TUNED_RESOURCE))


def load_tuned_params(path: str | Path | None = None) -> TunedParams:
    """The tuned parameters in ``path`` (default: the shipped file); one-line errors."""
    target = Path(path) if path is not None else default_tuned_path()
    return _load(str(target))


@functools.lru_cache(maxsize=8)
def _load(path: str) -> TunedParams:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(
            path,
            "tuned cell-heuristic parameters not found; write them with "
            "experiments/tuning/tune_cell_heuristics.py",
        ) from None
    except OSError as err:
        raise DataFileError(path, f"cannot read: {err.strerror or err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFileError(path, f"not valid JSON: {err.msg}", line=err.lineno) from None
    try:
        return TunedParams.model_validate(data)
    except ValidationError as err:
        message = validation_message(path, err).removeprefix(f"{path}: ")
        raise DataFileError(path, message) from None


def write_tuned_params(params: TunedParams, path: str | Path) -> None:
    """Write ``params`` as indented JSON (what :func:`load_tuned_params` reads back)."""
    Path(path).write_text(json.dumps(params.model_dump(), indent=2) + "\n", encoding="utf-8")
    _load.cache_clear()
