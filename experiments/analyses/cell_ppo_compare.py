"""PPO runs against the heuristic chosen on the training files, on the results table's sets:
the table's summary rows without the other heuristics (a probe's quicker check).

The same choice (:func:`cell_results_table.select_best`, training files, seed 2026), the same
episodes (evaluation seed 0; ``--episodes`` per held-out family, ``--left-out-episodes`` on
nyc-lte), the same paired difference and targets (:func:`cell_results_table.paired`,
:func:`cell_results_table.target_met`), for the seeds ``RUNS/seed<k>`` of any config::

    python experiments/analyses/cell_ppo_compare.py --runs runs/cell_ent --seeds 3 \\
        --out runs/cell_ent_table

Results are cached under ``OUT/evals`` as the table caches them; the summary goes to stdout and
``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cell_results_table import (
    CONFIG,
    EVAL_SEED,
    eval_sets,
    evaluate_set,
    heuristic_row,
    paired,
    ppo_row,
    run_dir,
    select_best,
    target_met,
    training_facts,
)

from agents.train_config import load_train_config


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--checkpoint", choices=["best", "final"], default="best")
    p.add_argument("--loads", default="1,2")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--left-out-episodes", type=int, default=8)
    p.add_argument("--select-episodes", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    config = load_train_config(CONFIG)
    loads = [float(x) for x in args.loads.split(",")]
    cache = args.out / "evals"
    seeds = list(range(args.seeds))
    _, best = select_best(config, loads, args.select_episodes, args.workers, cache)
    ppo = {
        f"ppo-seed{k}": f"sb3:{run_dir(args.runs, k).resolve() / args.checkpoint / 'model.zip'}"
        for k in seeds
    }
    rows = []
    print(
        "| set | load | best (training) | its reward | PPO reward | PPO - best (95% CI) | gain "
        "| per seed | p95 s PPO / best | SLO PPO / best | target |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for s in eval_sets(config):
        n = args.episodes if s.kind == "held-out" else args.left_out_episodes
        specs = {**ppo, **{h: h for h in set(best.values())}}
        res = evaluate_set(s, specs, n, loads, EVAL_SEED, args.workers, cache)
        for load in loads:
            lv = f"{load:g}"
            entries = [res[f"ppo-seed{k}"][lv] for k in seeds]
            row = ppo_row(entries)
            ref = heuristic_row(res[best[lv]][lv])
            pair = paired(row, entries, ref)
            met = target_met(s.kind, pair)
            rows.append(
                {
                    "set": s.name,
                    "kind": s.kind,
                    "load": load,
                    "best": best[lv],
                    "ppo": row,
                    "ref": ref,
                    "paired": pair,
                    "target_met": bool(met),
                }
            )
            per_seed = ", ".join(f"{x:+.3f}" for x in pair["per_seed"])
            print(
                f"| {s.name} ({s.kind}) | {lv} | {best[lv]} | {ref['reward']:.3f} | "
                f"{row['reward']:.3f} +- {row['ci']:.3f} | {pair['diff']:+.3f} +- {pair['ci']:.3f}"
                f" | {pair['gain']:+.1%} | {per_seed} | {row['p95_s']:.1f} / {ref['p95_s']:.1f} | "
                f"{row['slo']:.3f} / {ref['slo']:.3f} | {'met' if met else 'not met'} |",
                flush=True,
            )
    facts = training_facts(args.runs, seeds)
    print("\n| seed | steps | learn s | env steps/s | best step | best validation |")
    print("|---|---|---|---|---|---|")
    for f in facts:
        print(
            f"| {f['seed']} | {f['steps']} | {f['learn_wall_s']:.0f} | "
            f"{f['env_steps_per_s']:.0f} | {f['best_step']} | {f['best_validation']:.3f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(
        json.dumps({"best": best, "rows": rows, "training": facts}, indent=1, default=str) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
