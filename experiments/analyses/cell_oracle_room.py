"""Where the cell oracle's room over a heuristic is: which decisions, which requests, and whether
the heuristic's forecast of its own action is biased.

For one family's held-out cell of ``train_cell_split.yaml`` (the results table's episodes:
evaluation seed 0, the first ``--episodes`` of the family) at each load:

1. **the heuristic's forecast against what the cell then charges** (``--policy``, default
   ``greedy``). At every decision the heuristic's forecast of the placement it takes (latency,
   device+radio energy, reward) is set beside (a) the realised latency of that request in the
   episode and (b) an *isolated* outcome: a fork of the simulator (:func:`~agents.cell_oracle.
   fork_simulator`) in which only this request is dispatched and no later request arrives,
   run until it has left, whose device+radio joules are those of the fork minus a fork in
   which the request is not dispatched. (b) is what the forecast models (the current queue and
   batch, no later arrivals); (a) adds the later load. The bias per action class is the mean of
   forecast minus outcome;
2. **the oracle's decisions** (:class:`~agents.cell_oracle.CellOraclePolicy` with the
   heuristic as base policy): per decision, the heuristic's action at the same state, the
   oracle's, and the oracle's hindsight saving ``cost(base action) - cost(chosen)`` (its
   rollouts' cost for the whole cell, >= 0). The savings are then split by what the request
   and its link looked like: its true output length, whether its session had context (a
   returning session) and comes back, and the device's true uplink now and over the next
   seconds against the heuristic's estimate (a bandwidth dip the estimate has not seen).

Everything is written to ``OUT/<family>_load<x>.json`` (one row per decision) and summarised
on stdout::

    python experiments/analyses/cell_oracle_room.py --family wifi --episodes 2 --loads 1,2 \\
        --out runs/oracle_room

Hindsight and slow (the oracle ~10 forked rollouts per decision); an analysis, not a result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cell_results_table import CONFIG, EVAL_SEED, eval_sets

from agents.cell_oracle import CellOraclePolicy, empty_time, fork_simulator
from agents.evaluation.cell_runner import _at_load
from agents.evaluation.episodes import Episode, build_episodes
from agents.train_config import load_train_config
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell.simulator import CellSimulator
from offload_rl.cell_heuristics.names import make_cell_heuristic
from offload_rl.cell_heuristics.policies import CellGreedy
from offload_rl.cost_model import TIER_CLOUD, TIER_DEVICE, TIER_EDGE, TIER_SPLIT, tier_of
from offload_rl.heuristics import estimate_throughput
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import resolve_scenario

KIND_NAMES = {TIER_EDGE: "edge", TIER_SPLIT: "split", TIER_DEVICE: "device", TIER_CLOUD: "cloud"}
LOOKAHEAD_S = 10.0  # the "link over the next seconds" window of the dip measure


def kind_name(tier: int, n_layers: int) -> str:
    return KIND_NAMES.get(tier_of(tier, n_layers), "lite")


def _joules_until(sim: CellSimulator, t: float) -> float:
    """Raw device joules the fork spends from its last collection to ``t``."""
    before = sim.joules.latency_cost + sim.joules.other_cost
    sim.advance(t)
    sim.joules.collect(t)
    return sim.joules.latency_cost + sim.joules.other_cost - before


def isolated_outcome(env: EdgeCellEnv, action: int) -> tuple[float, float, float]:
    """(latency s, device+radio joules, own cost) of the current request dispatched with
    ``action`` in a fork where no later request arrives; joules net of a fork without it, and
    its own cost by the per-request reward rule (latency over its SLO, joules, SLO miss, USD)."""
    i = env.request_index
    t = env.sim.requests[i].arrival_s
    with_it, without = fork_simulator(env.sim), fork_simulator(env.sim)
    tier, keep = env.layout.decode(action)
    cr = with_it.dispatch(i, tier, bool(keep))
    end = max(empty_time(with_it, t), empty_time(without, t))
    tail = max(d.radio.params.tail_s for d in env.sim.devices)
    joules = _joules_until(with_it, end + tail) - _joules_until(without, end + tail)
    rule = env.facts.reward_rule
    slo_total = cr.slo[0] + max(cr.request.output_tokens - 1, 0) * cr.slo[1]
    own = (
        rule.w_latency * cr.latency_s / slo_total
        + rule.w_energy * joules
        + rule.w_slo * float(cr.slo_violated)
        + rule.w_cost * cr.usd
    )
    return cr.latency_s, joules, own


def link_facts(env: EdgeCellEnv, estimate_mbps: float) -> dict[str, float]:
    """The device's true uplink now and over the next ``LOOKAHEAD_S`` against the estimate."""
    sim, i = env.sim, env.request_index
    d = sim.devices[sim.device_of[i]]
    t = d.offset_s + sim.requests[i].arrival_s
    ahead = [d.uplink.capacity_mbps(t + s) for s in np.linspace(0.0, LOOKAHEAD_S, 11)]
    return {
        "est_mbps": estimate_mbps,
        "true_mbps": float(d.uplink.capacity_mbps(t)),
        "ahead_mbps": float(np.mean(ahead)),
    }


