"""DecisionClient with a device-lite model: when the service and the link are down, the lite
model answers, and the decision says so."""

from __future__ import annotations

import httpx

from offload_rl.features import DecisionState
from serving.client import DecisionClient


def _down(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("service down", request=request)


def state(mbps: float, k_mem: int = 28) -> DecisionState:
    return DecisionState(
        throughput_mbps=[mbps] * 8,
        rtt_ms=20.0,
        new_tokens=150,
        context_tokens=0,
        turn=0,
        private=False,
        slo_ttft_s=1.0,
        slo_tpot_s=0.1,
        cached_split=None,
        cached_tokens=0,
        edge_kv_occupancy=0.0,
        edge_load=0.3,
        device_memory_layers=k_mem,
    )


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
