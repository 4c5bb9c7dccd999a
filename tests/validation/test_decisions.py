"""The validation's device sees what the environment's device sees, through the same converter."""

from __future__ import annotations

import dataclasses

import numpy as np

from envs.split_cache import SplitCacheEnv
from offload_rl.device_view import SessionMemory
from offload_rl.features import encode_observation
from offload_rl.heuristics import make_heuristic
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import scenario_facts
from validation.decisions import device_state
from validation.request_stream import ReplayRequest


def test_validation_device_and_environment_build_the_same_observation():
    """The episode starts at trace time 0 so both clocks agree; private flags, SLO classes and
    the edge's reports are the environment's own (the validation's edge is unloaded and its
    sessions are public and interactive). The old copy sampled 8 periods whatever the
    scenario's history said: a history of 5 here turns such a copy red."""
    base = load_scenario("default")
    scenario = base.model_copy(
        update={
            "network": base.network.model_copy(
                update={"throughput_noise": 0.0, "throughput_history": 5}
            ),
            "device": base.device.model_copy(update={"memory_pressure_share": 0.0}),
        }
    )
    facts = scenario_facts(scenario)
    env = SplitCacheEnv(scenario, episode_requests=64)
    env.reset(seed=2, options={"offset_s": 0.0})
    uplink = env._link.uplink
    policy = make_heuristic("greedy", scenario)
    memory = SessionMemory()
    for _ in range(64):
        r, want = env.current_request, env.state
        req = ReplayRequest(env._i, r.arrival_s, r.session_id, r.turn, r.new_tokens,
                            r.context_tokens, r.output_tokens)  # fmt: skip
        cached = (want.cached_split, want.cached_tokens)
        got = device_state(req, uplink, r.arrival_s, cached, facts, memory)
        got = dataclasses.replace(
            got,
            private=want.private,
            slo_ttft_s=want.slo_ttft_s,
            slo_tpot_s=want.slo_tpot_s,
            edge_kv_occupancy=want.edge_kv_occupancy,
            edge_load=want.edge_load,
        )
        np.testing.assert_array_equal(
            encode_observation(got, facts.spec), env._obs, err_msg=f"request {env._i}"
        )
        env.step(policy.act(want, env.action_masks()))
        memory.remember(req)


def test_forced_splits_are_drawn_per_session_and_reproducible() -> None:
    from validation.decisions import forced_split

    splits = (0, 4, 8)
    draws = [forced_split(0, session, splits) for session in range(60)]
    assert set(draws) == set(splits)  # every split gets sessions
    assert draws == [forced_split(0, session, splits) for session in range(60)]
    assert draws != [forced_split(1, session, splits) for session in range(60)]
