"""v2 and the edge push, fuzzed: never a 5xx, a 200 never carries a masked action."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.features import STATE_FIELDS, DecisionState, action_mask
from serving.app import create_app
from serving.edge_state.settings import EdgeSettings
from serving.schemas_v2 import DeviceDecisionRequest
from tests.serving.cell_policy import cell_policy
from tests.serving.test_fuzz import SETTINGS, check_response, hostile_value, valid_state

FEWER = settings(SETTINGS, max_examples=100)  # each example is two requests
valid_device_state = st.builds(
    lambda base, extra: {
        **{k: v for k, v in base.items() if k not in ("edge_kv_occupancy", "edge_load")},
        **extra,
    },
    valid_state,
    st.fixed_dictionaries(
        {},
        optional={
            "throughput_age_s": st.floats(min_value=0.0, max_value=1e8),
            "thermal_level": st.sampled_from(["nominal", "fair", "serious", "critical"]),
            "radio_state": st.sampled_from(["idle", "promotion", "connected", "tail"]),
            "device_class": st.sampled_from(["flagship", "mid-range", "budget"]),
            "session_id": st.one_of(st.none(), st.sampled_from(["a", "b"])),
            "edge_kv_occupancy": st.floats(min_value=0.0, max_value=1.0),
            "edge_load": st.floats(min_value=0.0, max_value=1.0),
        },
    ),
)
valid_report = st.fixed_dictionaries(
    {
        "n_running": st.integers(0, 1_000_000),
        "n_waiting": st.integers(0, 1_000_000),
        "kv_usage": st.floats(min_value=0.0, max_value=1.0),
    },
    optional={
        "running_tokens": st.integers(0, 1 << 40),
        "waiting_tokens": st.integers(0, 1 << 40),
        "pool_tokens": st.integers(1, 1 << 40),
        "busy_share": st.floats(min_value=0.0, max_value=1.0),
        "sessions": st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.fixed_dictionaries(
                {"tokens": st.integers(0, 1 << 20), "split": st.integers(0, 4096)},
                optional={"recency_rank": st.integers(0, 1 << 30)},
            ),
            max_size=3,
        ),
    },
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    policy, _ = cell_policy(tmp_path_factory.mktemp("cell-fuzz") / "cell.onnx")
    edge = EdgeSettings(push=True, max_age_s=3600.0)
    with TestClient(create_app(str(policy), None, watch_interval_s=None, edge=edge)) as c:
        yield c


@FEWER
@given(report=valid_report, body=valid_device_state)
def test_any_pushed_state_and_device_state_get_a_valid_action(client, report, body):
    r, _ = check_response(client, "/v1/edge/state", json.dumps(report))
    assert r.status_code == 200, r.text
    r, decision = check_response(client, "/v2/decide", json.dumps(body))
    assert r.status_code == 200, r.text
    assert decision["edge_state"] == "fresh"
    spec = client.app.state.runtime.spec
    req = DeviceDecisionRequest.model_validate(body)
    fields = {f: getattr(req, f) for f in STATE_FIELDS} | {"edge_kv_occupancy": 0, "edge_load": 0}
    assert action_mask(DecisionState(**fields), spec)[decision["action"]]


@FEWER
@given(report=valid_report, field=st.sampled_from(["n_running", "kv_usage", "sessions"]),
       value=hostile_value)  # fmt: skip
def test_hostile_pushes_never_5xx(client, report, field, value):
    check_response(client, "/v1/edge/state", json.dumps({**report, field: value}))
