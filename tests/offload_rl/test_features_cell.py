"""The cell's features: the same encoder, the single-device vector and metadata unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from offload_rl.features import (
    CELL_FEATURES,
    SCALAR_FEATURES,
    CellDecisionState,
    DecisionState,
    FeatureSpec,
    action_mask,
    encode_observation,
    encode_observations,
)

BASE = dict(
    throughput_mbps=[3.0, 0.5, 12.0],
    rtt_ms=20.0,
    new_tokens=300,
    context_tokens=1200,
    turn=2,
    private=False,
    slo_ttft_s=1.0,
    slo_tpot_s=0.1,
    cached_split=0,
    cached_tokens=1200,
    edge_kv_occupancy=0.4,
    edge_load=0.7,
    device_memory_layers=28,
    prev_output_tokens=180,
    since_last_turn_s=40.0,
)
CELL = dict(
    throughput_age_s=90.0,
    device_class=1,
    thermal_level=2,
    radio_state=3,
    edge_waiting=4,
    edge_waiting_tokens=9000,
    edge_running=12,
    edge_running_tokens=30000,
    entry_bytes_share=0.02,
    entry_recency_rank=3,
)


def test_single_device_vector_and_metadata_are_unchanged_by_the_cell():
    spec = FeatureSpec(n_layers=28)
    plain = DecisionState(**BASE)
    cell_state = CellDecisionState(**BASE, **CELL)
    single = encode_observation(plain, spec)
    assert spec.obs_dim == spec.history + len(SCALAR_FEATURES) == single.shape[0]
    assert encode_observation(cell_state, spec).tobytes() == single.tobytes()
    assert "cell" not in spec.to_dict()
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert [f.name for f in dataclasses.fields(DecisionState)] == list(BASE)


def test_cell_vector_is_the_single_vector_then_the_cell_features():
    spec = FeatureSpec(n_layers=28, cell=True)
    single = encode_observation(DecisionState(**BASE), FeatureSpec(n_layers=28))
    obs = encode_observation(CellDecisionState(**BASE, **CELL), spec)
    assert obs.shape == (spec.obs_dim,) == (single.shape[0] + len(CELL_FEATURES),)
    assert obs[: single.shape[0]].tobytes() == single.tobytes()
    tail = dict(zip(CELL_FEATURES, obs[single.shape[0] :].tolist(), strict=True))
    assert tail["device_class"] == 0.5 and tail["thermal_level"] == pytest.approx(2 / 3)
    assert tail["radio_state"] == 1.0 and tail["entry_recency"] == 0.25
    assert tail["entry_bytes"] == pytest.approx(0.02)
    assert 0 < tail["edge_running"] < 1 and 0 < tail["throughput_age"] < 1
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert spec.feature_names()[-len(CELL_FEATURES) :] == list(CELL_FEATURES)
    assert encode_observations([CellDecisionState(**BASE, **CELL)] * 3, spec).shape == (3, 35)


def test_no_kept_entry_and_out_of_range_values_encode_into_the_unit_box():
    spec = FeatureSpec(n_layers=28, cell=True)
    odd = {**CELL, "entry_recency_rank": -1, "thermal_level": 9, "edge_running": -4}
    obs = encode_observation(CellDecisionState(**BASE, **odd), spec)
    assert ((obs >= 0) & (obs <= 1)).all()
    tail = dict(zip(CELL_FEATURES, obs[-len(CELL_FEATURES) :].tolist(), strict=True))
    assert tail["entry_recency"] == 0.0 and tail["thermal_level"] == 1.0
    assert tail["edge_running"] == 0.0


def test_the_mask_ignores_the_cell_fields():
    spec = FeatureSpec(n_layers=28, cell=True)
    plain = action_mask(DecisionState(**BASE), FeatureSpec(n_layers=28))
    assert np.array_equal(action_mask(CellDecisionState(**BASE, **CELL), spec), plain)
