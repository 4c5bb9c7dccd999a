"""Tune ``lite-on-outage``'s SLO factor on training traces only, and print the chosen value.

``lite-on-outage`` answers with the device-lite model when the link is down or when greedy's
predicted latency exceeds ``factor`` x the request's SLO. The factor is a free parameter of a
heuristic, so it is tuned here on episodes the evaluation never runs: the scenario's synthetic
presets drawn with seeds ``TRAIN_SEED ..`` (the evaluation's traces are seeds ``0 ..``) and
episode draws from ``TRAIN_SEED``. The best mean reward wins; ties go to the larger factor
(the rule that leaves the main model in charge more often).

    python experiments/fitting/tune_lite_factor.py [--scenario lite] [--episodes 4]

The chosen value is committed as ``offload_rl.heuristics.LITE_SLO_FACTOR``.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from agents.evaluation.episodes import build_episodes
from agents.evaluation.rollout import run_episode
from envs.split_cache import SplitCacheEnv
from offload_rl.heuristics import LiteOnOutagePolicy
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import ResolvedScenario, load_scenario_traces, scenario_facts

TRAIN_SEED = 1000
FACTORS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0, math.inf)


def tune(scenario_name: str, episodes_per_family: int, requests: int) -> dict[float, float]:
    """Mean reward of ``lite-on-outage`` at every factor, on the training episodes."""
    scenario = load_scenario(scenario_name)
    facts = scenario_facts(scenario)
    if not facts.has_lite:
        raise SystemExit(f"scenario {scenario_name!r} has no device-lite model (lite:)")
    ups, downs = load_scenario_traces(scenario, first_seed=TRAIN_SEED)
    resolved = ResolvedScenario(facts=facts, uplinks=ups, downlinks=downs)
    episodes = build_episodes(resolved, episodes_per_family, TRAIN_SEED)
    env = SplitCacheEnv(resolved, episode_requests=requests)
    out: dict[float, float] = {}
    for factor in FACTORS:
        policy = LiteOnOutagePolicy("lite-on-outage", scenario, factor=factor)
        rewards = [float(run_episode(policy, env, ep)["reward"].mean()) for ep in episodes]
        out[factor] = float(np.mean(rewards))
        print(f"factor {factor:>5g}: mean reward {out[factor]:.4f} over {len(rewards)} episodes")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="lite")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per trace family")
    parser.add_argument("--requests", type=int, default=256, help="requests per episode")
    args = parser.parse_args()
    scores = tune(args.scenario, args.episodes, args.requests)
    best = max(scores, key=lambda f: (round(scores[f], 6), f))
    print(f"LITE_SLO_FACTOR = {best:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
