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
