from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from agents.oracle import OraclePolicy, hindsight_tier_rewards
from envs.split_cache import SplitCacheEnv

REPO = Path(__file__).resolve().parents[2]


def test_hindsight_tier_rewards_price_the_valid_placements_and_the_oracle_takes_the_best():
    env = SplitCacheEnv("default", episode_requests=24)
    env.reset(seed=3)
    oracle = OraclePolicy()
    rng = np.random.default_rng(0)
    for _ in range(24):
        mask = env.action_masks()
        rewards = hindsight_tier_rewards(env)
        valid = mask[0::2] | mask[1::2]
        assert np.all(np.isfinite(rewards[valid])) and np.all(rewards[~valid] == -np.inf)
        tier = oracle.act_env(env) >> 1
        assert rewards[tier] == rewards.max()
        # the priced reward is the one a step with that placement gets
        action = int(rng.choice(np.flatnonzero(mask)))
        expected = env.what_if(action).reward
        _, reward, _, done, _ = env.step(action)
        assert reward == expected
        if done:
            break


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
