"""The one observation encoder, shared by the environment, evaluation and the decision service.

Train/serve skew is the classic failure of deployed RL controllers, so the vector a policy sees
is built here and nowhere else: the environment fills a :class:`DecisionState` from its
simulation, the service fills it from a JSON request, and both call :func:`encode_observation`
and :func:`action_mask`.

A :class:`DecisionState` holds only what a device can know when it decides: throughput it
measured in the past, the RTT, the request it is about to send (not its output length), what
the edge last reported about its cache and load, and its own memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from offload_rl.actions import ActionLayout

FEATURE_SCHEMA_VERSION = 1

_LOG_MBPS = math.log1p(1000.0)
_LOG_MS = math.log1p(1000.0)
_LOG_TOKENS = math.log1p(32768.0)
_LOG_SLO = math.log1p(60.0)
_LOG_GAP = math.log1p(3600.0)
_MAX_TURN = 20.0


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What the encoder needs to know about the scenario (carried in the ONNX metadata)."""

    n_layers: int
    history: int = 8  # throughput samples in the observation
    k_priv: int = 2  # a private request keeps at least this many layers on the device
    outage_mbps: float = 0.1  # newest sample below this: the link is out, only local is valid

    @property
    def layout(self) -> ActionLayout:
        return ActionLayout(self.n_layers)

    @property
    def obs_dim(self) -> int:
        return self.history + len(SCALAR_FEATURES)

    def feature_names(self) -> list[str]:
        """Feature order of the observation vector."""
        return [f"throughput_{i}" for i in range(self.history)] + list(SCALAR_FEATURES)


SCALAR_FEATURES: tuple[str, ...] = (
    "rtt",
    "new_tokens",
    "context_tokens",
    "turn",
    "private",
    "slo_ttft",
    "slo_tpot",
    "session_cached",
    "cached_split",
    "cached_share",
    "edge_kv_occupancy",
    "edge_load",
    "device_memory_layers",
    "prev_output_tokens",
    "since_last_turn",
    "outage",
    "throughput_hmean",
)

FEATURE_DOCS: dict[str, str] = {
    "throughput_i": "log1p(Mbps)/log1p(1000) of the i-th most recent uplink sample, oldest first",
    "rtt": "log1p(RTT ms)/log1p(1000) to the edge",
    "new_tokens": "log1p(new prompt tokens)/log1p(32768)",
    "context_tokens": "log1p(context tokens from earlier turns)/log1p(32768)",
    "turn": "turn number / 20, capped at 1",
    "private": "1 if raw tokens must not leave the device",
    "slo_ttft": "log1p(TTFT SLO s)/log1p(60)",
    "slo_tpot": "time-per-output-token SLO in s (clipped to [0, 1])",
    "session_cached": "1 if a kept KV of this session exists (edge entry, or the device's own)",
    "cached_split": "split k of that entry / L (0 when none)",
    "cached_share": "cached tokens / context tokens",
    "edge_kv_occupancy": "share of the edge KV memory in use, as last reported",
    "edge_load": "edge utilisation in [0, 1], as last reported",
    "device_memory_layers": "layers the device can hold now / L",
    "prev_output_tokens": "log1p(output tokens of the previous turn)/log1p(32768)",
    "since_last_turn": "log1p(seconds since this session's previous turn)/log1p(3600)",
    "outage": "1 if the newest throughput sample is below the outage floor",
    "throughput_hmean": "log1p(harmonic mean of the samples)/log1p(1000)",
}


@dataclass(slots=True)
class DecisionState:
    """The raw state a device knows when one request must be placed."""

    throughput_mbps: Sequence[float]  # recent uplink samples, oldest first
    rtt_ms: float
    new_tokens: int
    context_tokens: int
    turn: int
    private: bool
    slo_ttft_s: float
    slo_tpot_s: float
    cached_split: int | None  # split of this session's kept KV, None when nothing is kept
    cached_tokens: int
    edge_kv_occupancy: float
    edge_load: float
    device_memory_layers: int
    prev_output_tokens: int = 0
    since_last_turn_s: float = 0.0


