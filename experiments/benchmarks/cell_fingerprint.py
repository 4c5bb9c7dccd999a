"""Fingerprint of EdgeCell-v0: one hash of observations, rewards and info over seeded episodes.

A change that must not alter what the cell computes (a faster edge server, a refactor) keeps
this hash: run it before and after, on the same scenario, and compare the printed lines. Actions
are uniformly random *valid* ones from a seeded generator, so the hash covers the edge's
batching, preemption and caching paths, not one policy's corner of them.

The shipped cell's seeded episodes rarely see a link outage, so ``--outage`` hashes episodes of
:func:`outage_scenario` instead (every phone a budget phone that cannot hold the model, every
link a WiFi-like trace with zero-bandwidth stretches) and counts the decisions that took the
mask's outage fallback (``tests/envs/test_edge_cell_fingerprint.py`` pins both).

    .venv/bin/python experiments/benchmarks/cell_fingerprint.py [--sizes 8 32] [--episodes 3]
    .venv/bin/python experiments/benchmarks/cell_fingerprint.py --outage --sizes 4 --max-steps 60
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any

import numpy as np

from envs.edge_cell import EdgeCellEnv
from offload_rl.scenario import Scenario, load_scenario, scenario_from_dict


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


def outage_scenario() -> Scenario:
    """The shipped ``cell`` scenario where the outage fallback is common.

    Every phone is a budget phone (it holds 26 of the 7B's 28 layers: no full-local run) and
    every link is the synthetic WiFi preset at the shipped uplink scaling, whose lowest
    quantiles are 0 Mbps (~13% of its seconds are below the 0.1 Mbps outage threshold, in runs).
    An outage decision there has no valid placement but the mask's fallback.
    """
    data = load_scenario("cell").model_dump(exclude={"base_dir"})
    data["name"] = "cell-outage"
    data["network"]["traces"] = [
        {"source": "synthetic:wifi", "direction": "downlink", "uplink_scale": 0.5}
    ]
    data["cell"]["device_mix"] = {"budget": 1.0}
    return scenario_from_dict(data, "cell_fingerprint.outage_scenario")


def is_outage_fallback(env: EdgeCellEnv) -> bool:
    """Whether the current decision is a link outage on a phone that cannot hold the model."""
    state = env.state
    spec = env.feature_spec
    newest = float(state.throughput_mbps[-1]) if len(state.throughput_mbps) else 0.0
    return newest < spec.outage_mbps and state.device_memory_layers < spec.n_layers


def fingerprint_counting_outages(
    env: EdgeCellEnv, episodes: int, max_steps: int, seed: int = 0
) -> tuple[str, int]:
    """:func:`fingerprint` and the number of decisions that took the outage fallback."""
    h = hashlib.sha256()
    rng = np.random.default_rng(seed)
    fallbacks = 0
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        _feed(h, [obs, info])
        for _ in range(max_steps):
            fallbacks += is_outage_fallback(env)
            valid = np.flatnonzero(env.action_masks())
            obs, reward, term, trunc, info = env.step(int(valid[rng.integers(valid.size)]))
            _feed(h, [obs, float(reward), term, trunc, info])
            if term or trunc:
                break
    return h.hexdigest(), fallbacks


def fingerprint(env: EdgeCellEnv, episodes: int, max_steps: int, seed: int = 0) -> str:
    """SHA-256 over ``episodes`` seeded episodes (at most ``max_steps`` decisions each)."""
    return fingerprint_counting_outages(env, episodes, max_steps, seed)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="cell")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument(
        "--outage", action="store_true", help="hash outage_scenario() (ignores --scenario)"
    )
    args = parser.parse_args()
    for n in args.sizes:
        scenario = outage_scenario() if args.outage else args.scenario
        env = EdgeCellEnv(scenario, n_devices=n)
        digest, fallbacks = fingerprint_counting_outages(env, args.episodes, args.max_steps)
        print(f"N={n}: {digest}" + (f" ({fallbacks} outage fallbacks)" if args.outage else ""))


if __name__ == "__main__":
    main()
