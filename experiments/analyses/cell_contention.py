"""How contended the cell's edge is: KV pool size, edge busy share, evictions, preemptions, p95.

Runs the same pinned episodes as ``offload-rl evaluate --scenario cell --episodes N`` (same
episode set, same load levels, same policies) and reads what the evaluation report does not
show: the edge's busy share (GPU-busy seconds / simulated seconds), kept-session evictions and
running-request preemptions per request, beside the p95 latency of finished requests.

    .venv/bin/python experiments/analyses/cell_contention.py [--scenario cell] [--episodes 2]
"""

from __future__ import annotations

import argparse

import numpy as np

from agents.evaluation.cell_rollout import run_cell_episode
from agents.evaluation.cell_runner import DEFAULT_LOADS, _at_load
from agents.evaluation.episodes import build_episodes
from agents.policies import resolve_policy
from envs.edge_cell import EdgeCellEnv
from offload_rl.profiles import load_profile
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import resolve_scenario

SESSION_TOKENS = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="cell")
    parser.add_argument("--policies", default="local,edge,cloud,greedy")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loads", type=float, nargs="+", default=list(DEFAULT_LOADS))
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    assert scenario.cell is not None, f"{args.scenario} has no cell: section"
    edge = load_profile(scenario.profiles.edge)
    pool = scenario.cell.kv_pool_bytes or scenario.edge.kv_cache_bytes
    per_token = edge.kv_bytes_per_token(0, edge.n_layers)
    tokens = pool / per_token
    print(
        f"{args.scenario}: edge {scenario.profiles.edge}, KV pool {pool / 1e9:.2f} GB = "
        f"{tokens / 1e3:.1f}k tokens at {per_token / 1024:.0f} KiB/token = "
        f"{tokens / SESSION_TOKENS:.1f} sessions of {SESSION_TOKENS}"
    )
    specs = args.policies.split(",")
    episodes = build_episodes(resolve_scenario(scenario), args.episodes, args.seed)
    print("load  policy   edge_busy  evictions/req  preemptions/req  p95_latency_s  n_finished")
    for load in args.loads:
        env = EdgeCellEnv(_at_load(scenario, load), episode_requests=scenario.episode.requests)
        for spec in specs:
            policy = resolve_policy(spec, scenario, seed=args.seed)
            busy = horizon = 0.0
            evictions = preemptions = decisions = 0
            latencies: list[np.ndarray] = []
            for ep in episodes:
                rec = run_cell_episode(policy, env, ep)
                server = env.sim.edge
                busy += server.busy_s
                horizon += max(server.clock, float(rec["time_s"][-1] + rec["dt"][-1]))
                evictions += server.pool.evictions
                preemptions += server.preemptions
                decisions += len(rec["reward"])
                latencies.append(rec["req_latency_s"])
            lat = np.concatenate(latencies)
            p95 = float(np.percentile(lat, 95)) if lat.size else float("nan")
            print(
                f"{load:<5g} {spec:<8} {busy / horizon:9.2f}  {evictions / decisions:13.3f}  "
                f"{preemptions / decisions:15.3f}  {p95:13.1f}  {lat.size:10d}"
            )


if __name__ == "__main__":
    main()
