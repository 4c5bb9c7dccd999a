"""The decision service's request and response bodies, with the bounds a request must respect.

Requests are strict (no coercion, no extra fields, no NaN or infinity): what a device sends is
either a state the encoder can read or a 422 that names the field. A bound here is a sanity
limit on the wire, not a model fact; the one that is (``cached_split`` at most the policy's
layers) depends on the policy served and is checked by the app (:mod:`serving.errors`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from offload_rl.features import DecisionState

MAX_BATCH = 1024
MAX_SAMPLES = 64
MAX_TOKENS = 1 << 20
MAX_LAYERS = 4096

EXAMPLE_STATE: dict[str, Any] = {
    "throughput_mbps": [4.1, 3.8, 5.0, 4.6, 2.9, 3.3, 4.0, 4.4],
    "rtt_ms": 20.0,
    "new_tokens": 180,
    "context_tokens": 950,
    "turn": 2,
    "private": False,
    "slo_ttft_s": 1.0,
    "slo_tpot_s": 0.1,
    "cached_split": 6,
    "cached_tokens": 950,
    "edge_kv_occupancy": 0.42,
    "edge_load": 0.3,
    "device_memory_layers": 24,
    "prev_output_tokens": 210,
    "since_last_turn_s": 35.0,
}

Mbps = Annotated[float, Field(ge=0.0, le=100_000.0)]


class DecisionRequest(BaseModel):
    """The raw state a device knows when one request must be placed (mirrors
    :class:`offload_rl.features.DecisionState`)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [EXAMPLE_STATE]},
    )

    throughput_mbps: list[Mbps] = Field(
        max_length=MAX_SAMPLES,
        description="recent uplink throughput samples in Mbps, oldest first (the encoder uses "
        "the newest `history`; none = link unknown, treated as an outage)",
    )
    rtt_ms: float = Field(ge=0.0, le=60_000.0, description="RTT to the edge, ms")
    new_tokens: int = Field(ge=0, le=MAX_TOKENS, description="new prompt tokens of this turn")
    context_tokens: int = Field(ge=0, le=MAX_TOKENS, description="tokens from earlier turns")
    turn: int = Field(ge=0, le=100_000, description="turn number in the session, 0 first")
    private: bool = Field(description="raw tokens must not leave the device")
    slo_ttft_s: float = Field(gt=0.0, le=3600.0, description="time-to-first-token target, s")
    slo_tpot_s: float = Field(ge=0.0, le=60.0, description="time-per-output-token target, s")
    cached_split: int | None = Field(
        ge=0,
        le=MAX_LAYERS,
        description="split k of this session's kept KV (n_layers = on the device); null if none",
    )
    cached_tokens: int = Field(ge=0, le=MAX_TOKENS, description="tokens in that kept KV")
    edge_kv_occupancy: float = Field(ge=0.0, le=1.0, description="edge KV memory in use, share")
    edge_load: float = Field(ge=0.0, le=1.0, description="edge utilisation as last reported")
    device_memory_layers: int = Field(ge=0, le=MAX_LAYERS, description="layers the device can hold")
    prev_output_tokens: int = Field(0, ge=0, le=MAX_TOKENS, description="previous turn's output")
    since_last_turn_s: float = Field(
        0.0, ge=0.0, le=1e8, description="seconds since this session's previous turn"
    )

    def to_state(self) -> DecisionState:
        # the fields are DecisionState's, name for name (a test checks)
        return DecisionState(**self.__dict__)


class DecisionBatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"states": [EXAMPLE_STATE, EXAMPLE_STATE]}]},
    )

    states: list[DecisionRequest] = Field(min_length=1, max_length=MAX_BATCH)


class DecisionResponse(BaseModel):
    action: int = Field(description="joint action index: tier_index * 2 + keep")
    meaning: str = Field(description="e.g. 'split k=6, keep'")
    tier: Literal["device", "edge", "split", "cloud", "lite"]
    split: int = Field(description="layers that run on the device (0 for edge and cloud)")
    tier_index: int = Field(
        description="0 = edge, 1..L-1 = split, L = device, L+1 = cloud, "
        "L+2 = lite (the device-lite model; only scenarios with one)"
    )
    cache: Literal["keep", "drop"] = Field(description="what the edge does with the session KV")
    keep: bool
    policy_version: str = Field(description="version hash of the ONNX policy, or heuristic:NAME")
    fallback: bool = Field(description="true when the heuristic fallback answered")


class DecisionBatchResponse(BaseModel):
    decisions: list[DecisionResponse]


class ErrorResponse(BaseModel):
    message: str
    detail: Any = None
