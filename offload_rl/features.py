"""The one observation encoder, shared by the environment, evaluation and the decision service.

Train/serve skew is the classic failure of deployed RL controllers, so the vector a policy sees
is built here and nowhere else: the environment fills a :class:`DecisionState` from its
simulation, the service fills it from a JSON request, and both call :func:`encode_observation`
and :func:`action_mask` (or their batch forms :func:`encode_observations` and
:func:`action_masks`, which give exactly the same rows).

A :class:`DecisionState` holds only what a device can know when it decides: throughput it
measured in the past, the RTT, the request it is about to send (not its output length), what
the edge last reported about its cache and load, and its own memory.

The module is a little over 600 lines on purpose: the single-device features, the cell's extra
features, their documentation table and the batch encoders stay in one file so that there is
one encoder to read and to keep in step with the service.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import chain
from operator import attrgetter
from typing import Protocol

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
    cell: bool = False  # EdgeCell-v0: CELL_FEATURES follow the scalar features
    # device-lite tier (index L + 2): 0 = none; else the device memory, in main-model layers,
    # the lite model needs (it is valid when device_memory_layers reaches this)
    lite_memory_layers: int = 0

    @property
    def lite(self) -> bool:
        """Whether the action space has the device-lite tier."""
        return self.lite_memory_layers > 0

    @property
    def layout(self) -> ActionLayout:
        return ActionLayout(self.n_layers, lite=self.lite)

    @property
    def obs_dim(self) -> int:
        return self.history + len(SCALAR_FEATURES) + (len(CELL_FEATURES) if self.cell else 0)

    def feature_names(self) -> list[str]:
        """Feature order of the observation vector."""
        names = [f"throughput_{i}" for i in range(self.history)] + list(SCALAR_FEATURES)
        return names + list(CELL_FEATURES) if self.cell else names

    def to_dict(self) -> dict[str, int | float]:
        """The settings a saved policy records (``meta.json``, ONNX metadata as strings), so
        that every writer spells them alike; :meth:`from_dict` reads them back. ``cell`` is
        written only when set, so single-device policies record exactly what they always did;
        so is ``lite_memory_layers`` (only scenarios with a device-lite model have it)."""
        out: dict[str, int | float] = {
            "n_layers": int(self.n_layers),
            "history": int(self.history),
            "k_priv": int(self.k_priv),
            "outage_mbps": float(self.outage_mbps),
        }
        if self.cell:
            out["cell"] = 1
        if self.lite:
            out["lite_memory_layers"] = int(self.lite_memory_layers)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FeatureSpec:
        """The spec :meth:`to_dict` recorded, from numbers or their strings (ONNX metadata
        holds strings); other keys are ignored. A ``ValueError`` names the missing or bad key,
        so a loader can prefix the file it read."""
        fields_: tuple[tuple[str, bool, float], ...] = (
            ("n_layers", True, 1),
            ("history", True, 1),
            ("k_priv", True, 0),
            ("outage_mbps", False, 0.0),
        )
        values: dict[str, float] = {}
        for key, integral, minimum in fields_:
            if key not in data:
                raise ValueError(f"missing {key!r}")
            raw = data[key]
            kind = "an integer" if integral else "a number"
            try:
                if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                    raise TypeError
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{key!r} is {raw!r}, not {kind}") from None
            if not math.isfinite(value) or (integral and not value.is_integer()):
                raise ValueError(f"{key!r} is {raw!r}, not {kind}")
            if value < minimum:
                raise ValueError(f"{key!r} is {raw!r}, below {minimum:g}")
            values[key] = value
        cell = str(data.get("cell", 0)).strip().lower() in ("1", "1.0", "true")
        raw_lite = data.get("lite_memory_layers", 0)
        try:
            if isinstance(raw_lite, bool) or not isinstance(raw_lite, str | int | float):
                raise TypeError
            lite = float(raw_lite)
            if not math.isfinite(lite) or not lite.is_integer() or lite < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(
                f"'lite_memory_layers' is {raw_lite!r}, not a non-negative integer"
            ) from None
        return cls(
            n_layers=int(values["n_layers"]),
            history=int(values["history"]),
            k_priv=int(values["k_priv"]),
            outage_mbps=values["outage_mbps"],
            cell=cell,
            lite_memory_layers=int(lite),
        )


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


# EdgeCell-v0 only (FeatureSpec.cell): the device's own state and the edge's exact state as its
# runtime knows it. Their length does not depend on the number of devices in the cell.
CELL_FEATURE_DOCS: dict[str, str] = {  # in observation order
    "throughput_age": "log1p(seconds since the newest sample was measured)/log1p(3600)",
    "device_class": "device class index / 2 (flagship 0, mid-range 0.5, budget 1)",
    "thermal_level": "OS thermal level / 3 (nominal, fair, serious, critical)",
    "radio_state": "RRC state / 3 (idle 0, promotion, connected, tail 1)",
    "edge_waiting": "log1p(requests in the edge's admission queue)/log1p(256)",
    "edge_waiting_tokens": "log1p(prompt tokens waiting at the edge)/log1p(2^20)",
    "edge_running": "log1p(requests in the edge's running batch)/log1p(256)",
    "edge_running_tokens": "log1p(KV tokens held by the running batch)/log1p(2^20)",
    "entry_bytes": "bytes of this session's kept edge entry / KV pool bytes",
    "entry_recency": "1 / (1 + LRU recency rank) of this session's kept entry, 0 if none",
}

CELL_FEATURES: tuple[str, ...] = tuple(CELL_FEATURE_DOCS)
_LOG_SEQS = math.log1p(256.0)
_LOG_BIG = math.log1p(float(2**20))
# the scales of the cell observation, in this order, for its compiled writer
# (offload_rl/cell/compiled_observation.py: the same rules as _observation_values and
# _cell_values, checked equal bit for bit; the constants live here only)
CELL_ENCODER_SCALES: tuple[float, ...] = (
    _LOG_MBPS, _LOG_MS, _LOG_TOKENS, _LOG_SLO, _LOG_GAP, _MAX_TURN, _LOG_SEQS, _LOG_BIG,
)  # fmt: skip


def observation_table(indent: str = "", cell: bool = False) -> str:
    """The observation as a markdown table (index, feature, meaning) rendered from
    :data:`FEATURE_DOCS`: the environment's docstring shows it, so the page a user reads cannot
    drift from the encoder's order. ``cell`` adds :data:`CELL_FEATURES`."""
    rows = [("0..H-1", "throughput_i", FEATURE_DOCS["throughput_i"])]
    rows += [(f"H+{i}", name, FEATURE_DOCS[name]) for i, name in enumerate(SCALAR_FEATURES)]
    if cell:
        n = len(SCALAR_FEATURES)
        rows += [
            (f"H+{n + i}", name, CELL_FEATURE_DOCS[name]) for i, name in enumerate(CELL_FEATURES)
        ]
    widths = [max(len(r[c]) for r in [("index", "feature", "meaning"), *rows]) for c in range(3)]

    def line(cells: tuple[str, str, str]) -> str:
        return (
            indent
            + "| "
            + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
            + " |"
        )

    rule = indent + "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(("index", "feature", "meaning")), rule, *map(line, rows)])


