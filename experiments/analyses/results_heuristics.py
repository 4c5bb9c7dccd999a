"""The heuristic and oracle columns of docs/RESULTS.md at the current code, without training.

``results_table.py`` regenerates the whole single-device table, and to do that it trains 35 PPO
runs (~31 min on two quiet cores). The heuristics and the oracle do not need the runs. This
scores them on exactly the episodes the table's trials score them on: the policies, episodes
and seed of ``experiments/sweeps/results_table.yaml``'s ``evaluate`` section, on each config's
held-out files (``TrainConfig.scenarios()``, the trials' own split). The output is the mean
reward per request, the table's figure, so a change of the environment (a mask or cost rule)
can be read against the published table before the PPO runs are redone::

    python experiments/analyses/results_heuristics.py --out runs/results_heuristics.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "experiments" / "sweeps" / "results_table.yaml"


def config_name(path: Path) -> str:
    """``train_wifi.yaml`` -> ``wifi`` (the table's row name)."""
    return path.stem.removeprefix("train_")


def score_config(
    path: Path, policies: Sequence[str], episodes: int, seed: int, workers: int
) -> dict[str, float | None]:
    """Mean reward per request of every policy on the config's held-out files."""
    from agents.evaluation.metrics import summarise
    from agents.evaluation.runner import evaluate
    from agents.train_config import load_train_config

    _, held_out = load_train_config(path).scenarios()
    result = evaluate(
        list(policies), held_out, episodes_per_family=episodes, seed=seed, workers=workers
    )
    return {p: summarise(result.records[p], result.n_layers)["mean_reward"] for p in policies}


def markdown(scores: dict[str, dict[str, float | None]], policies: Sequence[str]) -> str:
    lines = ["| config | " + " | ".join(policies) + " |", "|---|" + "---:|" * len(policies)]
    for name, row in scores.items():
        cells = " | ".join("n/a" if row[p] is None else f"{row[p]:.4f}" for p in policies)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from agents.sweep.config import load_sweep_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", type=Path, default=SWEEP)
    p.add_argument("--configs", default="", help="comma-separated config names (default: all)")
    p.add_argument("--policies", default="", help="comma-separated (default: the sweep's)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("runs/results_heuristics.json"))
    args = p.parse_args(argv)
    sweep = load_sweep_config(args.sweep)
    if sweep.evaluate is None:
        print(f"{args.sweep}: evaluate: the sweep evaluates nothing", file=sys.stderr)
        return 2
    ev = sweep.evaluate
    policies = args.policies.split(",") if args.policies else ev.policies
    wanted = set(args.configs.split(",")) if args.configs else None
    scores: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for path in sweep.config_paths():
        name = config_name(path)
        if wanted is None or name in wanted:
            scores[name] = score_config(path, policies, ev.episodes, ev.seed, args.workers)
            print(f"{name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(scores, indent=1) + "\n")
    print(f"\n{ev.episodes} episodes per family, seed {ev.seed}, held-out files\n")
    print(markdown(scores, policies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