def request_facts(env: EdgeCellEnv) -> dict[str, Any]:
    req = env.sim.requests[env.request_index]
    gap = req.gap_to_next_turn_s
    return {
        "i": env.request_index,
        "turn": req.turn,
        "context": req.context_tokens,
        "new": req.new_tokens,
        "output": req.output_tokens,
        "returns_s": -1.0 if gap is None else float(gap),
        "private": bool(env.state.private),
        "edge_running": env.state.edge_running,
        "edge_waiting": env.state.edge_waiting,
        "age_s": float(env.state.throughput_age_s),
        "hist_min_mbps": float(min(env.state.throughput_mbps, default=0.0)),
        "edge_valid": bool(env.action_masks()[0:2].any()),
    }


def heuristic_episode(
    env: EdgeCellEnv, policy: CellGreedy, episode: Episode
) -> list[dict[str, Any]]:
    """Rows of the heuristic's forecast vs the isolated and the realised outcome."""
    env.reset(seed=episode.workload_seed, options=episode.reset_options())
    policy.reset()
    fc, L = policy.forecaster, env.layout.n_layers
    rows: list[dict[str, Any]] = []
    by_rid: dict[int, dict[str, Any]] = {}
    while True:
        state, mask = env.state, env.action_masks()
        action = int(policy.act(state, mask))
        tier, keep = env.layout.decode(action)
        f = fc.forecast(state, [tier])[0]
        lat_iso, j_iso, _ = isolated_outcome(env, action)
        row = {
            **request_facts(env),
            **link_facts(env, fc.uplink_mbps(state)),
            "kind": kind_name(tier, L),
            "keep": keep,
            "pred_latency_s": f.latency_s,
            "pred_energy_j": f.energy_j,
            "pred_reward": f.reward,
            "pred_output": f.output_tokens,
            "iso_latency_s": lat_iso,
            "iso_energy_j": j_iso,
        }
        rows.append(row)
        by_rid[row["i"]] = row
        _, _, _, truncated, _ = env.step(action)
        for cr in env.last_finished:
            by_rid[cr.rid]["latency_s"] = cr.latency_s
        if truncated:
            break
    pending = env.sim.in_flight()  # settle the rest: every request gets its realised latency
    env.sim.advance(empty_time(env.sim, env.sim.requests[env.request_index].arrival_s))
    for cr in pending:
        by_rid[cr.rid]["latency_s"] = cr.latency_s
    return rows


def oracle_episode(
    env: EdgeCellEnv, oracle: CellOraclePolicy, base: CellGreedy, episode: Episode
) -> list[dict[str, Any]]:
    """Rows of the oracle's choice, the base policy's, and the hindsight saving."""
    env.reset(seed=episode.workload_seed, options=episode.reset_options())
    oracle.reset()
    L = env.layout.n_layers
    rows: list[dict[str, Any]] = []
    while True:
        state = env.state
        base_action = int(base.act(state, env.action_masks()))
        est = base.forecaster.uplink_mbps(state)
        facts = {**request_facts(env), **link_facts(env, est)}
        own_base = isolated_outcome(env, base_action)[2]
        action = int(oracle.act_env(env))
        own = own_base if action == base_action else isolated_outcome(env, action)[2]
        costs = oracle.last_costs
        bt, bk = env.layout.decode(base_action)
        ot, ok = env.layout.decode(action)
        rows.append(
            {
                **facts,
                "base_kind": kind_name(bt, L),
                "base_keep": bk,
                "kind": kind_name(ot, L),
                "keep": ok,
                "saving": float(costs.get(base_action, costs[action]) - costs[action]),
                # the decided request's own cost, alone in a fork (base's minus the oracle's)
                "own_saving": float(own_base - own),
                "raw_estimate_mbps": float(estimate_throughput(state.throughput_mbps, "ewma")),
            }
        )
        _, _, _, truncated, _ = env.step(action)
        if truncated:
            break
    return rows


