"""EdgeCell-v0: API contracts, determinism, masks, info, heuristics and the reward identity."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell.radio import RADIO_STATES
from offload_rl.heuristics import BASE_POLICIES, make_heuristic
from tests.envs import env_contracts as contracts
from tests.envs.cell_helpers import capture, cell_scenario

SPLIT_CACHE_INFO = (
    "latency_s", "ttft_s", "energy_j", "slo_violated", "cache_hit", "split", "tier", "keep",
    "action", "invalid_action", "prefill_tokens", "upload_bytes", "usd", "private", "family",
    "trace", "measured_mbps",
)  # fmt: skip
CELL_INFO = ("queue_s", "batch_at_admit", "preempted", "device_temp_c", "radio_state", "device")


@pytest.fixture(scope="module")
def env() -> EdgeCellEnv:
    return EdgeCellEnv("cell", episode_requests=48)


def rollout(env: EdgeCellEnv, seed: int, n: int = 60, action_seed: int = 0) -> list:
    return contracts.rollout(env, seed, n, action_seed)


def test_gymnasium_env_checker_passes_without_warnings():
    contracts.check_with_gymnasium(EdgeCellEnv("cell", episode_requests=16))


def test_sb3_env_checker_passes_without_warnings():
    contracts.check_with_sb3(EdgeCellEnv("cell", episode_requests=16))


def test_registered_on_import_with_an_observation_independent_of_n():
    assert envs.CELL_ENV_ID == "offload_rl/EdgeCell-v0"
    small = gym.make("envs:offload_rl/EdgeCell-v0", episode_requests=8, n_devices=1)
    large = gym.make("envs:offload_rl/EdgeCell-v0", episode_requests=8, n_devices=64)
    assert small.observation_space.shape == large.observation_space.shape
    obs, _ = large.reset(seed=1)
    assert obs.shape == large.observation_space.shape and obs.dtype == np.float32


def test_same_seed_same_episode(env):
    a, b = rollout(env, seed=5), rollout(env, seed=5)
    assert np.array_equal(a[0], b[0])
    for x, y in zip(a[1:], b[1:], strict=True):
        assert np.array_equal(x[0], y[0]) and x[1:4] == y[1:4] and x[4] == y[4]
    c = rollout(env, seed=6)
    assert any(x[1] != y[1] for x, y in zip(a[1:], c[1:], strict=True))


def test_masks_keep_an_action_and_invalid_actions_are_clamped_not_raised(env):
    env.reset(seed=3)
    L = env.layout.n_layers
    rng = np.random.default_rng(0)
    for _ in range(80):
        mask = env.action_masks()
        assert mask.any() and (mask[0::2] | mask[1::2]).any()
        assert not mask[env.layout.encode(L + 1, 1)]  # never cloud + keep
        a = int(rng.integers(-3, env.layout.n_actions + 3))
        _, _r, _, trunc, info = env.step(a)
        assert mask[info["action"]]
        assert info["invalid_action"] == (not (0 <= a < len(mask) and mask[a]))
        if trunc:
            env.reset()


def test_info_has_split_cache_keys_and_cell_keys_with_sane_values(env):
    out = rollout(env, seed=2, n=48)
    finished = 0
    for _, r, term, _trunc, info in out[1:]:
        assert set(SPLIT_CACHE_INFO) | set(CELL_INFO) | {"dt"} <= set(info)
        assert info["dt"] >= 0 and info["energy_j"] >= 0 and info["n_finished"] >= 0
        assert info["radio_state"] in RADIO_STATES
        assert 0 <= info["device"] < 8 and 20.0 <= info["device_temp_c"] < 60.0
        assert 0 <= info["edge_kv_occupancy"] <= 1
        assert info["slo_violated"] <= info["n_finished"] and r <= 0
        assert info["latency_s"] >= info["ttft_s"] >= 0
        finished += info["n_finished"]
        assert term is False
    assert 0 < finished <= 48
    last = out[-1][4]
    assert out[-1][3] is True
    assert 0 <= last["session_return_rate_in_episode"] <= last["session_return_rate_unbounded"]


def test_reward_time_integral_is_the_sum_of_latencies_over_slo():
    """Decima's identity: with only the latency weight, minus the rewards (plus what is still
    accruing at the end, drained) equals sum_i latency_i / SLO_i."""
    sc = cell_scenario(reward={"w_energy": 0.0, "w_slo": 0.0, "w_cost": 0.0})
    env = EdgeCellEnv(sc, episode_requests=40)
    seen = capture(env)
    env.reset(seed=11)
    rng = np.random.default_rng(1)
    total = 0.0
    for _ in range(40):
        _, r, _, _, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        total -= r
    env.sim.advance(1e7)
    drained, other = env.sim.ledger.collect(1e7)
    assert other == 0.0 and len(seen) == 40
    expected = sum(
        cr.latency_s / (cr.slo[0] + (cr.request.output_tokens - 1) * cr.slo[1]) for cr in seen
    )
    assert drained > 0  # some requests were still in the system at truncation
    assert total + drained == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", BASE_POLICIES)
def test_simple_heuristics_run_on_the_cell_with_valid_actions(name):
    env = EdgeCellEnv("cell", episode_requests=24)
    policy = make_heuristic(name, env.scenario, seed=0)
    env.reset(seed=4)
    policy.reset()
    for _ in range(24):
        mask = env.action_masks()
        a = policy.act(env.state, mask)
        assert mask[a]
        _, _, _, trunc, info = env.step(a)
        assert not info["invalid_action"]
    assert trunc
