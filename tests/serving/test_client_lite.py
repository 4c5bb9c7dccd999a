"""DecisionClient with a device-lite model: when the service and the link are down, the lite
model answers, and the decision says so."""

from __future__ import annotations

import httpx

from offload_rl.features import DecisionState
from serving.client import DecisionClient
from tests.decision_states import make_state


def _down(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("service down", request=request)


def state(mbps: float, k_mem: int = 28) -> DecisionState:
    return make_state(mbps, k_mem, new_tokens=150)


def test_fallback_answers_with_the_lite_model_when_service_and_link_are_down():
    with DecisionClient("http://svc", scenario="lite", transport=httpx.MockTransport(_down)) as c:
        assert c.fallback.name == "lite-on-outage"
        d = c.decide(state(0.0))
    assert d.source == "fallback" and d.lite and d.tier == "lite"
    assert d.meaning == "lite, drop" and not d.keep
    assert "device-lite model answers" in d.reason and "unreachable" in d.reason


def test_link_up_service_down_the_main_model_answers():
    with DecisionClient("http://svc", scenario="lite", transport=httpx.MockTransport(_down)) as c:
        d = c.decide(state(50.0))
    assert d.source == "fallback" and not d.lite and d.tier != "lite"
    assert "device-lite" not in d.reason


def test_without_a_lite_model_the_fallback_is_greedy_as_before():
    with DecisionClient("http://svc", transport=httpx.MockTransport(_down)) as c:
        assert c.fallback.name == "greedy"
        d = c.decide(state(0.0, k_mem=24))
    assert d.tier == "device" and not d.lite
