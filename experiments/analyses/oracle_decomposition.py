"""Where does the hindsight oracle's lead over greedy come from: placement or the KV cache?

Runs four policies on the same pinned episodes and prints their mean reward per request:

* ``greedy``                 placement and cache rule of ``greedy`` (deployable);
* ``oracle``                 hindsight placement and hindsight keep (not deployable);
* ``greedy + oracle keep``   greedy's placement, the oracle's keep (keep iff the session returns);
* ``oracle place + greedy keep``  the oracle's placement, greedy's keep rule.

The two mixed rows split the oracle's lead into what knowing the future link and queue is worth
(placement) and what knowing which sessions come back is worth (cache). A learned policy can
only recover either part from what the device observes, so this bounds where PPO can gain::

    python experiments/analyses/oracle_decomposition.py          # embedded default
    python experiments/analyses/oracle_decomposition.py \
        --traces ../shared/traces/nyc-lte --uplink-scale 0.22
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from agents.evaluate import add_scenario_arguments, build_episodes, prepare_scenario
from agents.oracle import OraclePolicy
from envs.split_cache import SplitCacheEnv
from offload_rl.errors import OffloadRLError
from offload_rl.heuristics import make_heuristic
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import resolve_scenario

MODES = ("greedy", "oracle", "greedy + oracle keep", "oracle place + greedy keep")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_scenario_arguments(p)
    p.add_argument("--episodes", type=int, default=4, help="per trace family")
    p.add_argument("--seed", type=int, default=12345)
    args = p.parse_args(argv)

    try:
        scenario = prepare_scenario(load_scenario(args.scenario), args.traces, args.uplink_scale)
        resolved = resolve_scenario(scenario)
    except OffloadRLError as err:
        print(f"oracle_decomposition: error: {err}", file=sys.stderr)
        return 2
    env = SplitCacheEnv(resolved)
    episodes = build_episodes(resolved, args.episodes, args.seed)
    greedy = make_heuristic(args.greedy, scenario)
    oracle = OraclePolicy()

    def action(mode: str) -> int:
        mask = env.action_masks()
        if mode == "greedy":
            return greedy.act(env.state, mask)
        if mode == "oracle":
            return oracle.act_env(env)
        g, o = greedy.act(env.state, mask), oracle.act_env(env)
        tier, keep = (g >> 1, o & 1) if mode == "greedy + oracle keep" else (o >> 1, g & 1)
        a = tier * 2 + keep
        return a if mask[a] else env.layout.nearest_valid(a, mask)

    results: dict[str, tuple[float, float]] = {}
    for mode in MODES:
        rewards: list[float] = []
        hits: list[bool] = []
        for ep in episodes:
            env.reset(seed=ep.workload_seed, options=ep.reset_options())
            greedy.reset()
            while True:
                _, r, _, done, info = env.step(action(mode))
                rewards.append(float(r))
                hits.append(bool(info["cache_hit"]))
                if done:
                    break
        results[mode] = (float(np.mean(rewards)), float(np.mean(hits)))
    g, o = results["greedy"][0], results["oracle"][0]
    print(f"{len(episodes)} episodes x {resolved.scenario.episode.requests} requests")
    for mode in MODES:
        reward, hit = results[mode]
        share = (reward - g) / (o - g) if o != g else float("nan")
        print(f"{mode:28s} reward {reward:+.4f}  cache hit {hit:.3f}  share of lead {share:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
