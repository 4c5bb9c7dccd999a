"""Benchmark: environment steps per second against Gymnasium's CartPole-v1, in the same run.

Both environments are unwrapped and driven by pre-drawn random numbers; only ``step`` and
``reset`` are timed, so the figure is the environment's own cost. Target (issue 3): at least
0.25 of CartPole's rate, so that PPO, not the environment, bounds training speed.

    .venv/bin/python experiments/benchmarks/bench_env.py [--scenario default] [--steps 50000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np

from envs.split_cache import SplitCacheEnv


def cartpole_rate(steps: int, us: list[float]) -> float:
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    elapsed = 0.0
    for i in range(steps):
        a = 1 if us[i] < 0.5 else 0
        t = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
        elapsed += time.perf_counter() - t
    return steps / elapsed


def split_cache_rate(scenario: str, steps: int, us: list[float]) -> float:
    env = SplitCacheEnv(scenario)
    env.reset(seed=0)
    elapsed = 0.0
    for i in range(steps):
        valid = np.flatnonzero(env.action_masks())  # random valid action, not timed
        a = int(valid[int(us[i] * len(valid))])
        t = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
        elapsed += time.perf_counter() - t
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternate the two N times, report the medians"
    )
    args = parser.parse_args()
    us = np.random.default_rng(0).random(args.steps).tolist()
    ours, theirs = [], []
    for _ in range(args.rounds):
        theirs.append(cartpole_rate(args.steps, us))
        ours.append(split_cache_rate(args.scenario, args.steps, us))
    # the ratio of each round (its two rates measured back to back), then the median of those:
    # best-of-N over best-of-N could pair rates from different rounds of a drifting machine
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    each = f"  (rounds: {', '.join(f'{r:.3f}' for r in ratios)})" if len(ratios) > 1 else ""
    print(f"CartPole-v1      {statistics.median(theirs):>10,.0f} steps/s  (median)")
    print(f"SplitCache-v0    {statistics.median(ours):>10,.0f} steps/s  (median, {args.scenario})")
    print(f"ratio            {statistics.median(ratios):>10.3f}  (target >= 0.25){each}")


if __name__ == "__main__":
    main()
