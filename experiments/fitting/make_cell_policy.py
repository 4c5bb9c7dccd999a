"""Make the shipped cell policy ``offload_rl/data/policies/cell.onnx`` in one command.

Usage::

    python experiments/fitting/make_cell_policy.py [--config experiments/configs/train_cell.yaml]
        [--run runs/cell_policy] [--out offload_rl/data/policies/cell.onnx] [--seed N]
        [--reuse-run] [--parity 10000]

1. **Train** ``offload-rl train --config CONFIG --out RUN`` (EdgeCell-v0: the config must name a
   scenario with a ``cell:`` section). ``--reuse-run`` skips this when ``RUN/best/`` is already
   complete (a run this script or ``offload-rl train`` made with the same config).
2. **Pick** ``RUN/best/``: the checkpoint with the best validation reward (training's pinned
   validation cells, ``eval_seed``), never the held-out episodes the policy is reported on.
3. **Export** it with :func:`agents.export.export_policy`, what ``offload-rl export`` runs:
   the normalisation statistics are checked against training's record and the ONNX graph must
   choose the action ``model.predict`` chooses on every one of ``--parity`` observations
   (EdgeCell-v0's own observations and masks, and random points with random valid masks).
4. **Provenance** in the ONNX metadata (``provenance_*`` keys, covered by the version hash): the
   resolved config as training wrote it, the config's path, the commit it was trained at
   (``-dirty`` when the tree had changes; ``--trained-at`` for a reused run of another), the
   trained steps, the best step and its validation reward beside the heuristics' on the same
   validation cells.

Then ``offload-rl evaluate --scenario cell --policies shipped,greedy,lyapunov,...`` runs it
(``shipped`` is ``cell.onnx`` on a cell scenario, :mod:`serving.shipped`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "experiments" / "configs" / "train_cell.yaml"
DEFAULT_RUN = ROOT / "runs" / "cell_policy"
DEFAULT_OUT = ROOT / "offload_rl" / "data" / "policies" / "cell.onnx"
TRAINED_AT_FILE = "trained_at_commit.txt"  # written into RUN by this script
console = Console()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="training config")
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="training run folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the ONNX file to write")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: config's)")
    parser.add_argument(
        "--reuse-run", action="store_true", help="export RUN/best/ if complete, without training"
    )
    parser.add_argument("--parity", type=int, default=10_000, help="parity observations")
    parser.add_argument(
        "--trained-at",
        metavar="COMMIT",
        default=None,
        help="with --reuse-run of a run this script did not train: the commit it was trained at",
    )
    return parser.parse_args(argv)


def check_cell_config(config: Path) -> None:
    """A config that does not train in the cell would ship a single-device policy as cell.onnx."""
    from agents.train_config import load_train_config

    if not load_train_config(config).is_cell():
        from offload_rl.errors import ConfigError

        raise ConfigError(f"{config}: scenario has no cell: section (cell.onnx is a cell policy)")


def train(config: Path, run: Path, seed: int | None) -> None:
    """``offload-rl train`` in a child process (its output streams here)."""
    args = [sys.executable, "-m", "offload_rl", "train", "--config", str(config), "--out", str(run)]
    if seed is not None:
        args += ["--seed", str(seed)]
    console.print("$ " + " ".join(["offload-rl", *args[3:]]), style="dim")
    status = subprocess.run(args, cwd=ROOT, check=False).returncode
    if status != 0:
        console.print(f"[red]training failed (exit status {status})")
        sys.exit(status)


def commit_of(root: Path) -> str:
    """``git rev-parse HEAD``, ``-dirty`` when tracked files changed; ``unknown`` without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def provenance(config: Path, run: Path, commit: str) -> dict[str, str]:
    """What the metadata says about how the policy was made (from the run's own files)."""
    from agents.training.layout import AGENT_RUN, CONFIG_FILE, SUMMARY_FILE

    summary: dict[str, Any] = json.loads((run / SUMMARY_FILE).read_text())
    best = summary["best"]
    heuristics = {
        name: v.get("mean_reward") for name, v in summary["final"].items() if name != AGENT_RUN
    }
    return {
        "made_by": "experiments/fitting/make_cell_policy.py",
        "config_path": _relative(config),
        "config": (run / CONFIG_FILE).read_text(),
        "commit": commit,
        "trained_steps": str(summary["num_timesteps"]),
        "checkpoint": "best",
        "best_step": str(best["step"]),
        "validation_reward": f"{best['mean_reward']:.6f}",
        "validation": json.dumps(summary["validation"], sort_keys=True),
        "validation_heuristics": json.dumps(heuristics, sort_keys=True),
        "env_steps_per_s": str(summary["env_steps_per_s"]),
    }


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    from agents.checkpoints import is_complete
    from agents.export import export_policy
    from agents.training.layout import SUMMARY_FILE
    from offload_rl.errors import OffloadRLError

    args = parse_args(argv)
    try:
        check_cell_config(args.config)
        best = args.run / "best"
        t0 = time.perf_counter()
        if not (args.reuse_run and is_complete(best) and (args.run / SUMMARY_FILE).is_file()):
            commit = commit_of(ROOT)  # before training: the code the policy was trained with
            train(args.config, args.run, args.seed)
            (args.run / TRAINED_AT_FILE).write_text(commit + "\n")
        elif (args.run / TRAINED_AT_FILE).is_file():
            commit = (args.run / TRAINED_AT_FILE).read_text().strip()
        else:
            commit = args.trained_at or "unknown (a reused run; pass --trained-at)"
        if not is_complete(best):
            console.print(f"[red]{best}: no complete best/ checkpoint (did validation run?)")
            return 2
        info = provenance(args.config, args.run, commit)
        report = export_policy(best, args.out, parity=args.parity, provenance=info)
    except OffloadRLError as err:
        console.print(f"[red]make_cell_policy: {err}")
        return 2
    console.print(
        f"wrote {report.path} ({report.size_bytes / 1024:.0f} KiB, version "
        f"{report.version[:12]}): {args.run}/best at step {info['best_step']} of "
        f"{info['trained_steps']}, validation reward {info['validation_reward']} "
        f"(heuristics {info['validation_heuristics']}); parity on {report.parity_checked} "
        f"observations ({report.parity_env} from EdgeCell-v0); commit {commit}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
