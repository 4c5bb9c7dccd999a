"""The example runtime's device sees what the environment's device sees (no train/serve skew)."""

from __future__ import annotations

import dataclasses

import numpy as np

from envs.split_cache import SplitCacheEnv
from offload_rl.features import encode_observation
from offload_rl.heuristics import make_heuristic
from offload_rl.scenario import load_scenario
from serving.client import ClientDecision
from serving.example_runtime import SimulatedDevice


def test_runtime_device_and_environment_build_the_same_observation():
    """Same trace, offset, requests and decisions: the runtime's device must hand the policy
    the vector the environment trained it on. Only the edge's reports differ (the example
    runtime does not simulate the edge), so those two fields are taken from the environment.
    A kept KV of the wrong length (``ctx + new + out`` instead of ``ctx + new + out - 1``)
    or a different throughput grid turns this red."""
    base = load_scenario("default")
    scenario = base.model_copy(
        update={
            "network": base.network.model_copy(update={"throughput_noise": 0.0}),
            "device": base.device.model_copy(update={"memory_pressure_share": 0.0}),
            "edge": base.edge.model_copy(update={"kv_cache_bytes": 1e12}),  # nothing evicted
        }
    )
    env = SplitCacheEnv(scenario, episode_requests=96)
    env.reset(seed=4)
    device = SimulatedDevice(scenario, seed=0)
    device.uplink, device.offset = env._link.uplink, env._offset
    policy = make_heuristic("greedy-always", scenario)
    L = env.feature_spec.n_layers
    hits = 0
    for _ in range(96):
        req, state = env.current_request, env.state
        sid = req.session_id
        slo = env._slo[env._slo_class[sid]]
        seen = device.state(req, env._private[sid], slo)
        seen = dataclasses.replace(
            seen, edge_kv_occupancy=state.edge_kv_occupancy, edge_load=state.edge_load
        )
        np.testing.assert_array_equal(
            encode_observation(seen, env.feature_spec), env._obs, err_msg=f"request {env._i}"
        )
        hits += state.cached_tokens > 0
        action = policy.act(state, env.action_masks())
        _, _, _, _, info = env.step(action)
        split = L if info["tier"] == "device" else info["split"]
        device.remember(
            req,
            ClientDecision(action, "", info["tier"], split, info["keep"], "service", "test"),
        )
    assert hits > 5  # follow-up turns with a kept KV were compared, not just first turns


def test_runtime_asks_v2_with_its_own_facts(tmp_path):
    """``--api 2``: the device's facts go to /v2/decide; the service (pushed a busy edge)
    answers with its edge state."""
    import httpx
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.client import DecisionClient
    from serving.edge_state.settings import EdgeSettings

    app = create_app(None, None, watch_interval_s=None, edge=EdgeSettings(push=True))
    with TestClient(app) as svc:
        svc.post("/v1/edge/state", json={"n_running": 4, "n_waiting": 9, "kv_usage": 0.7})

        def handler(request: httpx.Request) -> httpx.Response:
            r = svc.post(request.url.path, content=request.content, headers=request.headers)
            return httpx.Response(r.status_code, content=r.content, headers=r.headers)

        scenario = load_scenario("default")
        device = SimulatedDevice(scenario, seed=0)
        with DecisionClient("http://svc", transport=httpx.MockTransport(handler)) as client:
            for req in device.requests(5):
                state = device.state(req, False, (1.0, 0.1))
                d = client.decide_device(device.device_state(req, state))
                assert d.source == "service" and d.edge_state == "fresh"
                device.remember(req, d)