def encode_observation(state: DecisionState, spec: FeatureSpec) -> np.ndarray:
    """The float32 observation vector of ``state`` (order: :meth:`FeatureSpec.feature_names`).

    Every feature is clamped into ``[0, 1]``; NaN (never produced by the environment, rejected
    by the service's validation) maps to 0 rather than poisoning a policy.
    """
    H = spec.history
    raw = state.throughput_mbps
    n = len(raw)
    # the last H samples, front-padded with the oldest one (zeros when there are none)
    if n >= H:
        samples = [float(x) for x in raw[n - H :]]
    elif n:
        samples = [float(raw[0])] * (H - n) + [float(x) for x in raw]
    else:
        samples = [0.0] * H
    log1p = math.log1p
    inv_sum = 0.0
    values = []
    for s in samples:
        s = s if s > 0.0 else 0.0  # also maps NaN to 0
        inv_sum += 1.0 / (s if s > 1e-3 else 1e-3)
        values.append(log1p(s) / _LOG_MBPS)
    L = spec.n_layers
    cached = state.cached_split is not None and state.cached_tokens > 0
    ctx = state.context_tokens
    values += (
        log1p(max(state.rtt_ms, 0.0)) / _LOG_MS,
        log1p(max(state.new_tokens, 0)) / _LOG_TOKENS,
        log1p(max(ctx, 0)) / _LOG_TOKENS,
        state.turn / _MAX_TURN,
        1.0 if state.private else 0.0,
        log1p(max(state.slo_ttft_s, 0.0)) / _LOG_SLO,
        state.slo_tpot_s,
        1.0 if cached else 0.0,
        (state.cached_split or 0) / L if cached else 0.0,
        state.cached_tokens / ctx if cached and ctx > 0 else 0.0,
        state.edge_kv_occupancy,
        state.edge_load,
        state.device_memory_layers / L,
        log1p(max(state.prev_output_tokens, 0)) / _LOG_TOKENS,
        log1p(max(state.since_last_turn_s, 0.0)) / _LOG_GAP,
        1.0 if samples[-1] < spec.outage_mbps else 0.0,
        log1p(H / inv_sum) / _LOG_MBPS,
    )
    return np.asarray(
        [0.0 if not v > 0.0 else (v if v < 1.0 else 1.0) for v in values], dtype=np.float32
    )


_MASK_CACHE: dict[tuple[int, int, bool, int, bool], np.ndarray] = {}


def action_mask(state: DecisionState, spec: FeatureSpec) -> np.ndarray:
    """Boolean mask over the joint actions (see :mod:`offload_rl.actions`).

    * privacy: a private request keeps at least ``k_priv`` layers on the device (no edge, no
      cloud, no split below ``k_priv``);
    * device memory: at most ``device_memory_layers`` layers on the device (fully local needs
      all ``L``);
    * link outage (newest sample below ``outage_mbps``): only fully local;
    * cloud is stateless, so "cloud + keep" is never valid.

    If these leave no placement (an outage while the device cannot hold the model), fully local
    stays valid: the device then runs the model from flash, which is slow but always possible.
    """
    newest = float(state.throughput_mbps[-1]) if len(state.throughput_mbps) else 0.0
    outage = newest < spec.outage_mbps
    k_mem = min(max(int(state.device_memory_layers), 0), spec.n_layers)
    key = (spec.n_layers, spec.k_priv, bool(state.private), k_mem, outage)
    mask = _MASK_CACHE.get(key)
    if mask is None:
        mask = _build_mask(spec.n_layers, spec.k_priv, bool(state.private), k_mem, outage)
        if len(_MASK_CACHE) < 4096:
            _MASK_CACHE[key] = mask
    return mask.copy()


def _build_mask(n_layers: int, k_priv: int, private: bool, k_mem: int, outage: bool) -> np.ndarray:
    layout = ActionLayout(n_layers)
    tiers = np.zeros(layout.n_tiers, dtype=bool)
    if outage:
        tiers[n_layers] = k_mem >= n_layers
    else:
        lo = k_priv if private else 0
        hi = min(k_mem, n_layers)
        if lo <= hi:
            tiers[lo : hi + 1] = True
        tiers[layout.cloud_index] = not private
    if not tiers.any():
        tiers[n_layers] = True
    mask = np.zeros(layout.n_actions, dtype=bool)
    mask[0::2] = tiers
    mask[1::2] = tiers
    mask[layout.encode(layout.cloud_index, 1)] = False
    return mask
