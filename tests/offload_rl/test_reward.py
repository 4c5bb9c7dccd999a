"""The reward rule, by hand; the environment and greedy must score with it identically."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from envs.split_cache import SplitCacheEnv
from offload_rl.cost_model import RequestCost
from offload_rl.heuristics import GreedyPolicy
from offload_rl.reward import RewardRule, score_request, slo_violated

RULE = RewardRule(
    w_latency=1.0, w_energy=0.5, w_slo=2.0, w_cost=10.0, usd_per_edge_s=0.01, usd_per_cloud_s=0.1
)


def cost(ttft: float, latency: float, energy: float = 0.0, edge_s: float = 0.0) -> RequestCost:
    return RequestCost(ttft, latency, energy, 0.0, 0.0, 0.0, edge_s, 0.0, 100)


def test_score_by_hand():
    # 11 output tokens, SLO 1 s + 10 x 0.1 s = 2 s; latency 1.5 s, 2 J, 3 edge GPU-seconds
    score = score_request(cost(0.5, 1.5, 2.0, 3.0), 11, 1.0, 0.1, RULE)
    assert not score.slo_violated
    assert score.usd == pytest.approx(0.03)
    assert score.reward == pytest.approx(-(1.5 / 2.0 + 0.5 * 2.0 + 0.0 + 10.0 * 0.03))


def test_violations_by_hand():
    assert slo_violated(cost(1.01, 1.5), 11, 1.0, 0.1)  # late first token
    assert slo_violated(cost(0.5, 1.6), 11, 1.0, 0.1)  # 0.11 s per token after the first
    assert not slo_violated(cost(0.5, 1.5), 11, 1.0, 0.1)  # exactly 0.1 s per token
    assert not slo_violated(cost(0.5, 99.0), 1, 1.0, 0.1)  # one token: no decode target
    assert score_request(cost(2.0, 2.0), 1, 1.0, 0.1, RULE).reward == pytest.approx(-(2.0 + 2.0))


def constant_scenario(tmp_path: Path) -> Path:
    """A constant 8 Mbps link, a constant edge load of 0.4, nothing random in what greedy
    predicts from (no measurement noise, no memory pressure, no private sessions)."""
    trace = tmp_path / "const-8"
    trace.write_text("0 8\n600 8\n")
    path = tmp_path / "const.yaml"
    path.write_text(
        f"""
name: constant
profiles: {{device: qwen2.5-0.5b@sd8gen3-phone, edge: qwen2.5-0.5b@l4, cloud: qwen2.5-0.5b@h100}}
network: {{traces: [{trace.name}], throughput_noise: 0.0}}
workload: {{private_share: 0.0}}
device: {{memory_pressure_share: 0.0}}
edge: {{load: {{kind: constant, calm_util: 0.4}}}}
reward: {{w_cost: 50.0}}
episode: {{requests: 16}}
"""
    )
    return path


def test_environment_and_greedy_score_a_known_request_identically(tmp_path):
    """Where greedy's prediction has the truth (the link, the output length, the queues), its
    predicted reward of every placement equals the environment's realised one: the two read
    one reward rule and one queue formula. A second copy of either that drifts turns this red."""
    env = SplitCacheEnv(str(constant_scenario(tmp_path)))
    greedy = GreedyPolicy("greedy", env.scenario, estimator="last")
    env.reset(seed=1)
    L = env.feature_spec.n_layers
    load = env.scenario.edge.load
    compared = 0
    for _ in range(16):
        i, req = env._i, env.current_request
        # the queues greedy predicts are means; give the environment its mean draw
        env._edge_queue[i] = load.mean_queue_s(0.4)
        env._cloud_queue[i] = env.scenario.cloud.queue_s
        known = dataclasses.replace(env.state, prev_output_tokens=req.output_tokens)
        mask = env.action_masks()
        predicted = greedy.predict_rewards(known, mask)
        for tier in np.flatnonzero(mask[0::2] | mask[1::2]):
            action = env.layout.encode(int(tier), 0)
            realised = env.what_if(action).reward
            assert predicted[tier] == pytest.approx(realised, rel=1e-9), (tier, L)
            compared += 1
        env.step(greedy.act(env.state, mask))
    assert compared > 16 * 3