@dataclass(slots=True)
class RequestFacts:
    """What a device knows of its link, its request and its session: the fields that
    :class:`DecisionState` and the client's ``serving.client.DeviceState`` (the body of
    ``/v2/decide``) share, defined once (in this order: the states' fields start with them)."""

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


@dataclass(slots=True)
class DecisionState(RequestFacts):
    """The raw state a device knows when one request must be placed: :class:`RequestFacts`,
    then the edge as reported and the device's memory."""

    edge_kv_occupancy: float
    edge_load: float
    device_memory_layers: int
    prev_output_tokens: int = 0
    since_last_turn_s: float = 0.0


@dataclass(slots=True)
class CellDecisionState(DecisionState):
    """What a device in ``EdgeCell-v0`` knows: a :class:`DecisionState` plus its own state and
    the edge's exact state as the runtime beside the decision service knows it.

    A subclass rather than more fields on :class:`DecisionState`, so the single-device
    contract (the service's request body has exactly DecisionState's fields) is unchanged.
    """

    throughput_age_s: float = 0.0
    device_class: int = 0  # index into offload_rl.cell.thermal.DEVICE_CLASSES
    thermal_level: int = 0  # index into offload_rl.cell.thermal.OS_LEVELS
    radio_state: int = 0  # index into offload_rl.cell.radio.RADIO_STATES
    edge_waiting: int = 0
    edge_waiting_tokens: int = 0
    edge_running: int = 0
    edge_running_tokens: int = 0
    entry_bytes_share: float = 0.0
    entry_recency_rank: int = -1  # -1: no kept entry of this session


