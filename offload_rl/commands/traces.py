"""``offload-rl traces``: statistics of recorded traces, and synthetic traces from presets."""

from __future__ import annotations

import argparse
import json
from typing import Any, cast

from rich.console import Console
from rich.table import Table

from offload_rl.trace_stats import TraceStats, family_stats, trace_stats
from offload_rl.traces import DEFAULT_STEP_S, TRACE_FORMATS, TraceFormat, load_traces, write_cooked


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("traces", help="trace statistics and synthetic traces")
    sub = parser.add_subparsers(dest="traces_command", metavar="ACTION", required=True)

    stats = sub.add_parser(
        "stats",
        help="1-second statistics per trace and per family",
        description="1-second statistics per trace and per family (a family pools all its "
        "seconds; its lag-1 AC is the median over its traces; mahimahi .up and .down files are "
        "separate families).",
    )
    stats.add_argument("paths", nargs="+", metavar="PATH", help="trace files or folders")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.add_argument(
        "--format", choices=TRACE_FORMATS, default="auto", help="file format (default: auto)"
    )
    stats.set_defaults(func=_stats)

    synth = sub.add_parser(
        "synth",
        help="write a synthetic trace (cooked format) from a preset",
        description="Generate a seeded synthetic trace from a fitted preset and write it in "
        "cooked format (time_s<TAB>Mbps).",
    )
    synth.add_argument("preset", help="preset name, e.g. nyc-lte or mahimahi-uplink")
    synth.add_argument("--duration", type=float, default=600.0, help="seconds (default: 600)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument(
        "--step", type=float, default=DEFAULT_STEP_S, help=f"seconds (default: {DEFAULT_STEP_S})"
    )
    synth.add_argument("--out", required=True, metavar="FILE", help="cooked file to write")
    synth.set_defaults(func=_synth)


def _row(s: TraceStats) -> list[str]:
    ac = "-" if s.lag1_autocorr is None else f"{s.lag1_autocorr:.2f}"
    return [
        f"{s.duration_s:.0f}",
        f"{s.mean_mbps:.3g}",
        f"{s.median_mbps:.3g}",
        f"{s.p10_mbps:.3g}",
        f"{s.p90_mbps:.3g}",
        f"{s.share_below_0_1:.1%}",
        ac,
    ]


def _table(title: str, first: list[str]) -> Table:
    table = Table(title=title)
    for name in first:
        table.add_column(name, overflow="fold")
    for name in ("seconds", "mean", "median", "p10", "p90", "< 0.1 Mbps", "lag-1 AC"):
        table.add_column(name, justify="right")
    return table


def _stats(args: argparse.Namespace) -> int:
    traces = load_traces(args.paths, fmt=cast(TraceFormat, args.format))
    per_trace = [trace_stats(t) for t in traces]
    families = family_stats(traces)
    if args.json:
        doc: dict[str, Any] = {
            "traces": [s.to_dict() for s in per_trace],
            "families": {name: s.to_dict() for name, s in families.items()},
        }
        print(json.dumps(doc, indent=2))
        return 0
    console = Console()
    table = _table("Traces (1-second statistics, Mbps)", ["trace", "family"])
    for s in per_trace:
        table.add_row(s.name, s.family, *_row(s))
    console.print(table)
    table = _table("Families (seconds pooled; lag-1 AC = median over traces)", ["family", "traces"])
    for name, s in families.items():
        table.add_row(name, str(s.n_traces), *_row(s))
    console.print(table)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from offload_rl.synthetic_traces import generate_trace

    trace = generate_trace(args.preset, args.duration, args.seed, step_s=args.step)
    write_cooked(trace, args.out)
    s = trace_stats(trace)
    print(
        f"wrote {args.out}: preset {args.preset}, seed {args.seed}, {trace.duration_s:g} s, "
        f"mean {s.mean_mbps:.3g} Mbps, {s.share_below_0_1:.1%} of seconds below 0.1 Mbps"
    )
    return 0
