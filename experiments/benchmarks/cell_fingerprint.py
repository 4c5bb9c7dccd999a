"""Fingerprint of EdgeCell-v0: one hash of observations, rewards and info over seeded episodes.

A change that must not alter what the cell computes (a faster edge server, a refactor) keeps
this hash: run it before and after, on the same scenario, and compare the printed lines. Actions
are uniformly random *valid* ones from a seeded generator, so the hash covers the edge's
batching, preemption and caching paths, not one policy's corner of them.

    .venv/bin/python experiments/benchmarks/cell_fingerprint.py [--sizes 8 32] [--episodes 3]
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any

import numpy as np

from envs.edge_cell import EdgeCellEnv


def _feed(h: Any, value: object) -> None:
    """Hash a value exactly: arrays by their bytes, floats by ``repr`` (every bit counts)."""
    if isinstance(value, np.ndarray):
        h.update(value.dtype.str.encode() + value.tobytes())
    elif isinstance(value, dict):
        for key in sorted(value):
            h.update(str(key).encode())
            _feed(h, value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            _feed(h, item)
    else:
        h.update(repr(value).encode())


def fingerprint(env: EdgeCellEnv, episodes: int, max_steps: int, seed: int = 0) -> str:
    """SHA-256 over ``episodes`` seeded episodes (at most ``max_steps`` decisions each)."""
    h = hashlib.sha256()
    rng = np.random.default_rng(seed)
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        _feed(h, [obs, info])
        for _ in range(max_steps):
            valid = np.flatnonzero(env.action_masks())
            obs, reward, term, trunc, info = env.step(int(valid[rng.integers(valid.size)]))
            _feed(h, [obs, float(reward), term, trunc, info])
            if term or trunc:
                break
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="cell")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=2000)
    args = parser.parse_args()
    for n in args.sizes:
        env = EdgeCellEnv(args.scenario, n_devices=n)
        print(f"N={n}: {fingerprint(env, args.episodes, args.max_steps)}")


if __name__ == "__main__":
    main()