CELL_STATE_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(CellDecisionState)[len(fields(DecisionState)) :]
)  # the fields CellDecisionState adds, in CELL_FEATURES order


class StateLike(Protocol):
    """What the encoder and the mask read: a :class:`DecisionState`, or any object with its
    fields (the service's validated request bodies, which then need no copy)."""

    @property
    def throughput_mbps(self) -> Sequence[float]: ...
    @property
    def rtt_ms(self) -> float: ...
    @property
    def new_tokens(self) -> int: ...
    @property
    def context_tokens(self) -> int: ...
    @property
    def turn(self) -> int: ...
    @property
    def private(self) -> bool: ...
    @property
    def slo_ttft_s(self) -> float: ...
    @property
    def slo_tpot_s(self) -> float: ...
    @property
    def cached_split(self) -> int | None: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def edge_kv_occupancy(self) -> float: ...
    @property
    def edge_load(self) -> float: ...
    @property
    def device_memory_layers(self) -> int: ...
    @property
    def prev_output_tokens(self) -> int: ...
    @property
    def since_last_turn_s(self) -> float: ...


STATE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DecisionState))


def as_decision_state(state: StateLike) -> DecisionState:
    """``state`` itself if it is a :class:`DecisionState`, else a copy of its fields."""
    if isinstance(state, DecisionState):
        return state
    return DecisionState(**{name: getattr(state, name) for name in STATE_FIELDS})


def encode_observation(state: StateLike, spec: FeatureSpec) -> np.ndarray:
    """The float32 observation vector of ``state`` (order: :meth:`FeatureSpec.feature_names`).

    Every feature is clamped into ``[0, 1]``; NaN (never produced by the environment, rejected
    by the service's validation) maps to 0 rather than poisoning a policy. With ``spec.cell``
    the :data:`CELL_FEATURES` follow (read from the state's cell fields, 0 where it has none).
    """
    values = _observation_values(state, spec)
    if spec.cell:
        values += _cell_values(state)
    return np.asarray(values, dtype=np.float32)


def _cell_values(state: object) -> list[float]:
    """The :data:`CELL_FEATURES` of ``state``, each clamped into ``[0, 1]``."""
    if isinstance(state, CellDecisionState):  # every field there: read them directly
        age, cls, thermal, radio, waiting, waiting_tokens, running, running_tokens = (
            float(state.throughput_age_s), float(state.device_class),
            float(state.thermal_level), float(state.radio_state), float(state.edge_waiting),
            float(state.edge_waiting_tokens), float(state.edge_running),
            float(state.edge_running_tokens),
        )  # fmt: skip
        share, rank = float(state.entry_bytes_share), float(state.entry_recency_rank)
    else:
        age, cls, thermal, radio, waiting, waiting_tokens, running, running_tokens, share, rank = (
            float(getattr(state, n, 0.0)) for n in CELL_STATE_FIELDS
        )
    log1p = math.log1p
    raw = (
        log1p(max(age, 0.0)) / _LOG_GAP,
        cls / 2.0,
        thermal / 3.0,
        radio / 3.0,
        log1p(max(waiting, 0.0)) / _LOG_SEQS,
        log1p(max(waiting_tokens, 0.0)) / _LOG_BIG,
        log1p(max(running, 0.0)) / _LOG_SEQS,
        log1p(max(running_tokens, 0.0)) / _LOG_BIG,
        share,
        1.0 / (1.0 + rank) if rank >= 0 else 0.0,
    )
    return [0.0 if not v > 0.0 else (v if v < 1.0 else 1.0) for v in raw]


