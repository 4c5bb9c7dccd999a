"""``offload-rl evaluate``: run policies on the same held-out episodes and compare them.

    offload-rl evaluate --policies local,edge,greedy,oracle,random --out runs/eval \\
        [--scenario default] [--traces ../shared/traces/nyc-lte ...] [--uplink-scale 0.22] \\
        [--episodes 8] [--seed 0] [--workers 2] [--requests 128]

Heavy imports (gymnasium, torch, matplotlib) happen inside the handler only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from offload_rl.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare policies (heuristics, oracle, trained agents) on the same episodes",
        description=(
            "Run every policy over the same pinned episodes (per trace family: --episodes "
            "episodes, each a trace, offset and workload seed drawn from --seed) and write "
            "metrics.json/csv, one TensorBoard run per policy (tb/<policy>, identical tags), "
            "report.md and plots under --out."
        ),
    )
    parser.add_argument(
        "--policies",
        required=True,
        help=(
            "comma-separated policy specs: local, edge, cloud, random, greedy[-last|-hmean|-ewma]"
            "[-never|-always|-likely], local-<rule>, edge-<rule>, lite-on-outage (scenarios "
            "with a lite: model), oracle (hindsight), shipped (the package's policy for the "
            "scenario: cell.onnx in a cell), onnx:PATH, sb3:PATH"
        ),
    )
    parser.add_argument("--scenario", default="default", help="embedded name or YAML path")
    parser.add_argument(
        "--traces",
        "--trace-dir",
        nargs="+",
        metavar="PATH",
        help=(
            "trace files or folders replacing the scenario's traces (a folder = a family; a "
            "folder holding only folders, such as ../shared/traces, = one family per subfolder)"
        ),
    )
    parser.add_argument(
        "--uplink-scale",
        type=float,
        default=None,
        metavar="X",
        help="uplink capacity = X x trace, for every trace source (e.g. 0.22 for LTE downlinks)",
    )
    parser.add_argument("--episodes", type=int, default=8, help="episodes per trace family")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode set")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    parser.add_argument(
        "--requests", type=int, default=None, help="requests per episode (default: scenario's)"
    )
    parser.add_argument(
        "--loads",
        default=None,
        metavar="X,Y,...",
        help=(
            "cell scenarios only (a 'cell:' section runs EdgeCell-v0): session arrival-rate "
            "multipliers to evaluate at (default 0.5,1,2)"
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agents.evaluate import evaluate, prepare_scenario, write_outputs
    from agents.evaluation.cell_runner import DEFAULT_LOADS
    from offload_rl.scenario import load_scenario

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")
    for t in args.traces or []:
        if not Path(t).exists():
            raise ConfigError(f"--traces: {t} does not exist")
    traces = expand_trace_folders(args.traces) if args.traces else None
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    scenario = prepare_scenario(
        load_scenario(args.scenario),
        traces=traces,
        uplink_scale=args.uplink_scale,
        requests=args.requests,
    )
    recorded = {
        "policies": policies,
        "scenario": args.scenario,
        "traces": list(traces or []),
        "uplink_scale": args.uplink_scale,
        "episodes": args.episodes,
        "seed": args.seed,
        "requests": scenario.episode.requests,
    }
    loads = _parse_loads(args.loads)
    if scenario.cell is not None:
        recorded["loads"] = list(loads or DEFAULT_LOADS)
    result = evaluate(
        policies,
        scenario,
        episodes_per_family=args.episodes,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
        args=recorded,
        loads=loads,
    )
    metrics = write_outputs(result, args.out)
    if result.loads:
        _print_cell_summary(metrics, result.wall_s, args.out)
    else:
        _print_summary(metrics, result.wall_s, args.out)
    return 0


def expand_trace_folders(paths: list[str]) -> list[str]:
    """A folder of family folders (no files of its own) stands for its families, sorted: the
    layout of a trace collection (``../shared/traces/<family>/``). Anything else as given."""
    out: list[str] = []
    for path in paths:
        p = Path(path)
        entries = [e for e in p.iterdir() if not e.name.startswith(".")] if p.is_dir() else []
        if entries and all(e.is_dir() for e in entries):
            out += [str(e) for e in sorted(entries)]
        else:
            out.append(path)
    return out


def _parse_loads(text: str | None) -> list[float] | None:
    """``--loads 0.5,1,2`` as numbers; a bad entry is a :class:`ConfigError`."""
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--loads: expected numbers separated by commas, got {text!r}") from None


def _print_summary(metrics: dict[str, Any], wall_s: float, out: Path) -> None:
    """Mean reward per family (rows) and policy (columns); CIs are in report.md."""
    from rich.console import Console
    from rich.table import Table

    policies = metrics["policies"]
    table = Table(title="mean reward per request (higher is better; 95% CIs in report.md)")
    table.add_column("family")
    for spec, m in policies.items():
        table.add_column(spec if m["deployable"] else f"{spec}*", justify="right")

    def cell(v: dict[str, Any]) -> str:
        return "–" if v["mean_reward"] is None else f"{v['mean_reward']:.3f}"

    for family, per_policy in metrics["families"].items():
        table.add_row(family, *(cell(per_policy[s]) for s in policies))
    table.add_row("[bold]all[/]", *(cell(m) for m in policies.values()))
    console = Console()
    console.print(table)
    if not all(m["deployable"] for m in policies.values()):
        console.print("* hindsight reference, not deployable")
    console.print(
        f"wrote metrics.json, metrics.csv, report.md, plots and tb/ to {out} ({wall_s:.1f} s)"
    )


def _print_cell_summary(metrics: dict[str, Any], wall_s: float, out: Path) -> None:
    """Mean latency per finished request, per load level (rows) and policy (columns)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="EdgeCell-v0: mean latency per finished request, s (report.md: more)")
    table.add_column("load")
    for spec in metrics["policies"]:
        table.add_column(spec, justify="right")
    for level, per_policy in metrics["loads"].items():
        cells = [per_policy[s]["mean_latency_s"] for s in metrics["policies"]]
        table.add_row(f"x{level}", *("–" if v is None else f"{v:.2f}" for v in cells))
    console = Console()
    console.print(table)
    console.print(
        f"wrote metrics.json, metrics.csv, report.md, plots and tb/ to {out} ({wall_s:.1f} s)"
    )
