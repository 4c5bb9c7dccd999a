"""The bodies of API v2: the device says what it knows, the edge's state comes from the edge.

``/v1/decide`` keeps its body (the device also reports the edge's occupancy and load, as it
heard them); ``/v2/decide`` takes :class:`DeviceDecisionRequest`: the device's own facts
(throughput samples and their age, RTT, thermal level, radio state, device class, the request
and its session) and, optionally, the edge occupancy and load it last heard, which the service
uses only when it has no fresh edge state of its own. The edge state reaches the service from
the runtime: pulled from its metrics (:mod:`serving.edge_state.vllm_pull`) or pushed to
``POST /v1/edge/state`` (:class:`EdgeStateReport`). Strict like v1: no coercion, no extra
fields, no NaN.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from offload_rl.cell.radio import RADIO_STATES
from offload_rl.cell.thermal import DEVICE_CLASSES, OS_LEVELS
from offload_rl.features import DecisionState
from serving.schemas import EXAMPLE_STATE, MAX_BATCH, MAX_LAYERS, MAX_TOKENS, DecisionRequest

ThermalLevel = Literal["nominal", "fair", "serious", "critical"]
RadioState = Literal["idle", "promotion", "connected", "tail"]
DeviceClass = Literal["flagship", "mid-range", "budget"]
assert ThermalLevel.__args__ == OS_LEVELS and RadioState.__args__ == RADIO_STATES  # type: ignore[attr-defined]
assert DeviceClass.__args__ == tuple(DEVICE_CLASSES)  # type: ignore[attr-defined]

MAX_SESSIONS = 100_000

EXAMPLE_DEVICE_STATE: dict[str, Any] = {
    **{k: v for k, v in EXAMPLE_STATE.items() if k not in ("edge_kv_occupancy", "edge_load")},
    "throughput_age_s": 0.4,
    "thermal_level": "fair",
    "radio_state": "connected",
    "device_class": "mid-range",
    "session_id": "chat-7f3a",
}

EDGE_REPORT_EXAMPLE: dict[str, Any] = {
    "n_running": 6,
    "n_waiting": 2,
    "kv_usage": 0.55,
    "running_tokens": 61000,
    "waiting_tokens": 2300,
    "sessions": {"chat-7f3a": {"tokens": 950, "split": 6, "recency_rank": 0}},
}

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DeviceDecisionRequest(DecisionRequest):
    """What a device knows when one request must be placed (``POST /v2/decide``): v1's fields
    (:class:`~serving.schemas.DecisionRequest`), the edge's two now optional, and the device's
    own state."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [EXAMPLE_DEVICE_STATE]},
    )

    edge_kv_occupancy: float | None = Field(  # type: ignore[assignment]
        None,
        ge=0.0,
        le=1.0,
        description="the edge's KV share as the device last heard it; used only when the "
        "service has no fresh edge state",
    )
    edge_load: float | None = Field(  # type: ignore[assignment]
        None,
        ge=0.0,
        le=1.0,
        description="the edge's load as the device last heard it; used only when the service "
        "has no fresh edge state",
    )
    throughput_age_s: float = Field(
        0.0, ge=0.0, le=1e8, description="seconds since the newest sample was measured"
    )
    thermal_level: ThermalLevel = Field("nominal", description="the OS thermal level")
    radio_state: RadioState = Field("idle", description="the modem's RRC state")
    device_class: DeviceClass = Field("flagship", description="the device's class")
    session_id: str | None = Field(
        None,
        max_length=256,
        description="the session as the edge runtime names it (looks up its kept entry in "
        "pushed edge state)",
    )

    def to_state(self) -> DecisionState:
        raise TypeError("a v2 request becomes a state with the edge view (edge_state.observation)")


class DeviceDecisionBatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"states": [EXAMPLE_DEVICE_STATE] * 2}]},
    )

    states: list[DeviceDecisionRequest] = Field(min_length=1, max_length=MAX_BATCH)


class SessionEntryReport(BaseModel):
    model_config = _STRICT

    tokens: int = Field(ge=0, le=MAX_TOKENS, description="tokens of the kept KV")
    split: int = Field(ge=0, le=MAX_LAYERS, description="the kept KV holds layers split..L")
    recency_rank: int = Field(0, ge=0, description="0: the most recently used kept entry")


class EdgeStateReport(BaseModel):
    """What an edge runtime reports of itself (``POST /v1/edge/state``)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [EDGE_REPORT_EXAMPLE]},
    )

    n_running: int = Field(ge=0, le=1_000_000, description="requests in the running batch")
    n_waiting: int = Field(ge=0, le=1_000_000, description="requests in the admission queue")
    kv_usage: float = Field(ge=0.0, le=1.0, description="share of the KV pool in use")
    running_tokens: int | None = Field(None, ge=0, description="KV tokens of the running batch")
    waiting_tokens: int | None = Field(None, ge=0, description="prompt tokens waiting")
    pool_tokens: int | None = Field(None, gt=0, description="KV pool size in tokens")
    busy_share: float | None = Field(None, ge=0.0, le=1.0, description="GPU busy share")
    sessions: dict[str, SessionEntryReport] | None = Field(
        None,
        max_length=MAX_SESSIONS,
        description="kept KV by session (absent: not reported; {}: nothing kept)",
    )


class DeviceDecisionResponse(BaseModel):
    """As v1's response, plus what the service knew of the edge."""

    action: int
    meaning: str
    tier: str
    split: int
    tier_index: int
    cache: Literal["keep", "drop"]
    keep: bool
    policy_version: str
    fallback: bool = Field(description="true when the heuristic fallback answered")
    edge_state: Literal["fresh", "stale", "missing"] = Field(
        description="fresh: the runtime's state, within the staleness bound; stale or missing: "
        "none usable (the heuristic answers unless the policy reads only what the device "
        "sent; missing also when no adapter is configured)"
    )


class DeviceDecisionBatchResponse(BaseModel):
    decisions: list[DeviceDecisionResponse]
