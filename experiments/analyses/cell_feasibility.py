"""How much room the hindsight oracle finds over the best tuned heuristic, per family and load,
against the issue's 5% target.

For the results table's episode sets (``train_cell_split.yaml``: held-out files of each
training family, and the left-out nyc-lte), at each load: the heuristic chosen on the training
files (:func:`cell_results_table.select_best`, never on these episodes), the trivial ``edge``,
and the oracle (:mod:`agents.cell_oracle`) on the first ``--episodes`` episodes of each set.
The room is the paired per-episode difference ``oracle - best`` with its 95% t-interval, as a
share of the best heuristic's |reward|; each episode's difference is listed beside it (with a
few episodes the interval is wide, and the signs say more).

The oracle is a hindsight *one-step lookahead* with ``greedy`` as its base policy (it knows the
future links, arrivals, output lengths and returns; later decisions in its window are
greedy's), not an optimum: its room is a reference for what knowing the future is worth, not a
bound on what any policy could reach. Results are cached under ``OUT/evals`` (shared layout
with the results table's cache)::

    python experiments/analyses/cell_feasibility.py --episodes 2 --out runs/cell_feasibility
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cell_results_table import (
    CONFIG,
    EVAL_SEED,
    ORACLE,
    TARGET_GAIN,
    eval_sets,
    evaluate_set,
    select_best,
)

from agents.evaluation.confidence import mean_ci95
from agents.train_config import load_train_config


def room_row(name: str, load: str, best: str, res: dict[str, Any]) -> dict[str, Any]:
    """Oracle and ``edge`` minus the chosen heuristic, paired over the oracle's episodes."""
    orc = np.asarray(res[ORACLE][load]["scores"])
    k = orc.size
    ref = np.asarray(res[best][load]["scores"][:k])
    edge = np.asarray(res["edge"][load]["scores"][:k])
    d, half = mean_ci95(orc - ref)
    de, he = mean_ci95(edge - ref)
    scale = abs(float(ref.mean()))
    return {
        "set": name,
        "load": load,
        "best": best,
        "episodes": k,
        "best_reward": float(ref.mean()),
        "oracle_reward": float(orc.mean()),
        "room": d,
        "room_ci": half,
        "room_share": d / scale,
        "room_share_ci": half / scale,
        "room_per_episode": (orc - ref).tolist(),
        "edge_share": de / scale,
        "edge_share_ci": he / scale,
        "target_in_room": bool(d / scale >= TARGET_GAIN),
        "target_in_ci": bool((d + half) / scale >= TARGET_GAIN),
    }


def _verdict(row: dict[str, Any]) -> str:
    """``yes`` when the mean room reaches the target; otherwise whether the CI's upper end does."""
    if row["target_in_room"]:
        return "yes"
    upper = row["room_share"] + row["room_share_ci"]
    return f"no (CI's upper end {upper:+.1%}{', reaches 5%' if row['target_in_ci'] else ''})"


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| set | load | best (training files) | episodes | best | oracle | oracle room "
        "(95% CI) | per episode (oracle - best) | `edge` - best | "
        "5% target inside the oracle's room? |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['load']} | {r['best']} | {r['episodes']} | "
            f"{r['best_reward']:.3f} | {r['oracle_reward']:.3f} | "
            f"{r['room_share']:+.1%} +- {r['room_share_ci']:.1%} | "
            f"{', '.join(f'{x:+.3f}' for x in r['room_per_episode'])} | "
            f"{r['edge_share']:+.1%} +- {r['edge_share_ci']:.1%} | "
            f"{_verdict(r)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=2, help="per set (the oracle is slow)")
    p.add_argument("--loads", default="1,2")
    p.add_argument("--select-episodes", type=int, default=2, help="per family, training files")
    p.add_argument("--sets", default="", help="comma-separated set names (default: all)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("runs/cell_feasibility"))
    args = p.parse_args(argv)
    config = load_train_config(CONFIG)
    loads = [float(x) for x in args.loads.split(",")]
    cache = args.out / "evals"
    _, best = select_best(config, loads, args.select_episodes, args.workers, cache)
    wanted = set(args.sets.split(",")) if args.sets else None
    rows = []
    for s in eval_sets(config):
        if wanted is not None and s.name not in wanted:
            continue
        specs = {h: h for h in {*best.values(), "edge", ORACLE}}
        res = evaluate_set(s, specs, args.episodes, loads, EVAL_SEED, args.workers, cache)
        rows += [room_row(s.name, f"{x:g}", best[f"{x:g}"], res) for x in loads]
        print(markdown(rows[-len(loads) :]).splitlines()[-1], flush=True)
    (args.out / "feasibility.json").write_text(json.dumps(rows, indent=1) + "\n")
    print()
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
