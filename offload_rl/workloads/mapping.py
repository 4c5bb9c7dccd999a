"""Field mappings: which field of a user's request log is which, so any CSV or JSON Lines file
can be read as a workload.

Nothing is guessed at load time. A mapping names the arrival-time field and its unit or format,
the token fields, and optionally the session id and the KV-block (prefix) ids; a log whose
block ids come as a dict of lists (one list per prompt part) states the order in which the parts
are concatenated. When sessions come from the file (a session field or block ids), the mapping
must also say whether a recorded input already includes the session's history: the two readings
give very different new-token counts and no file says which it is. ``offload-rl workload
inspect`` suggests a mapping; the user copies it into YAML.

The three recordings the project ships readers for are mappings too (:data:`BUILTIN_MAPPINGS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from offload_rl.config_yaml import parse_yaml, validation_message
from offload_rl.errors import ConfigError

TimeUnit = Literal["s", "ms", "us", "ns", "iso8601"]
TIME_UNITS: tuple[str, ...] = ("s", "ms", "us", "ns", "iso8601")
UNIT_SECONDS: dict[str, float] = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
"""Divisor that turns a numeric time in the unit into seconds."""

FileFormat = Literal["auto", "csv", "jsonl"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeField(_Strict):
    """The arrival time: a field and its unit (numbers or numeric strings) or ``iso8601``."""

    field: str = Field(min_length=1)
    unit: TimeUnit


class BlockIdsField(_Strict):
    """Prefix/KV-block ids: a list per request, or a dict of lists flattened in ``order``."""

    field: str = Field(min_length=1)
    order: list[str] | None = Field(
        None, description="dict keys in concatenation order (needed when the field is a dict)"
    )
    block_tokens: int | None = Field(
        None, ge=1, description="tokens per block, for the reuse note (Mooncake: 512)"
    )


class Filters(_Strict):
    """Which requests to keep: a time window (seconds after the first request) and a count."""

    start_s: float | None = Field(None, ge=0.0)
    end_s: float | None = Field(None, gt=0.0)
    first: int | None = Field(None, ge=1, description="keep the first N requests (after window)")

    @model_validator(mode="after")
    def _window_ordered(self) -> Filters:
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s:g}) must be after start_s ({self.start_s:g})")
        return self


class FieldMapping(_Strict):
    """How the records of one request log become requests (see the module docstring)."""

    format: FileFormat = "auto"
    time: TimeField
    input_tokens: str = Field(min_length=1)
    output_tokens: str = Field(min_length=1)
    session_id: str | None = None
    block_ids: BlockIdsField | None = None
    input_includes_history: bool | None = Field(
        None, description="the recorded input holds the session's earlier turns (BurstGPT does)"
    )
    filters: Filters = Field(default_factory=Filters)
    strict: bool = Field(False, description="reject the file at the first unusable record")

    @model_validator(mode="after")
    def _history_stated(self) -> FieldMapping:
        if (self.session_id or self.block_ids) and self.input_includes_history is None:
            raise ValueError(
                "input_includes_history: required when sessions come from the file "
                "(session_id or block_ids): say whether a recorded input already holds "
                "the session's earlier turns (true for BurstGPT and Mooncake)"
            )
        return self

    def fields(self) -> list[str]:
        """The record fields this mapping reads."""
        names = [self.time.field, self.input_tokens, self.output_tokens]
        names += [self.session_id] if self.session_id else []
        names += [self.block_ids.field] if self.block_ids else []
        return names


def field_mapping_from_dict(data: object, source: str) -> FieldMapping:
    """Validate a parsed mapping; errors name ``source`` and the dotted key."""
    if isinstance(data, FieldMapping):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of workload fields")
    try:
        return FieldMapping.model_validate(data)
    except ValidationError as err:
        raise ConfigError(validation_message(source, err)) from None


def load_field_mapping(path: str | Path) -> FieldMapping:
    """A FieldMapping from a YAML file; errors name the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: workload mapping file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the workload mapping: {err}") from None
    data = parse_yaml(text, str(path))
    return field_mapping_from_dict(data, str(path))


def mapping_yaml(mapping: FieldMapping) -> str:
    """The mapping as the YAML a user would write (defaults left out)."""
    data = mapping.model_dump(exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


BUILTIN_MAPPINGS: dict[str, FieldMapping] = {
    "azure": FieldMapping(
        format="csv",
        time=TimeField(field="TIMESTAMP", unit="iso8601"),
        input_tokens="ContextTokens",
        output_tokens="GeneratedTokens",
        strict=True,
    ),
    "burstgpt": FieldMapping(
        format="csv",
        time=TimeField(field="arrival_ms", unit="ms"),
        input_tokens="input_length",
        output_tokens="output_length",
        session_id="session_id",
        input_includes_history=True,
        strict=True,
    ),
    "mooncake": FieldMapping(
        format="jsonl",
        time=TimeField(field="timestamp", unit="ms"),
        input_tokens="input_length",
        output_tokens="output_length",
        block_ids=BlockIdsField(field="hash_ids", block_tokens=512),
        input_includes_history=True,
        strict=True,
    ),
}
"""The recordings the project has dedicated readers for, as mappings (same requests)."""
