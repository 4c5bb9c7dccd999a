from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from agents.oracle import OraclePolicy, hindsight_tier_rewards
from envs.split_cache import SplitCacheEnv
from offload_rl.actions import DROP, KEEP

REPO = Path(__file__).resolve().parents[2]


def _realised_reward(twin: SplitCacheEnv, seed: int, history: list[int], action: int) -> float:
    """The reward ``twin`` gives ``action`` after a reset and a replay of ``history``."""
    twin.reset(seed=seed)
    for a in history:
        twin.step(a)
    return float(twin.step(action)[1])


def test_hindsight_tier_rewards_are_what_a_step_with_that_placement_gets():
    env = SplitCacheEnv("default", episode_requests=24)
    env.reset(seed=3)
    twin = SplitCacheEnv("default", episode_requests=24)
    layout = env.layout
    oracle = OraclePolicy()
    rng = np.random.default_rng(0)
    history: list[int] = []
    keeps = {KEEP: 0, DROP: 0}
    for _ in range(24):
        mask = env.action_masks()
        rewards = hindsight_tier_rewards(env)
        valid = mask[0::2] | mask[1::2]
        assert np.all(rewards[~valid] == -np.inf) and np.all(np.isfinite(rewards[valid]))
        # each priced placement against a real step with it (keep where keeping is valid)
        for tier in np.flatnonzero(valid).tolist():
            keep = KEEP if mask[layout.encode(tier, KEEP)] else DROP
            realised = _realised_reward(twin, 3, history, layout.encode(tier, keep))
            assert rewards[tier] == realised, (len(history), tier)
        # the oracle: the best placement, keep iff the session comes back (and keep is valid)
        tier, keep = layout.decode(oracle.act_env(env))
        assert rewards[tier] == rewards.max()
        comes_back = env.current_request.gap_to_next_turn_s is not None
        expected_keep = KEEP if comes_back and mask[layout.encode(tier, KEEP)] else DROP
        assert keep == expected_keep
        keeps[keep] += 1
        action = int(rng.choice(np.flatnonzero(mask)))  # random steps: cache hits and misses
        history.append(action)
        if env.step(action)[2]:
            break
    assert min(keeps.values()) > 0  # both branches of the keep rule were checked


def test_information_bound_script_runs_end_to_end(capsys):
    spec = importlib.util.spec_from_file_location(
        "information_bound", REPO / "experiments" / "analyses" / "information_bound.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["information_bound"] = module
    spec.loader.exec_module(module)
    argv = ["--rows", "400", "--epochs", "1", "--hidden", "16", "--episodes", "1"]
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    assert "hindsight best placement" in out and "fitted keep p>0.5" in out
    assert module.main(["--greedy", "local"]) == 2  # not a greedy variant: one line, exit 2