def disagreements(
    env: EdgeCellEnv, policy: CellGreedy, other: Any, episodes: Sequence[Episode]
) -> list[str]:
    """Along ``policy``'s own episodes: how often ``other`` (a deployable policy, its action
    made valid as the environment would) would place the request elsewhere, by what the mask
    leaves open (a private request; the edge masked by an outage or memory; a free choice)."""
    from collections import Counter

    from offload_rl.cell_heuristics.predictor import valid_tiers

    L = env.layout.n_layers
    counts: Counter[tuple[str, str, str]] = Counter()
    for ep in episodes:
        env.reset(seed=ep.workload_seed, options=ep.reset_options())
        policy.reset()
        other.reset()
        while True:
            state, mask = env.state, env.action_masks()
            a = int(policy.act(state, mask))
            b = env.layout.nearest_valid(int(other.act(state, mask)), mask)
            free = 0 in valid_tiers(mask)
            case = "private" if state.private else ("free" if free else "edge masked")
            ta, tb = env.layout.decode(a)[0], env.layout.decode(b)[0]
            name_a = kind_name(ta, L) + (f" {ta}" if kind_name(ta, L) == "split" else "")
            name_b = kind_name(tb, L) + (f" {tb}" if kind_name(tb, L) == "split" else "")
            counts[(case, name_a, name_b)] += 1
            _, _, _, truncated, _ = env.step(a)
            if truncated:
                break
    out = [f"| request | {policy.name} | {other.name} | decisions |", "|---|---|---|---|"]
    out += [f"| {c} | {a} | {b} | {n} |" for (c, a, b), n in counts.most_common()]
    return out


class _Told:
    """``base`` told one fact about the deciding phone that the decision state does not carry,
    for the length of one decision. Not a deployable policy as the state stands: it measures
    what that fact is worth."""

    fact = ""

    def __init__(self, base: CellGreedy) -> None:
        self.base = base
        self.name = f"{base.name} ({self.fact} known)"

    def reset(self) -> None:
        self.base.reset()

    def tell(self, env: EdgeCellEnv) -> None:
        raise NotImplementedError

    def untell(self) -> None:
        raise NotImplementedError

    def act_env(self, env: EdgeCellEnv) -> int:
        self.tell(env)
        try:
            return int(self.base.act(env.state, env.action_masks()))
        finally:
            self.untell()


class KnownRadio(_Told):
    """Told which radio the phone is on (the forecast assumes the cell's cellular radio)."""

    fact = "device's radio"

    def tell(self, env: EdgeCellEnv) -> None:
        self.assumed = self.base.forecaster.radio
        d = env.sim.devices[env.sim.device_of[env.request_index]]
        self.base.forecaster.radio = d.radio.params

    def untell(self) -> None:
        self.base.forecaster.radio = self.assumed


class KnownQueue(_Told):
    """Told how long the phone's compute queue is still busy (the state gives only the OS
    thermal level, the forecast a fitted wait per level)."""

    fact = "device queue"

    def tell(self, env: EdgeCellEnv) -> None:
        self.assumed = params = self.base.forecaster.params
        sim, i = env.sim, env.request_index
        wait = max(sim.devices[sim.device_of[i]].busy_until - sim.requests[i].arrival_s, 0.0)
        known = {"device_wait_s": [wait] * 4, "device_busy_p": [1.0] * 4}
        self.base.forecaster.params = params.model_copy(update=known)

    def untell(self) -> None:
        self.base.forecaster.params = self.assumed