def _observation_values(state: StateLike, spec: FeatureSpec) -> list[float]:
    """The observation as Python floats (float64), before the float32 conversion.

    Written for speed (the per-request path of the service, every step of the environment):
    ``tests/offload_rl/test_features.py`` keeps the plain version it must equal bit for bit.
    """
    H = spec.history
    raw = state.throughput_mbps
    n = len(raw)
    # the last H samples, front-padded with the oldest one (zeros when there are none)
    if n >= H:
        samples = list(map(float, raw[n - H :]))
    elif n:
        samples = [float(raw[0])] * (H - n) + list(map(float, raw))
    else:
        samples = [0.0] * H
    log1p = math.log1p
    inv_sum = 0.0
    values: list[float] = []
    append = values.append
    for s in samples:
        if s > 0.0:
            inv_sum += 1.0 / (s if s > 1e-3 else 1e-3)
            v = log1p(s) / _LOG_MBPS
            append(v if v < 1.0 else 1.0)  # v >= 0 here
        else:  # zero, negative or NaN: a zero sample
            inv_sum += 1.0 / 1e-3
            append(0.0)
    L = spec.n_layers
    split = state.cached_split
    ctx = state.context_tokens
    ctok = state.cached_tokens
    cached = split is not None and ctok > 0
    # (x if x > 0 else 0) rather than max(x, 0): the same features (NaN ends as 0 either way)
    rtt, new, ttft = state.rtt_ms, state.new_tokens, state.slo_ttft_s
    prev, gap = state.prev_output_tokens, state.since_last_turn_s
    for v in (
        log1p(rtt if rtt > 0.0 else 0.0) / _LOG_MS,
        log1p(new if new > 0 else 0) / _LOG_TOKENS,
        log1p(ctx if ctx > 0 else 0) / _LOG_TOKENS,
        state.turn / _MAX_TURN,
        1.0 if state.private else 0.0,
        log1p(ttft if ttft > 0.0 else 0.0) / _LOG_SLO,
        state.slo_tpot_s,
        1.0 if cached else 0.0,
        (split or 0) / L if cached else 0.0,
        ctok / ctx if cached and ctx > 0 else 0.0,
        state.edge_kv_occupancy,
        state.edge_load,
        state.device_memory_layers / L,
        log1p(prev if prev > 0 else 0) / _LOG_TOKENS,
        log1p(gap if gap > 0.0 else 0.0) / _LOG_GAP,
        1.0 if samples[-1] < spec.outage_mbps else 0.0,
        log1p(H / inv_sum) / _LOG_MBPS,
    ):
        append(0.0 if not v > 0.0 else (v if v < 1.0 else 1.0))  # into [0, 1], NaN to 0
    return values


def shared_action_mask(state: StateLike, spec: FeatureSpec) -> np.ndarray:
    """:func:`action_mask` without the copy: a cached array that must not be modified."""
    return _shared_mask(state, spec)


_MASK_CACHE: dict[tuple[int, int, bool, int, bool, int], np.ndarray] = {}


