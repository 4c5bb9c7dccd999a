"""A fingerprint of SplitCache-v0 and the heuristics: one hash per heuristic over seeded episodes.

Prints, for the default scenario with and without ``reward.keep_credit``, a SHA-256 over every
observation, mask, reward and ``info`` of 3 episodes x 64 requests per heuristic (and greedy's
predicted reward of every placement), beside the summed reward. A refactoring that must not
change behaviour prints the same lines before and after; the consolidation of issue 12 was
checked this way (identical output on 97d86ec and after it).

    python experiments/benchmarks/split_cache_fingerprint.py > after.json
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

from envs.split_cache import SplitCacheEnv
from offload_rl.heuristics import GreedyPolicy, make_heuristic
from offload_rl.scenario import Scenario, load_scenario

HEURISTICS = (
    "greedy",
    "greedy-hmean-likely",
    "local",
    "edge-never",
    "cloud",
    "random",
    "greedy-last-never",
)
EPISODES = 3
REQUESTS = 64


def fingerprint(scenario: Scenario, name: str) -> tuple[str, float]:
    """The hash of every step of ``name``'s episodes, and their summed reward."""
    env = SplitCacheEnv(scenario, episode_requests=REQUESTS)
    policy = make_heuristic(name, scenario, seed=3)
    digest = hashlib.sha256()
    total = 0.0
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=episode)
        policy.reset()
        digest.update(obs.tobytes())
        for _ in range(REQUESTS):
            mask = env.action_masks()
            action = policy.act(env.state, mask)
            if name == "greedy":  # its prediction of every placement, too
                assert isinstance(policy, GreedyPolicy)
                digest.update(np.asarray(policy.predict_rewards(env.state, mask)).tobytes())
            obs, reward, _, _, info = env.step(action)
            total += float(reward)
            digest.update(obs.tobytes() + mask.tobytes() + repr(reward).encode())
            digest.update(json.dumps(info, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16], round(total, 10)


def main() -> int:
    out = {}
    for keep_credit in (False, True):
        base = load_scenario("default")
        reward = base.reward.model_copy(update={"keep_credit": keep_credit})
        scenario = base.model_copy(update={"reward": reward})
        for name in HEURISTICS:
            out[f"default/kc={keep_credit}/{name}"] = fingerprint(scenario, name)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
