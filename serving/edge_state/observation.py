"""A request plus the edge view -> the state the one encoder reads, and whether the policy may
answer it.

The encoder is :mod:`offload_rl.features` (never re-implemented here); this module only fills
its :class:`~offload_rl.features.DecisionState` (single-device policies) or
:class:`~offload_rl.features.CellDecisionState` (``FeatureSpec(cell=True)``, policies trained
on EdgeCell-v0) from the device's request and the edge fields of
:mod:`serving.edge_state.mapping`.

The policy answers when every field it reads is known: a single-device policy reads the edge's
occupancy and load, a cell policy also the queue, the batch and the session's entry. With no
fresh edge view, a v1 request still carries the device's report of occupancy and load (its
body as ever), a v2 request may; a cell policy then lacks the queue and the batch, and the
heuristic fallback answers (with the device's report of the load, else the scenario's prior).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from offload_rl.cell.radio import RADIO_STATES
from offload_rl.cell.thermal import DEVICE_CLASSES, OS_LEVELS
from offload_rl.features import CellDecisionState, DecisionState, StateLike
from serving.edge_state.mapping import EdgeDefaults, EdgeView, entry_fields
from serving.edge_state.store import EdgeStatus
from serving.schemas import DecisionRequest
from serving.schemas_v2 import DeviceDecisionRequest

_CLASS_INDEX = {name: i for i, name in enumerate(DEVICE_CLASSES)}
_THERMAL_INDEX = {name: i for i, name in enumerate(OS_LEVELS)}
_RADIO_INDEX = {name: i for i, name in enumerate(RADIO_STATES)}


class Resolved(NamedTuple):
    """A request ready to decide: its state, the edge status, and whether the policy may
    answer (``False``: it reads an edge field nobody knows; the heuristic answers)."""

    state: StateLike
    edge: EdgeStatus
    policy: bool


def _edge_cell_fields(
    view: EdgeView, session_id: str | None, cached_split: int | None, cached_tokens: int, L: int
) -> dict[str, Any]:
    share, rank = entry_fields(view, session_id, cached_split, cached_tokens, L)
    return {
        "edge_waiting": view.edge_waiting,
        "edge_waiting_tokens": view.edge_waiting_tokens,
        "edge_running": view.edge_running,
        "edge_running_tokens": view.edge_running_tokens,
        "entry_bytes_share": share,
        "entry_recency_rank": rank,
    }


def resolve_v1(
    req: DecisionRequest, view: EdgeView | None, status: EdgeStatus, cell: bool, L: int
) -> Resolved:
    """A v1 body: the fresh view replaces the device's report of occupancy and load. A cell
    policy gets :class:`CellDecisionState`'s defaults for the device facts v1 does not carry
    (fresh samples, flagship, nominal heat, idle radio)."""
    fields = req.__dict__
    if view is not None:
        fields = {
            **fields,
            "edge_kv_occupancy": view.edge_kv_occupancy,
            "edge_load": view.edge_load,
        }
    if not cell:
        if view is None:
            return Resolved(req, status, True)  # the body as it is (no copy)
        return Resolved(DecisionState(**fields), status, True)
    if view is None:
        return Resolved(CellDecisionState(**fields), status, False)
    extra = _edge_cell_fields(view, None, req.cached_split, req.cached_tokens, L)
    return Resolved(CellDecisionState(**fields, **extra), status, True)


def resolve_v2(
    req: DeviceDecisionRequest,
    view: EdgeView | None,
    status: EdgeStatus,
    cell: bool,
    L: int,
    defaults: EdgeDefaults,
) -> Resolved:
    """A v2 body: the device's facts, the edge from the view (see the module docstring)."""
    d = req.__dict__
    base = {
        "throughput_mbps": d["throughput_mbps"],
        "rtt_ms": d["rtt_ms"],
        "new_tokens": d["new_tokens"],
        "context_tokens": d["context_tokens"],
        "turn": d["turn"],
        "private": d["private"],
        "slo_ttft_s": d["slo_ttft_s"],
        "slo_tpot_s": d["slo_tpot_s"],
        "cached_split": d["cached_split"],
        "cached_tokens": d["cached_tokens"],
        "device_memory_layers": d["device_memory_layers"],
        "prev_output_tokens": d["prev_output_tokens"],
        "since_last_turn_s": d["since_last_turn_s"],
    }
    if view is not None:
        kv, load, known = view.edge_kv_occupancy, view.edge_load, True
    else:
        reported = d["edge_kv_occupancy"] is not None and d["edge_load"] is not None
        kv = d["edge_kv_occupancy"] if d["edge_kv_occupancy"] is not None else 0.0
        load = d["edge_load"] if d["edge_load"] is not None else defaults.prior_load
        known = reported and not cell
    if not cell:
        return Resolved(DecisionState(**base, edge_kv_occupancy=kv, edge_load=load), status, known)
    device = {
        "throughput_age_s": d["throughput_age_s"],
        "device_class": _CLASS_INDEX[d["device_class"]],
        "thermal_level": _THERMAL_INDEX[d["thermal_level"]],
        "radio_state": _RADIO_INDEX[d["radio_state"]],
    }
    extra = (
        _edge_cell_fields(view, d["session_id"], d["cached_split"], d["cached_tokens"], L)
        if view is not None
        else {}
    )
    state = CellDecisionState(**base, edge_kv_occupancy=kv, edge_load=load, **device, **extra)
    return Resolved(state, status, known)
