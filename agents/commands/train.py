"""``offload-rl train``: train a MaskablePPO agent from a config, or resume a killed run.

    offload-rl train --config experiments/configs/train_default.yaml [--timesteps N] [--seed S]
        [--out runs/default] [--resume runs/default] [--no-progress]

Heavy imports (torch, stable-baselines3, gymnasium) happen inside the handler only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from offload_rl.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a PPO agent (TensorBoard, checkpoints, resume)",
        description=(
            "Train MaskablePPO on the scenario a config names. Writes OUT/tb (TensorBoard: the "
            "agent in tb/ppo, the heuristics on the same validation episodes beside it), "
            "OUT/checkpoints/step_N, OUT/final (model.zip, vecnormalize.pkl, meta.json) and "
            "OUT/summary.json. --resume OUT continues a killed run from its last checkpoint."
        ),
    )
    parser.add_argument(
        "--config", type=Path, help="training config YAML (default with --resume: OUT/config.yaml)"
    )
    parser.add_argument(
        "--timesteps", type=int, default=None, help="total env steps (overrides the config)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (overrides the config)")
    parser.add_argument(
        "--out", type=Path, default=None, help="run folder (default: runs/<config name>)"
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="DIR",
        help="continue the run in DIR (or from the checkpoint folder DIR)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agents.train import SUMMARY_FILE, train

    if args.config is None and args.resume is None:
        raise ConfigError("give --config (or --resume DIR to continue a run)")
    if args.timesteps is not None and args.timesteps < 1:
        raise ConfigError(f"--timesteps must be >= 1, got {args.timesteps}")
    out = args.out
    if out is None and args.resume is None:
        out = Path("runs") / args.config.stem.removeprefix("train_")
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    console = Console(stderr=True)
    run_dir = train(
        args.config,
        out,
        timesteps=args.timesteps,
        seed=args.seed,
        resume=args.resume,
        progress=not args.no_progress,
        log=lambda msg: console.print(msg, highlight=False, markup=False),
    )
    _print_summary(run_dir / SUMMARY_FILE)
    return 0


def _print_summary(path: Path) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    summary = json.loads(path.read_text())
    table = Table(title=f"validation after {summary['num_timesteps']} steps (mean per request)")
    for col in ("policy", "reward", "latency s", "p95 s", "SLO viol.", "energy J", "cache hit"):
        table.add_column(col, justify="left" if col == "policy" else "right")

    def fmt(x: object, digits: int = 3) -> str:
        return "-" if x is None else f"{float(x):.{digits}f}"  # type: ignore[arg-type]

    for name, m in summary["final"].items():
        table.add_row(
            name,
            fmt(m["mean_reward"]),
            fmt(m["mean_latency_s"]),
            fmt(m["latency_p95_s"]),
            fmt(m["slo_violation_rate"]),
            # a cell's energy is every device's, per decision (agents.evaluation.cell_metrics)
            fmt(m.get("energy_j_per_decision", m["energy_j_per_request"]), 2),
            fmt(m["cache_hit_rate"]),
        )
    console = Console()
    console.print(table)
    console.print(
        f"{summary['env_steps_per_s']:.0f} env steps/s over {summary['learn_wall_s']:.0f} s; "
        f"best validation reward {summary['best']['mean_reward']:.3f} "
        f"at step {summary['best']['step']}; run folder: {path.parent}"
    )