def action_mask(state: StateLike, spec: FeatureSpec) -> np.ndarray:
    """Boolean mask over the joint actions (see :mod:`offload_rl.actions`).

    * privacy: a private request keeps at least ``k_priv`` layers on the device (no edge, no
      cloud, no split below ``k_priv``);
    * device memory: at most ``device_memory_layers`` layers on the device (fully local needs
      all ``L``);
    * link outage (newest sample below ``outage_mbps``): only fully local;
    * cloud is stateless, so "cloud + keep" is never valid;
    * device-lite tier (only when ``spec.lite``): valid whenever the device holds the small
      model (``device_memory_layers >= spec.lite_memory_layers``), private or not, link or no
      link, so an outage never leaves only the slow full-local choice; "lite + keep" is never
      valid (the lite model keeps no main-model KV).

    If these leave no placement (an outage while the device cannot hold the model, or a private
    request on a device that holds fewer than ``k_priv`` layers), one action stays valid: the
    deepest split the device holds (``device_memory_layers`` layers on the device, the rest at
    the edge; ``0``: token ids to the edge). The device runs what it can now and the upload
    waits for the link to come back (``SplitCache-v0``'s cost model and the cell's uplink both
    integrate the trace's capacity, an outage included). Fully local would be a free escape the
    phone cannot take: both simulators run the local tier at the device's full speed and
    neither models running the model from flash. It is the action that keeps the most on the
    device (the privacy rule's intent when ``k_priv`` cannot be met) and that a real phone can
    run. With a device-lite model the lite tier is valid whenever the phone holds it, so this
    fallback is only reached by a phone that holds neither. The same rule in both
    environments (``spec.cell`` does not change the mask).
    """
    return _shared_mask(state, spec).copy()


def link_is_out(state: StateLike, spec: FeatureSpec) -> bool:
    """The mask's outage rule: the newest throughput sample (none: 0) is below
    ``outage_mbps``. Heuristics that act on an outage ask here, so they see the mask's outage."""
    newest = float(state.throughput_mbps[-1]) if len(state.throughput_mbps) else 0.0
    return newest < spec.outage_mbps


def _shared_mask(state: StateLike, spec: FeatureSpec) -> np.ndarray:
    """The mask from the cache (shared: never modify it)."""
    outage = link_is_out(state, spec)
    k_mem = min(max(int(state.device_memory_layers), 0), spec.n_layers)
    lite = spec.lite_memory_layers
    key = (spec.n_layers, spec.k_priv, bool(state.private), k_mem, outage, lite)
    mask = _MASK_CACHE.get(key)
    if mask is None:
        mask = _build_mask(spec.n_layers, spec.k_priv, bool(state.private), k_mem, outage, lite)
        if len(_MASK_CACHE) < 4096:
            _MASK_CACHE[key] = mask
    return mask


def _build_mask(
    n_layers: int, k_priv: int, private: bool, k_mem: int, outage: bool, lite: int = 0
) -> np.ndarray:
    layout = ActionLayout(n_layers, lite=lite > 0)
    tiers = np.zeros(layout.n_tiers, dtype=bool)
    if lite > 0:
        tiers[n_layers + 2] = k_mem >= lite
    if outage:
        tiers[n_layers] = k_mem >= n_layers
    else:
        lo = k_priv if private else 0
        hi = min(k_mem, n_layers)
        if lo <= hi:
            tiers[lo : hi + 1] = True
        tiers[layout.cloud_index] = not private
    if not tiers.any():  # see action_mask: a phone cannot run what it cannot hold
        tiers[min(k_mem, n_layers)] = True
    mask = np.zeros(layout.n_actions, dtype=bool)
    mask[0::2] = tiers
    mask[1::2] = tiers
    mask[layout.encode(layout.cloud_index, 1)] = False
    if lite > 0:
        mask[layout.encode(n_layers + 2, 1)] = False
    return mask


# --------------------------------------------------------------------------------------------
# Batch forms: the same vectors as the functions above, row by row, bit for bit
# --------------------------------------------------------------------------------------------

# the numeric fields the batch encoder reads in one go (cached_split and private apart)
_BATCH_FIELDS = (
    "rtt_ms",
    "new_tokens",
    "context_tokens",
    "turn",
    "slo_ttft_s",
    "slo_tpot_s",
    "cached_tokens",
    "edge_kv_occupancy",
    "edge_load",
    "device_memory_layers",
    "prev_output_tokens",
    "since_last_turn_s",
)
_RTT, _NEW, _CTX, _TURN, _TTFT, _TPOT, _CTOK, _KV, _LOAD, _MEM, _PREV, _GAP = range(12)
_get_fields = attrgetter(*_BATCH_FIELDS)
_EXACT_INT = float(2**53)  # beyond this, int / int and float(int) / float(int) may differ
VECTOR_MIN_BATCH = 32  # smaller batches are encoded row by row (faster there; the same rows)


