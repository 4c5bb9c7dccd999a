"""One cell heuristic with two tuned-parameter files, paired on the results table's episodes.

What a retune (``experiments/tuning/tune_cell_heuristics.py --out OTHER``) changes on the
held-out files of ``train_cell_split.yaml`` and on the left-out nyc-lte, before it replaces the
shipped file: the settled reward per episode (evaluation seed 0, as the table) under each file,
the paired difference ``after - before`` with its 95% t-interval, as a share of |before|.

Each heuristic is built on the set's own scenario (the cell's fitted load) and then run at every
load, as the results table (:func:`agents.evaluation.cell_runner.evaluate_cell`) and the tuning
build it: a heuristic is not told the load (``thermal-mpc``'s request gap would change with it),
so a score here is the table's score for the same file::

    python experiments/analyses/cell_tuned_compare.py --after runs/tuned_split.json \\
        --heuristics greedy,thermal-mpc --episodes 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from cell_results_table import CONFIG, EVAL_SEED, eval_sets

from agents.evaluation.cell_rollout import run_cell_episode, settled_reward
from agents.evaluation.cell_runner import _at_load
from agents.evaluation.confidence import mean_ci95
from agents.evaluation.episodes import Episode, build_episodes
from agents.train_config import load_train_config
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell_heuristics.names import make_cell_heuristic
from offload_rl.cell_heuristics.tuned import TunedParams, default_tuned_path, load_tuned_params
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import resolve_scenario


def heuristic_scores(
    name: str,
    params: TunedParams,
    scenario: Scenario,
    env: EdgeCellEnv,
    episodes: Sequence[Episode],
) -> np.ndarray:
    """Settled reward per episode of heuristic ``name`` with ``params``, built on ``scenario``
    (the set's, at its own load) and run in ``env`` (the set at the load being scored)."""
    policy = make_cell_heuristic(name, scenario, params)
    return np.array([settled_reward(run_cell_episode(policy, env, ep)) for ep in episodes])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, default=default_tuned_path())
    p.add_argument("--after", type=Path, required=True)
    p.add_argument("--heuristics", default="greedy")
    p.add_argument("--episodes", type=int, default=4, help="per set and load")
    p.add_argument("--loads", default="1,2")
    p.add_argument("--sets", default="", help="comma-separated set names (default: all)")
    args = p.parse_args(argv)
    files = {"before": load_tuned_params(args.before), "after": load_tuned_params(args.after)}
    wanted = set(args.sets.split(",")) if args.sets else None
    print("| set | load | heuristic | before | after | after - before (95% CI) | share |")
    print("|---|---|---|---|---|---|---|")
    for s in eval_sets(load_train_config(CONFIG)):
        if wanted is not None and s.name not in wanted:
            continue
        for load in (float(x) for x in args.loads.split(",")):
            scenario = _at_load(s.scenario, load)
            episodes = build_episodes(resolve_scenario(scenario), args.episodes, EVAL_SEED)
            env = EdgeCellEnv(scenario)
            for name in args.heuristics.split(","):
                scores = {
                    k: heuristic_scores(name, t, s.scenario, env, episodes)
                    for k, t in files.items()
                }
                d, half = mean_ci95(scores["after"] - scores["before"])
                ref = abs(float(scores["before"].mean()))
                print(
                    f"| {s.name} | {load:g} | {name} | {scores['before'].mean():.3f} | "
                    f"{scores['after'].mean():.3f} | {d:+.3f} +- {half:.3f} | {d / ref:+.1%} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