def score_policies(
    env: EdgeCellEnv, scenario: Scenario, policy_name: str, episodes: Sequence[Episode]
) -> list[str]:
    """Settled reward of the heuristic, the heuristic told its radio or its phone's queue, and
    ``edge``; paired with the heuristic per episode. The policies are built on ``scenario``, the
    set's own (not told the load ``env`` runs at, as the results table builds them)."""
    from agents.evaluation.cell_rollout import run_cell_episode, settled_reward
    from agents.evaluation.confidence import mean_ci95
    from agents.policies import resolve_policy

    policies: dict[str, Any] = {
        policy_name: make_cell_heuristic(policy_name, scenario),
        "radio known": KnownRadio(make_cell_heuristic(policy_name, scenario)),
        "device queue known": KnownQueue(make_cell_heuristic(policy_name, scenario)),
        "edge": resolve_policy("edge", scenario, seed=EVAL_SEED),
    }
    scores = {
        k: np.array([settled_reward(run_cell_episode(p, env, ep)) for ep in episodes])
        for k, p in policies.items()
    }
    ref = scores[policy_name]
    out = ["| policy | reward | minus " + policy_name + " (95% CI) | share |", "|---|---|---|---|"]
    for k, v in scores.items():
        d, half = mean_ci95(v - ref)
        out.append(
            f"| {k} | {v.mean():.3f} | {d:+.3f} +- {half:.3f} | {d / abs(ref.mean()):+.1%} |"
        )
    return out


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def bias_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Forecast minus outcome per action class (latency, energy), mean over its decisions."""
    out = [
        "| class | n | pred lat s | isolated lat s | realised lat s | pred J | isolated J |",
        "|-------|---|-----------|----------------|----------------|--------|------------|",
    ]
    for kind in ("edge", "split", "device", "cloud", "lite"):
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        out.append(
            f"| {kind} | {len(rs)} | {_mean([r['pred_latency_s'] for r in rs]):.2f} | "
            f"{_mean([r['iso_latency_s'] for r in rs]):.2f} | "
            f"{_mean([r['latency_s'] for r in rs]):.2f} | "
            f"{_mean([r['pred_energy_j'] for r in rs]):.1f} | "
            f"{_mean([r['iso_energy_j'] for r in rs]):.1f} |"
        )
    return out


def outage_table(rows: Sequence[dict[str, Any]], floor_mbps: float = 0.1) -> list[str]:
    """What the decision state says about the link being out *now* (the sample age, an outage
    sample in the history), over the decisions where the edge is open and the request is not
    private: P(true uplink < ``floor_mbps``) per class."""
    rs = [r for r in rows if r["edge_valid"] and not r["private"]]
    classes = {
        "newest sample < 10 s old": lambda r: r["age_s"] < 10,
        "newest sample 10-60 s old": lambda r: 10 <= r["age_s"] < 60,
        "newest sample >= 60 s old": lambda r: r["age_s"] >= 60,
        "an outage sample in the history": lambda r: r["hist_min_mbps"] < floor_mbps,
        "history minimum >= 1 Mbps": lambda r: r["hist_min_mbps"] >= 1.0,
    }
    out = [
        f"| decisions (edge open, not private: {len(rs)}) | n | P(link out now) |",
        "|---|---|---|",
    ]
    for name, test in classes.items():
        sel = [r for r in rs if test(r)]
        p = _mean([float(r["true_mbps"] < floor_mbps) for r in sel])
        out.append(f"| {name} | {len(sel)} | {p:.2f} |")
    return out


def oracle_tables(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Base-vs-oracle placement counts, and where the savings are."""
    kinds = ("edge", "split", "device", "cloud", "lite")
    total = sum(r["saving"] for r in rows) or 1.0
    out = ["| base \\ oracle | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for b in kinds:
        counts = [sum(1 for r in rows if r["base_kind"] == b and r["kind"] == o) for o in kinds]
        if sum(counts):
            out.append(f"| {b} | " + " | ".join(str(c) for c in counts) + " |")
    keep = [
        sum(1 for r in rows if r["base_keep"] == bk and r["keep"] == ok)
        for bk in (0, 1)
        for ok in (0, 1)
    ]
    out += ["", f"keep (base, oracle): 0/0 {keep[0]}, 0/1 {keep[1]}, 1/0 {keep[2]}, 1/1 {keep[3]}"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(f"{r['base_kind']} -> {r['kind']}", []).append(r)
    out += [
        "",
        "| move | n | saving (cell, window) | share | own saving (request alone) |",
        "|------|---|--------|-------|------|",
    ]
    for name, rs in sorted(groups.items(), key=lambda kv: -sum(r["saving"] for r in kv[1])):
        s = sum(r["saving"] for r in rs)
        own = sum(r["own_saving"] for r in rs)
        out.append(f"| {name} | {len(rs)} | {s:.2f} | {s / total:.0%} | {own:+.2f} |")
    n = len(rows)
    out += [
        "",
        f"saving per decision {total / n:.3f} (the oracle's room, as its rollouts see it); "
        f"of it on the decided request itself {sum(r['own_saving'] for r in rows) / n:+.3f}",
    ]
    splits = {
        "output > 2x median": lambda r, m: r["output"] > 2 * m["output"],
        "context > 0 (returning session)": lambda r, m: r["context"] > 0,
        "comes back within 300 s": lambda r, m: 0 <= r["returns_s"] <= 300,
        "true uplink < 0.5 x estimate": lambda r, m: r["true_mbps"] < 0.5 * r["est_mbps"],
        "next 10 s uplink < 0.5 x estimate": lambda r, m: r["ahead_mbps"] < 0.5 * r["est_mbps"],
        "edge batch >= 4": lambda r, m: r["edge_running"] >= 4,
    }
    med = {"output": float(np.median([r["output"] for r in rows]))}
    out += ["", "| requests | share of decisions | share of the saving |", "|---|---|---|"]
    for name, test in splits.items():
        rs = [r for r in rows if test(r, med)]
        s = sum(r["saving"] for r in rs)
        out.append(f"| {name} | {len(rs) / len(rows):.0%} | {s / total:.0%} |")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="wifi")
    p.add_argument("--policy", default="greedy", help="the heuristic (and the oracle's base)")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--loads", default="1,2")
    p.add_argument("--no-oracle", action="store_true")
    p.add_argument("--no-forecast", action="store_true", help="skip the forecast-vs-outcome part")
    p.add_argument(
        "--score-episodes",
        type=int,
        default=0,
        help="also score the heuristic, it told its radio, and edge on this many episodes",
    )
    p.add_argument("--out", type=Path, default=Path("runs/oracle_room"))
    args = p.parse_args(argv)
    sets = {s.name: s for s in eval_sets(load_train_config(CONFIG))}
    if args.family not in sets:
        print(f"cell_oracle_room: --family: one of {', '.join(sets)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    base: Scenario = sets[args.family].scenario  # the policies are built on it (not told the load)
    for load in (float(x) for x in args.loads.split(",")):
        scenario: Scenario = _at_load(base, load)
        episodes = build_episodes(resolve_scenario(scenario), args.episodes, EVAL_SEED)
        env = EdgeCellEnv(scenario)
        policy = make_cell_heuristic(args.policy, base)
        if args.score_episodes:
            scored = build_episodes(resolve_scenario(scenario), args.score_episodes, EVAL_SEED)
            print(f"\n## {args.family}, load {load:g}: {len(scored)} episodes, settled reward\n")
            print("\n".join(score_policies(env, base, args.policy, scored)))
            from agents.policies import resolve_policy

            edge = resolve_policy("edge", base, seed=EVAL_SEED)
            print(f"\n{args.policy} against edge, along {args.policy}'s episodes:\n")
            print("\n".join(disagreements(env, policy, edge, scored)))
        h_rows: list[dict[str, Any]] = []
        if not args.no_forecast:
            t0 = time.perf_counter()
            h_rows = [r for ep in episodes for r in heuristic_episode(env, policy, ep)]
            print(f"\n## {args.family}, load {load:g}: {args.policy}'s forecast vs outcome")
            print(f"({len(episodes)} episodes, {time.perf_counter() - t0:.0f} s)\n")
            print("\n".join(bias_table(h_rows)))
            print("\n".join(["", *outage_table(h_rows)]))
        o_rows: list[dict[str, Any]] = []
        if not args.no_oracle:
            t0 = time.perf_counter()
            oracle = CellOraclePolicy(make_cell_heuristic(args.policy, base))
            o_rows = [r for ep in episodes for r in oracle_episode(env, oracle, policy, ep)]
            print(f"\n## {args.family}, load {load:g}: oracle (base {args.policy}) vs base")
            print(f"({time.perf_counter() - t0:.0f} s)\n")
            print("\n".join(oracle_tables(o_rows)))
        path = args.out / f"{args.family}_load{load:g}.json"
        path.write_text(json.dumps({"heuristic": h_rows, "oracle": o_rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
