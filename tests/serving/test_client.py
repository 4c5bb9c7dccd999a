"""DecisionClient: the service's answer when it has one, the local heuristic's otherwise."""

from __future__ import annotations

import http.server
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from offload_rl.features import action_mask
from serving.app import EXAMPLE_STATE, DecisionRequest, create_app
from serving.client import DecisionClient
from tests.serving.helpers import TOKEN, free_port, policy_file

STATE = DecisionRequest.model_validate(EXAMPLE_STATE).to_state()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with TestClient(create_app(str(policy_file(tmp_path_factory)), TOKEN)) as c:
        yield c


def forwarding(test_client: TestClient, calls: list[httpx.Request]) -> httpx.MockTransport:
    """An httpx transport that hands requests to the in-process app."""

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        r = test_client.request(
            request.method, request.url.path, content=request.content, headers=request.headers
        )
        return httpx.Response(r.status_code, content=r.content, headers=r.headers)

    return httpx.MockTransport(handler)


def test_service_answers(service):
    calls: list[httpx.Request] = []
    with DecisionClient("http://svc", token=TOKEN, transport=forwarding(service, calls)) as c:
        d = c.decide(STATE)
    assert d.source == "service" and not d.reason and not d.service_fallback
    direct = service.post(
        "/v1/decide", json=EXAMPLE_STATE, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert d.action == direct.json()["action"]
    assert d.policy_version == direct.json()["policy_version"]
    assert calls[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_wrong_token_falls_back(service):
    with DecisionClient("http://svc", token="nope", transport=forwarding(service, [])) as c:
        d = c.decide(STATE)
    assert d.source == "fallback" and "401" in d.reason


def test_service_down_falls_back_and_skips_for_a_while():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with DecisionClient(url, timeout=0.5, retry_after_s=60.0) as c:
        first = c.decide(STATE)
        second = c.decide(STATE)
    assert first.source == "fallback" and "unreachable" in first.reason
    assert second.source == "fallback" and "skipped" in second.reason
    assert action_mask(STATE, c.spec)[first.action]
    assert first.policy_version == "local:greedy"
    assert c.stats == {"service": 0, "fallback": 2}


def test_service_error_falls_back_and_recovers():
    answers = [httpx.Response(500, json={"message": "boom"}), None]
    real = {"action": 48, "policy_version": "v", "fallback": False}

    def handler(request: httpx.Request) -> httpx.Response:
        r = answers.pop(0) if answers else None
        return r if r is not None else httpx.Response(200, json=real)

    with DecisionClient(
        "http://svc", transport=httpx.MockTransport(handler), retry_after_s=0.0
    ) as c:
        a, b = c.decide(STATE), c.decide(STATE)
    assert a.source == "fallback" and "HTTP 500" in a.reason
    assert b.source == "service" and b.action == 48


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json={"no": "action"}),
        httpx.Response(200, json={"action": 51}),  # cloud + keep: never valid
        httpx.Response(200, json={"action": 10_000}),
    ],
)
def test_unusable_answers_fall_back(response):
    with DecisionClient("http://svc", transport=httpx.MockTransport(lambda r: response)) as c:
        d = c.decide(STATE)
    assert d.source == "fallback" and action_mask(STATE, c.spec)[d.action]


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        time.sleep(1.0)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_slow_service_times_out_to_fallback():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with DecisionClient(url, timeout=0.05) as c:
            d = c.decide(STATE)
        assert d.source == "fallback" and "timed out" in d.reason
    finally:
        server.shutdown()
        server.server_close()


def test_service_fallback_is_reported():
    body = {"action": 48, "policy_version": "heuristic:greedy", "fallback": True}
    with DecisionClient(
        "http://svc", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    ) as c:
        d = c.decide(STATE)
    assert d.source == "service" and d.service_fallback is True


def test_example_runtime_runs_without_a_service(capsys):
    from serving.example_runtime import main

    assert main(["--url", f"http://127.0.0.1:{free_port()}", "--requests", "5"]) == 0
    out = capsys.readouterr().out
    assert "local fallback 5" in out and "fallback local:greedy" in out


def test_non_finite_state_is_decided_locally_without_asking():
    import dataclasses

    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    bad = dataclasses.replace(STATE, rtt_ms=float("nan"))
    with DecisionClient("http://svc", transport=httpx.MockTransport(handler)) as c:
        d = c.decide(bad)
    assert d.source == "fallback" and "non-finite" in d.reason and not calls
    assert action_mask(bad, c.spec)[d.action]


def device_state(**changes):
    from serving.client import DeviceState
    from serving.schemas_v2 import EXAMPLE_DEVICE_STATE

    return DeviceState(**{**EXAMPLE_DEVICE_STATE, **changes})


def test_device_state_body_is_the_v2_request():
    """Every field of DeviceState goes over the wire under the v2 schema's name, and the v2
    schema has no field the client cannot send."""
    from serving.client import device_state_to_json
    from serving.schemas_v2 import DeviceDecisionRequest

    body = device_state_to_json(device_state(edge_load=0.2))
    assert set(body) == set(DeviceDecisionRequest.model_fields)
    assert DeviceDecisionRequest.model_validate(body).edge_load == 0.2


def test_v2_service_answers_with_its_edge_state(service):
    calls: list[httpx.Request] = []
    with DecisionClient("http://svc", token=TOKEN, transport=forwarding(service, calls)) as c:
        d = c.decide_device(device_state(edge_kv_occupancy=0.4, edge_load=0.3))
    assert calls[0].url.path == "/v2/decide"
    assert d.source == "service" and d.edge_state == "missing" and not d.service_fallback


def test_v2_falls_back_locally_with_the_edge_as_last_heard():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with DecisionClient(url, timeout=0.2) as c:
        state = device_state(edge_load=0.9)
        d = c.decide_device(state)
        expected = c.fallback.act(state.decision_state(c.prior_load), action_mask(
            state.decision_state(c.prior_load), c.spec))  # fmt: skip
    assert d.source == "fallback" and d.action == expected
    assert state.decision_state(0.5).edge_load == 0.9
    assert device_state().decision_state(0.5).edge_load == 0.5  # none heard: the prior


def test_device_state_and_decision_state_share_one_definition_of_the_request_facts():
    """``DeviceState`` (the v2 body) and ``DecisionState`` start with the same fields,
    defined once (``RequestFacts``); the v2 wire format is unchanged."""
    import dataclasses

    from offload_rl.features import DecisionState, RequestFacts
    from serving.client import DeviceState

    shared = [(f.name, f.type) for f in dataclasses.fields(RequestFacts)]
    for cls in (DeviceState, DecisionState):
        assert issubclass(cls, RequestFacts)
        assert [(f.name, f.type) for f in dataclasses.fields(cls)][: len(shared)] == shared
    assert [f.name for f in dataclasses.fields(DeviceState)] == [
        *(name for name, _ in shared), "device_memory_layers", "prev_output_tokens",
        "since_last_turn_s", "throughput_age_s", "thermal_level", "radio_state",
        "device_class", "session_id", "edge_kv_occupancy", "edge_load",
    ]  # fmt: skip
