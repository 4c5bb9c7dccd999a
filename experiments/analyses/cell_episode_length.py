"""How the cell's settled score per decision depends on the episode length.

The cell's headline score is ``(sum of rewards - finish_cost) / decisions`` (see
:func:`agents.evaluation.cell_rollout.settled_reward`). This runs one policy over the evaluation's
pinned episodes (``offload-rl evaluate``'s episode set: ``--episodes`` per family, ``--seed``) at
several episode lengths and loads, and prints per (length, load): the settled score (95% CI over
episodes), its two parts per decision (the rewards the episode accrued, and the finish cost of
the requests still in the cell at its end), the share of requests still in the cell at the end,
the mean latency of every decided request (settled), the share of first turns (requests
without context), the accrued reward per decision in the episode's first and last quarter (a
stationary cell has the same rate in both), and the busiest phone's compute backlog at the
episode's end (seconds its queue is still busy; median and max over episodes).

    .venv/bin/python experiments/analyses/cell_episode_length.py [--policy greedy]
        [--lengths 32,64,128,256,512] [--loads 1,2] [--episodes 1] [--scenario cell]
"""

from __future__ import annotations

import argparse

import numpy as np

from agents.evaluation.cell_rollout import run_cell_episode, settled_reward
from agents.evaluation.confidence import mean_ci95
from agents.evaluation.episodes import build_episodes
from agents.policies import resolve_policy
from envs.edge_cell import EdgeCellEnv
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import resolve_scenario


def _numbers(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="cell")
    parser.add_argument("--policy", default="greedy")
    parser.add_argument("--lengths", default="32,64,128,256,512", help="decisions per episode")
    parser.add_argument("--loads", default="1,2")
    parser.add_argument("--episodes", type=int, default=1, help="per trace family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = load_scenario(args.scenario)
    assert base.cell is not None, f"{args.scenario}: not a cell scenario"
    episodes = build_episodes(resolve_scenario(base), args.episodes, args.seed)
    print(
        "length load  settled (95% CI)   accrued  finish  unfinished  latency_s  first_turns"
        "  q1_rate q4_rate  backlog_med backlog_max"
        f"   ({args.policy}, {len(episodes)} episodes per row)"
    )
    for load in _numbers(args.loads, float):
        cell = base.cell.model_copy(
            update={"arrival_rate_scale": base.cell.arrival_rate_scale * load}
        )
        for length in _numbers(args.lengths, int):
            episode = base.episode.model_copy(update={"requests": length})
            sc = base.model_copy(update={"cell": cell, "episode": episode})
            env = EdgeCellEnv(resolve_scenario(sc))
            policy = resolve_policy(args.policy, sc)
            recs, backlog = [], []
            for ep in episodes:
                recs.append(run_cell_episode(policy, env, ep))
                now = env.sim.requests[env.request_index].arrival_s
                backlog.append(max(d.busy_until - now for d in env.sim.devices))
            quarter = max(length // 4, 1)
            first_q = np.mean([r["reward"][:quarter].mean() for r in recs])
            last_q = np.mean([r["reward"][-quarter:].mean() for r in recs])
            settled = np.array([settled_reward(r) for r in recs])
            mean, half = mean_ci95(settled)
            accrued = np.mean([r["reward"].sum() / r["reward"].size for r in recs])
            finish = np.mean([r["finish_cost"][0] / r["reward"].size for r in recs])
            after = np.concatenate([r["req_after_end"] for r in recs]).mean()
            latency = np.concatenate([r["req_latency_s"] for r in recs]).mean()
            first = 1.0 - np.concatenate([r["req_has_context"] for r in recs]).mean()
            print(
                f"{length:6d} {load:4g}  {mean:7.3f} +- {half:5.3f}  {accrued:7.3f} {-finish:7.3f}"
                f"  {after:10.3f}  {latency:9.2f}  {first:11.3f}  {first_q:7.2f} {last_q:7.2f}"
                f"  {np.median(backlog):8.0f} {np.max(backlog):8.0f}"
            )


if __name__ == "__main__":
    main()
