"""The SplitCache environment: API contracts, determinism, masks and the cost model in situ."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.split_cache import SplitCacheEnv
from offload_rl.features import encode_observation
from offload_rl.scenario import load_scenario
from offload_rl.workloads import Request
from tests.envs import env_contracts as contracts
from tests.envs.env_contracts import random_valid


@pytest.fixture(scope="module")
def env() -> SplitCacheEnv:
    return SplitCacheEnv("default", episode_requests=32)


def rollout(env: SplitCacheEnv, seed: int, n: int = 40, action_seed: int = 0) -> list:
    return contracts.rollout(env, seed, n, action_seed)


def test_gymnasium_env_checker_passes_without_warnings():
    contracts.check_with_gymnasium(SplitCacheEnv("default", episode_requests=16))


def test_sb3_env_checker_passes_without_warnings():
    contracts.check_with_sb3(SplitCacheEnv("default", episode_requests=16))


def test_registered_on_import():
    e = gym.make("envs:offload_rl/SplitCache-v0", episode_requests=8)
    obs, _ = e.reset(seed=1)
    assert obs.shape == e.observation_space.shape
    assert e.get_wrapper_attr("action_masks")().dtype == bool
    assert envs.ENV_ID == "offload_rl/SplitCache-v0"
    e.close()


def test_same_seed_same_actions_same_trajectory(env):
    a, b = rollout(env, seed=3), rollout(env, seed=3)
    for x, y in zip(a[1:], b[1:], strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:4] == y[1:4] and x[4] == y[4]
    c = rollout(env, seed=4)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a[1:], c[1:], strict=True))


def test_reset_options_pin_the_episode():
    e1, e2 = (
        SplitCacheEnv("default", episode_requests=16),
        SplitCacheEnv("default", episode_requests=16),
    )
    opts = {"trace": 2, "offset_s": 123.0, "workload_seed": 7}
    o1, i1 = e1.reset(seed=1, options=opts)
    o2, i2 = e2.reset(seed=99, options=opts)
    np.testing.assert_array_equal(o1, o2)
    assert i1 == i2 and i1["offset_s"] == 123.0
    for _ in range(16):
        a = int(np.flatnonzero(e1.action_masks())[0])
        s1, s2 = e1.step(a), e2.step(a)
        np.testing.assert_array_equal(s1[0], s2[0])
        assert s1[1:] == s2[1:]


def _tier_name(tier_index: int, n_layers: int) -> str:
    """The documented tier of a placement, written out here rather than imported."""
    if tier_index == n_layers + 1:
        return "cloud"
    return {0: "edge", n_layers: "device"}.get(tier_index, "split")


def test_info_describes_the_step_it_follows(env):
    env.reset(seed=0)
    rng = np.random.default_rng(0)  # once: a different action at every step
    L = env.feature_spec.n_layers
    tiers, kept_at = set(), {}
    for _ in range(32):
        a = random_valid(env, rng)
        tier_index, keep = a >> 1, a & 1
        req, state, outcome = env.current_request, env.state, env.what_if(a)
        _, reward, _, trunc, info = env.step(a)
        assert info["action"] == a and not info["invalid_action"]
        assert info["tier"] == _tier_name(tier_index, L) and info["keep"] == bool(keep)
        assert info["split"] == (tier_index if tier_index <= L else 0)
        assert info["private"] == state.private
        assert (info["latency_s"], info["ttft_s"]) == (outcome.cost.latency_s, outcome.cost.ttft_s)
        assert info["energy_j"] == outcome.cost.energy_j and reward == outcome.reward
        assert 0 < info["ttft_s"] <= info["latency_s"] and info["energy_j"] >= 0
        # the SLO as documented: TTFT, or the mean time per output token after the first
        n_dec = req.output_tokens - 1
        tpot = (info["latency_s"] - info["ttft_s"]) / n_dec if n_dec > 0 else 0.0
        violated = info["ttft_s"] > state.slo_ttft_s or tpot > state.slo_tpot_s
        assert info["slo_violated"] == violated
        # a hit needs the session's KV kept at this very placement by its last turn
        if info["cache_hit"]:
            assert kept_at.get(req.session_id) == tier_index and req.context_tokens > 0
        kept_at[req.session_id] = tier_index if keep and tier_index <= L else None
        tiers.add(info["tier"])
        if trunc:
            break
    assert {"device", "split", "edge"} <= tiers


def test_observation_encodes_what_the_device_saw(env):
    """The request and session features of the observation, from an independent record of
    the requests and of the actions taken (not from the environment's own state)."""
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(1)  # once: a different action at every step
    L = env.feature_spec.n_layers
    last: dict[int, tuple[float, int, int | None, int]] = {}  # arrival, output, split, tokens
    cached_steps = 0
    for _ in range(31):
        req = env.current_request
        arrival, prev_out, split, tokens = last.get(req.session_id, (None, 0, None, 0))
        usable = min(tokens, req.context_tokens) if split is not None else 0
        expected = dataclasses.replace(
            env.state,
            new_tokens=req.new_tokens,
            context_tokens=req.context_tokens,
            turn=req.turn,
            cached_split=split,
            cached_tokens=usable,
            prev_output_tokens=prev_out,
            since_last_turn_s=0.0 if arrival is None else req.arrival_s - arrival,
        )
        np.testing.assert_array_equal(obs, encode_observation(expected, env.feature_spec))
        cached_steps += split is not None and usable > 0
        a = random_valid(env, rng)
        tier_index, keep = a >> 1, a & 1
        # the session keeps its whole history but the last output token
        kept = req.context_tokens + req.new_tokens + req.output_tokens - 1
        split = tier_index if keep and tier_index <= L else None
        last[req.session_id] = (req.arrival_s, req.output_tokens, split, kept)
        obs, *_ = env.step(a)
    assert cached_steps >= 3
    assert env._kv_cache.evictions == 0  # nothing evicted: the record above is exact


def test_invalid_action_is_clamped_with_a_penalty_and_never_raises(env):
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen_invalid = False
    for _ in range(200):
        mask = env.action_masks()
        invalid = np.flatnonzero(~mask)
        if invalid.size == 0:
            env.step(random_valid(env, rng))
            continue
        a = int(invalid[0])
        executed = env.layout.nearest_valid(a, mask)
        expected = env.what_if(executed).reward - env.scenario.reward.invalid_action_penalty
        _, r, _, trunc, info = env.step(a)
        assert info["invalid_action"] and info["action"] == executed and mask[executed]
        assert r == pytest.approx(expected)
        seen_invalid = True
        if trunc:
            env.reset()
    assert seen_invalid


def test_episode_truncates_after_the_configured_requests():
    e = SplitCacheEnv("default", episode_requests=5)
    e.reset(seed=0)
    flags = [e.step(int(np.flatnonzero(e.action_masks())[0]))[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


class FixedWorkload:
    """A workload that always returns the same requests."""

    name = "fixed"

    def __init__(self, requests: list[Request]) -> None:
        self.requests = requests

    def sample(self, rng: np.random.Generator, n_requests: int) -> list[Request]:
        reqs = list(self.requests)
        while len(reqs) < n_requests:
            last = reqs[-1]
            reqs.append(Request(last.arrival_s + 1000.0, last.session_id + 1, 0, 10, 0, 5, None))
        return reqs[:n_requests]


def constant_scenario(tmp_path: Path, mbps: float) -> Path:
    trace = tmp_path / f"const-{mbps:g}"
    trace.write_text(f"0 {mbps}\n600 {mbps}\n")
    yaml_text = f"""
name: constant-{mbps:g}
profiles: {{device: qwen2.5-0.5b@sd8gen3-phone, edge: qwen2.5-0.5b@l4, cloud: qwen2.5-0.5b@h100}}
network:
  traces: [{trace.name}]
  rtt_edge_ms: 20
  throughput_noise: 0.0
workload: {{private_share: 0.0}}
device: {{memory_pressure_share: 0.0}}
edge:
  load: {{kind: constant, calm_util: 0.0}}
episode: {{requests: 4}}
"""
    path = tmp_path / f"const-{mbps:g}.yaml"
    path.write_text(yaml_text)
    return path


def test_constant_links_local_flat_offload_faster_split_pays_rtt_per_token(tmp_path):
    requests = [
        Request(10.0, 0, 0, 200, 0, 50, 30.0),
        Request(40.0, 0, 1, 50, 250, 40, None),
    ]
    outcomes = {}
    for mbps in (1.0, 100.0):
        e = SplitCacheEnv(str(constant_scenario(tmp_path, mbps)))
        e.workload = FixedWorkload(requests)
        e.reset(seed=0, options={"trace": 0, "offset_s": 0.0, "workload_seed": 0})
        L = e.feature_spec.n_layers
        outcomes[mbps] = {
            "local": e.what_if(e.layout.encode(L, 0)).cost,
            "edge": e.what_if(e.layout.encode(0, 0)).cost,
            "mid": e.what_if(e.layout.encode(L // 2, 0)).cost,
        }
    assert outcomes[1.0]["local"].latency_s == pytest.approx(outcomes[100.0]["local"].latency_s)
    assert outcomes[100.0]["edge"].latency_s < outcomes[1.0]["edge"].latency_s
    for mbps in (1.0, 100.0):
        assert outcomes[mbps]["mid"].latency_s >= 50 * 0.020


def test_kept_kv_hits_next_turn_only_at_the_same_split(tmp_path):
    requests = [
        Request(1.0, 0, 0, 300, 0, 20, 5.0),
        Request(6.0, 0, 1, 30, 320, 20, None),
    ]
    e = SplitCacheEnv(str(constant_scenario(tmp_path, 10.0)))
    e.workload = FixedWorkload(requests)
    opts = {"trace": 0, "offset_s": 0.0, "workload_seed": 0}
    for split, expect_hit in ((4, True), (0, False)):
        e.reset(seed=0, options=opts)
        _, _, _, _, first = e.step(e.layout.encode(4, 1))  # keep at split 4
        assert not first["cache_hit"]
        # 300 prompt + 20 output - 1: the last output token never went through the model
        assert e.state.cached_split == 4 and e.state.cached_tokens == 319
        _, _, _, _, second = e.step(e.layout.encode(split, 0))
        assert second["cache_hit"] is expect_hit
        assert second["prefill_tokens"] == (31 if expect_hit else 350)


def test_dropped_kv_never_hits(tmp_path):
    requests = [Request(1.0, 0, 0, 300, 0, 20, 5.0), Request(6.0, 0, 1, 30, 320, 20, None)]
    e = SplitCacheEnv(str(constant_scenario(tmp_path, 10.0)))
    e.workload = FixedWorkload(requests)
    e.reset(seed=0, options={"trace": 0, "offset_s": 0.0, "workload_seed": 0})
    e.step(e.layout.encode(4, 0))
    assert e.state.cached_split is None
    assert not e.step(e.layout.encode(4, 0))[4]["cache_hit"]


def test_scenario_errors_name_the_key(tmp_path):
    from offload_rl.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    head = "name: x\nprofiles: {device: a, edge: b, cloud: c}\n"
    bad.write_text(head + "network: {traces: [t], rtt_edge_ms: -1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: network.rtt_edge_ms"):
        load_scenario(bad)
    bad.write_text(
        "name: x\nprofiles: {device: a, edge: b, cloud: c}\nnetwork: {traces: [t]}\nrewrd: {}\n"
    )
    with pytest.raises(ConfigError, match=r"rewrd: unknown key"):
        load_scenario(bad)


def _with_keep_credit(path: Path) -> Path:
    shaped = path.with_name("shaped-" + path.name)
    shaped.write_text(path.read_text() + "reward: {keep_credit: true}\n")
    return shaped


def test_keep_credit_moves_the_hit_to_the_keep_that_made_it(tmp_path):
    requests = [
        Request(1.0, 0, 0, 300, 0, 20, 5.0),
        Request(6.0, 0, 1, 30, 320, 20, None),
    ]
    plain_path = constant_scenario(tmp_path, 10.0)
    opts = {"trace": 0, "offset_s": 0.0, "workload_seed": 0}

    def rewards(path: Path, first_keep: int) -> list[float]:
        e = SplitCacheEnv(str(path))
        e.workload = FixedWorkload(requests)
        e.reset(seed=0, options=opts)
        out = [float(e.step(e.layout.encode(4, first_keep))[1])]
        out.append(float(e.step(e.layout.encode(4, 1))[1]))  # second turn, no next turn
        out += [float(e.step(e.layout.encode(0, 0))[1]) for _ in range(2)]
        return out

    plain_hit, plain_miss = rewards(plain_path, 1), rewards(plain_path, 0)
    gain = plain_hit[1] - plain_miss[1]
    assert gain > 0.0  # 319 cached positions at split 4 save prefill time
    shaped = rewards(_with_keep_credit(plain_path), 1)
    assert shaped[0] == pytest.approx(plain_hit[0] + gain)  # credited when kept
    assert shaped[1] == pytest.approx(plain_hit[1] - gain)  # taken back at the hit
    assert shaped[2:] == pytest.approx(plain_hit[2:])  # keep was not credited: no next turn
    assert sum(shaped) == pytest.approx(sum(plain_hit))
    # the next turn still sees what the hit is worth: dropping the cache there costs the same
    assert rewards(_with_keep_credit(plain_path), 0)[0] == pytest.approx(plain_miss[0])


def test_keep_credit_leaves_episode_returns_unchanged_under_evictions():
    base = load_scenario("default")
    small = base.model_copy(
        update={
            "edge": base.edge.model_copy(update={"kv_cache_bytes": 30e6}),
            "episode": base.episode.model_copy(update={"requests": 256}),
        }
    )
    shaped_sc = small.model_copy(
        update={"reward": small.reward.model_copy(update={"keep_credit": True})}
    )
    plain, shaped = SplitCacheEnv(small), SplitCacheEnv(shaped_sc)
    rng = np.random.default_rng(0)
    plain.reset(seed=5)
    shaped.reset(seed=5)
    r_plain, r_shaped, evictions = [], [], 0
    while True:
        a = random_valid(plain, rng)
        _, rp, _, done, _ = plain.step(a)
        _, rs, _, _, _ = shaped.step(a)
        r_plain.append(rp)
        r_shaped.append(rs)
        evictions = plain._kv_cache.evictions
        if done:
            break
    assert evictions > 0
    assert not np.allclose(r_plain, r_shaped)
    assert sum(r_shaped) == pytest.approx(sum(r_plain), rel=1e-9, abs=1e-9)
    assert not shaped._credit  # every credit was taken back within the episode
