"""Paired per-episode differences in the cell: one policy against each of the others.

Every policy runs the same pinned episodes as ``offload-rl evaluate --scenario cell`` (same
episode set and loads), so the reward difference of two policies on one episode removes the
episode's own difficulty; its 95% CI (t over episodes) is much tighter than the two policies'
CIs side by side. Prints, per load, each policy's mean reward per decision (95% CI), p95
latency, SLO-violation rate and device energy per decision, and the first policy minus it.
The reward counts the cost of finishing each episode's requests (``finish_cost``) and the
latency and SLO figures count every decided request, those finished after the episode's end
included (see :mod:`agents.evaluation.cell_metrics`).

    .venv/bin/python experiments/analyses/cell_paired.py --episodes 8 \
        --policies sb3:runs/cell/final/model.zip,greedy,greedy-externality,thermal-mpc,lyapunov
"""

from __future__ import annotations

import argparse

import numpy as np

from agents.evaluation.cell_rollout import settled_reward
from agents.evaluation.cell_runner import evaluate_cell
from agents.evaluation.confidence import mean_ci95
from offload_rl.scenario import load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="cell")
    parser.add_argument("--policies", required=True, help="the first is compared to the rest")
    parser.add_argument("--episodes", type=int, default=2, help="per trace family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loads", default="1,2")
    args = parser.parse_args()
    specs = args.policies.split(",")
    loads = tuple(float(x) for x in args.loads.split(","))
    result = evaluate_cell(
        specs, load_scenario(args.scenario), args.episodes, seed=args.seed, loads=loads
    )
    n = len(result.episodes)
    for i, load in enumerate(result.loads):
        records = {s: result.records[s][i * n : (i + 1) * n] for s in specs}
        reward = {s: np.array([settled_reward(r) for r in records[s]]) for s in specs}
        print(f"load {load:g} ({n} episodes)")
        for s in specs:
            latency = np.concatenate([r["req_latency_s"] for r in records[s]])
            slo = np.concatenate([r["req_slo_violated"] for r in records[s]])
            energy = np.concatenate([r["energy_j"] for r in records[s]])
            mean, half = mean_ci95(reward[s])
            line = (
                f"  {s:>24}: reward {mean:.3f} +- {half:.3f}  p95 {np.percentile(latency, 95):.1f}"
                f" s  SLO {slo.mean():.3f}  {energy.mean():.1f} J/decision"
            )
            if s != specs[0]:
                diff = reward[specs[0]] - reward[s]
                d, dh = mean_ci95(diff)
                line += (
                    f"  | first - it {d:+.3f} +- {dh:.3f} ({100 * d / abs(mean):+.1f}% of |it|),"
                    f" first better in {int((diff > 0).sum())}/{n}"
                )
            print(line)


if __name__ == "__main__":
    main()