# float64 has 29 more fraction bits than float32: a float64 whose low 29 bits are 1 << 28 lies
# on a float32 rounding boundary (half-way between two float32 neighbours)
_LOW29 = (1 << 29) - 1
_HALF = 1 << 28
_MARGIN = 1 << 12  # float64 ulps: far beyond the error of any log1p implementation
_F32_NORMAL = 2.0**-125  # below this, float32 spacing is not the one the check assumes
_LOG_REST = (_LOG_TOKENS, _LOG_GAP, _LOG_MBPS)  # prev output tokens, gap, harmonic mean


def _scaled_log1p(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``math.log1p(x) / scale`` element-wise (``x >= 0`` or NaN), good for float32 output.

    numpy's SIMD ``log1p`` may differ from the C library's (:func:`math.log1p`, which the
    single encoder uses) in the last bits of the float64, and a float64 differing in the last
    bits rounds to a different float32 only when it lies next to a float32 rounding boundary:
    those elements (a few in a million) are computed again with :func:`math.log1p`.
    """
    with np.errstate(invalid="ignore"):
        v = np.log1p(x) / scale
    low = (v.view(np.uint64) & np.uint64(_LOW29)).astype(np.int64)
    doubtful = (np.abs(low - _HALF) <= _MARGIN) | ((v > 0.0) & (v < _F32_NORMAL))
    if doubtful.any():
        rows, cols = np.nonzero(doubtful)
        exact = [
            math.log1p(a) / c
            for a, c in zip(x[rows, cols].tolist(), scale[cols].tolist(), strict=True)
        ]
        v[rows, cols] = exact
    return v


def _history(states: Sequence[StateLike], H: int) -> np.ndarray:
    """``(n, H)`` float64: the last ``H`` throughput samples, front-padded with the oldest."""
    flat: list[float] = []
    extend = flat.extend
    for state in states:
        raw = state.throughput_mbps
        n = len(raw)
        if n >= H:
            extend(raw[n - H :])
        elif n:
            extend([raw[0]] * (H - n))
            extend(raw)
        else:
            extend([0.0] * H)
    return np.array(flat, dtype=np.float64).reshape(len(states), H)


def encode_observations(states: Sequence[StateLike], spec: FeatureSpec) -> np.ndarray:
    """``(len(states), obs_dim)`` float32: row ``i`` is ``encode_observation(states[i], spec)``,
    bit for bit.

    Small batches are encoded row by row. Larger ones column by column with numpy: the same
    float64 operations in the same order (see :func:`_scaled_log1p` for ``log1p``); rows whose
    integers are too large for exact float64 arithmetic, or whose throughput samples are all
    infinite, go through :func:`encode_observation` itself.
    """
    n = len(states)
    H = spec.history
    if spec.cell:  # the cell's environment encodes one state per step: no vector path
        cell_rows = [encode_observation(s, spec) for s in states]
        return np.array(cell_rows, dtype=np.float32).reshape(n, spec.obs_dim)
    if n < VECTOR_MIN_BATCH:
        rows = [_observation_values(s, spec) for s in states]
        return np.array(rows, dtype=np.float32).reshape(n, spec.obs_dim)
    out = np.empty((n, spec.obs_dim), dtype=np.float64)
    try:
        raw = _history(states, H)
        k = len(_BATCH_FIELDS)
        flat = chain.from_iterable(map(_get_fields, states))
        cols = np.fromiter(flat, dtype=np.float64, count=n * k).reshape(n, k)
    except (TypeError, ValueError, OverflowError):  # unusual types: the row-by-row path
        return np.stack([encode_observation(s, spec) for s in states])
    splits = [s.cached_split for s in states]
    private = np.array([1.0 if s.private else 0.0 for s in states], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        samples = np.where(raw > 0.0, raw, 0.0)  # also maps NaN to 0
        inv = 1.0 / np.where(samples > 1e-3, samples, 1e-3)
        inv_sum = inv[:, 0].copy()  # summed in the scalar encoder's order (not pairwise)
        for j in range(1, H):
            inv_sum += inv[:, j]
        logs = _scaled_log1p(
            np.concatenate(
                [
                    samples,
                    np.maximum(cols[:, [_RTT, _NEW, _CTX, _TTFT, _PREV, _GAP]], 0.0),
                    (H / inv_sum)[:, None],
                ],
                axis=1,
            ),
            np.array([_LOG_MBPS] * H + [_LOG_MS, _LOG_TOKENS, _LOG_TOKENS, _LOG_SLO, *_LOG_REST]),
        )
        L = spec.n_layers
        has_split = np.array([c is not None for c in splits], dtype=bool)
        split = np.array([c or 0 for c in splits], dtype=np.float64)
        ctx = cols[:, _CTX]
        cached = has_split & (cols[:, _CTOK] > 0)
        out[:, : H + 3] = logs[:, : H + 3]  # throughput, rtt, new and context tokens
        out[:, H + 3] = cols[:, _TURN] / _MAX_TURN
        out[:, H + 4] = private
        out[:, H + 5] = logs[:, H + 3]
        out[:, H + 6] = cols[:, _TPOT]
        out[:, H + 7] = cached
        out[:, H + 8] = np.where(cached, split / L, 0.0)
        out[:, H + 9] = np.where(cached & (ctx > 0), cols[:, _CTOK] / ctx, 0.0)
        out[:, H + 10] = cols[:, _KV]
        out[:, H + 11] = cols[:, _LOAD]
        out[:, H + 12] = cols[:, _MEM] / L
        out[:, H + 13] = logs[:, H + 4]
        out[:, H + 14] = logs[:, H + 5]
        out[:, H + 15] = raw[:, -1] < spec.outage_mbps
        out[:, H + 16] = logs[:, H + 6]
        obs = np.where(out > 0.0, np.where(out < 1.0, out, 1.0), 0.0).astype(np.float32)
        # rows the float64 arithmetic above might not reproduce exactly
        odd = (inv_sum == 0.0) | (np.abs(split) >= _EXACT_INT)
        odd |= (np.abs(cols[:, [_NEW, _CTX, _TURN, _CTOK, _MEM, _PREV]]) >= _EXACT_INT).any(axis=1)
    for i in np.flatnonzero(odd).tolist():
        obs[i] = encode_observation(states[i], spec)
    return obs


def action_masks(states: Sequence[StateLike], spec: FeatureSpec) -> np.ndarray:
    """``(len(states), n_actions)`` bool: row ``i`` is ``action_mask(states[i], spec)``."""
    L = spec.n_layers
    n_tiers = spec.layout.n_tiers
    if len(states) < VECTOR_MIN_BATCH:
        rows = [_shared_mask(s, spec) for s in states]  # np.array: a third cheaper than stack
        return np.array(rows) if rows else np.zeros((0, 2 * n_tiers), dtype=bool)
    newest = np.array(
        [float(s.throughput_mbps[-1]) if len(s.throughput_mbps) else 0.0 for s in states],
        dtype=np.float64,
    )
    k_mem = np.array(
        [min(max(int(s.device_memory_layers), 0), L) for s in states], dtype=np.int64
    ).reshape(-1)
    private = np.array([bool(s.private) for s in states], dtype=bool)
    outage = newest < spec.outage_mbps
    t = np.arange(n_tiers)
    lo = np.where(private, spec.k_priv, 0)
    tiers = (t >= lo[:, None]) & (t <= k_mem[:, None])
    tiers[:, L + 1] = ~private
    tiers[outage] = False
    tiers[outage, L] = k_mem[outage] >= L
    if spec.lite:
        tiers[:, L + 2] = k_mem >= spec.lite_memory_layers
    empty = ~tiers.any(axis=1)
    tiers[empty, k_mem[empty]] = True  # the fallback of action_mask
    mask = np.empty((len(states), 2 * n_tiers), dtype=bool)
    mask[:, 0::2] = tiers
    mask[:, 1::2] = tiers
    mask[:, 2 * (L + 1) + 1] = False  # cloud + keep
    if spec.lite:
        mask[:, 2 * (L + 2) + 1] = False  # lite + keep
    return mask
