"""Hostile bodies never produce a 5xx, and a 200 never carries a masked action."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload_rl.features import action_mask
from serving.app import EXAMPLE_STATE, DecisionRequest, create_app
from tests.serving.helpers import policy_file

FIELDS = list(EXAMPLE_STATE)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(str(policy_file(tmp_path_factory)), None, watch_interval_s=None)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def fallback_client():
    with TestClient(create_app(None, None)) as c:
        yield c


hostile_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 2**63, -(2**63), 10**400]),
    st.text(max_size=20),
)
hostile_value = st.one_of(
    hostile_scalar,
    st.lists(hostile_scalar, max_size=80),
    st.lists(st.floats(min_value=0, max_value=1e6), min_size=60, max_size=300),
    st.dictionaries(st.text(max_size=5), hostile_scalar, max_size=3),
)
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)

valid_state = st.fixed_dictionaries(
    {
        "throughput_mbps": st.lists(
            st.floats(min_value=0.0, max_value=100_000.0), min_size=0, max_size=64
        ),
        "rtt_ms": st.floats(min_value=0.0, max_value=60_000.0),
        "new_tokens": st.integers(0, 1 << 20),
        "context_tokens": st.integers(0, 1 << 20),
        "turn": st.integers(0, 100_000),
        "private": st.booleans(),
        "slo_ttft_s": st.floats(min_value=1e-6, max_value=3600.0),
        "slo_tpot_s": st.floats(min_value=0.0, max_value=60.0),
        "cached_split": st.one_of(st.none(), st.integers(0, 24)),
        "cached_tokens": st.integers(0, 1 << 20),
        "edge_kv_occupancy": st.floats(min_value=0.0, max_value=1.0),
        "edge_load": st.floats(min_value=0.0, max_value=1.0),
        "device_memory_layers": st.integers(0, 4096),
    },
    optional={
        "prev_output_tokens": st.integers(0, 1 << 20),
        "since_last_turn_s": st.floats(min_value=0.0, max_value=1e8),
    },
)


@st.composite
def mutated_state(draw):
    """A valid state with fields changed to hostile values, removed, or added."""
    body = dict(draw(valid_state))
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        action = draw(st.sampled_from(["replace", "delete"]))
        if action == "delete":
            body.pop(field, None)
        else:
            body[field] = draw(hostile_value)
    if draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=10))] = draw(hostile_scalar)
    return body


def check_response(client, path, content, content_type="application/json"):
    r = client.post(path, content=content, headers={"content-type": content_type})
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    if r.status_code != 200:
        assert body["message"]
        return r, None
    return r, body


def assert_valid_decision(client, state_body, decision):
    spec = client.app.state.runtime.spec
    state = DecisionRequest.model_validate(state_body).to_state()
    assert action_mask(state, spec)[decision["action"]], (state_body, decision)


@SETTINGS
@given(body=mutated_state())
def test_mutated_states_never_5xx_nor_masked(client, body):
    _, decision = check_response(client, "/v1/decide", json.dumps(body))
    if decision is not None:
        assert_valid_decision(client, body, decision)


@SETTINGS
@given(body=valid_state)
def test_valid_states_always_answered_with_valid_actions(client, fallback_client, body):
    for c in (client, fallback_client):
        r, decision = check_response(c, "/v1/decide", json.dumps(body))
        assert r.status_code == 200, r.text
        assert decision is not None
        assert decision["fallback"] is (c is fallback_client)
        assert_valid_decision(c, body, decision)


@SETTINGS
@given(states=st.lists(st.one_of(valid_state, mutated_state()), min_size=0, max_size=6))
def test_batches_never_5xx_nor_masked(client, states):
    _, body = check_response(client, "/v1/decide/batch", json.dumps({"states": states}))
    if body is not None:
        assert len(body["decisions"]) == len(states)
        for s, d in zip(states, body["decisions"], strict=True):
            assert_valid_decision(client, s, d)


@SETTINGS
@given(
    data=st.one_of(
        st.binary(max_size=300),
        json_like.map(lambda v: json.dumps(v).encode()),
        st.text(max_size=200).map(str.encode),
    ),
    path=st.sampled_from(["/v1/decide", "/v1/decide/batch", "/v1/policy/reload", "/nowhere"]),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "",
        ]
    ).map(str.encode)
    # non-ASCII bytes (httpx refuses non-ASCII str header values, so send bytes)
    | st.sampled_from(["\u00e9/\u00e9".encode(), b"\xff\xfe", "application/json\u00e9".encode()]),
)
def test_garbage_never_5xx(client, data, path, content_type):
    r = client.post(path, content=data, headers={"content-type": content_type})
    assert r.status_code < 500, (r.status_code, r.text[:300])


def test_deeply_nested_json_is_a_4xx(client):
    deep = b"[" * 100_000 + b"]" * 100_000
    r = client.post("/v1/decide", content=deep, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    r = client.post(
        "/v1/decide",
        content=b'{"rtt_ms": ' + b"9" * 5000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert 400 <= r.status_code < 500


def test_a_non_ascii_content_type_reaches_the_server_and_is_a_415(client):
    headers = {"content-type": "\u00e9/\u00e9".encode()}
    r = client.post("/v1/decide", content=b"{}", headers=headers)
    assert r.status_code == 415 and "Content-Type must be application/json" in r.text
