"""A plain :class:`DecisionState` for tests: one request with nothing kept, fields overridable."""

from __future__ import annotations

from typing import Any

from offload_rl.features import DecisionState


def make_state(mbps: float, device_memory_layers: int, **overrides: Any) -> DecisionState:
    """A first-turn request of 120 tokens on a link whose every sample is ``mbps``."""
    values: dict[str, Any] = {
        "throughput_mbps": [mbps] * 8,
        "rtt_ms": 20.0,
        "new_tokens": 120,
        "context_tokens": 0,
        "turn": 0,
        "private": False,
        "slo_ttft_s": 1.0,
        "slo_tpot_s": 0.1,
        "cached_split": None,
        "cached_tokens": 0,
        "edge_kv_occupancy": 0.0,
        "edge_load": 0.3,
        "device_memory_layers": device_memory_layers,
    }
    values.update(overrides)
    return DecisionState(**values)
