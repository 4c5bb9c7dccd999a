"""``offload-rl validate``: check the simulator's latencies against a real split runtime.

    offload-rl validate --out runs/validate [--model gpt2] [--requests 24] [--repeats 3]
        [--traces synthetic:ghent-4g-lte*0.22 synthetic:wifi*0.5 | PATH[*SCALE] | constant:MBPS]
        [--rtt-ms 20] [--threads 1] [--splits 4,8] [--policy forced|greedy|http://127.0.0.1:8000]
        [--profile-method stack|profiler] [--reprofile]
    offload-rl validate --cell --out runs/validate-cell [--devices 4] [--requests 8]
        [--gaps 0,2] [--pool-tokens 1536] [--max-num-batched-tokens 256] [--max-num-seqs 64]
        [--policy service|forced] [--splits 0,4,8] [--runs 4] [--same-streams] [--pin-edge]
    offload-rl validate --cell --diff-schedule DIR    # a stored run: do the schedulers agree?
    offload-rl validate --cell --rescore DIR [--rescore-profile FILE] [--out NEW]  # today's replay
    offload-rl validate --cell --repeatability DIR [DIR ...]  # runs against their repeats

torch and transformers are imported inside the handler only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from offload_rl.errors import ConfigError
from offload_rl.model_shapes import ArchSpec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``offload-rl validate``; the options come in groups so that each stays readable."""
    parser = subparsers.add_parser(
        "validate",
        help="replay requests through a real split runtime and compare with the simulator",
        description=(
            "Measure a profile here (threads per process as the runtime uses, cached in --out), "
            "replay requests of the default workload through a device process and an edge "
            "process (real transformers layers, random weights) over loopback TCP paced to "
            "traces, predict the same requests with the simulator's cost model, and write "
            "validation.json, validation.md and scatter.png to --out."
        ),
    )
    _add_replay_options(parser)
    _add_profile_options(parser)
    _add_cell_options(parser)
    parser.set_defaults(func=_run)


def _add_replay_options(parser: argparse.ArgumentParser) -> None:
    """The single-device replay's options: what is replayed, over which links, by which policy."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (required unless --cell with --diff-schedule or --rescore)",
    )
    parser.add_argument("--model", default="gpt2", help="architecture (gpt2, qwen2.5-0.5b, ...)")
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help="requests per trace (default 24); with --cell per device and load level (default 8)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="replays of each stream (median measured)"
    )
    parser.add_argument(
        "--traces",
        nargs="+",
        default=None,
        metavar="SPEC",
        help=(
            "synthetic:<preset>[*uplink_scale], constant:<mbps>, or a trace file/folder "
            "[*uplink_scale] (default: synthetic:ghent-4g-lte*0.22 synthetic:wifi*0.5)"
        ),
    )
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="device-edge RTT (ms)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--splits",
        default=None,
        help=(
            "middle splits, comma-separated (default L/3, 2L/3); with --cell: the splits a "
            "request may get, 0 = token ids (default 0; forced draws one per session)"
        ),
    )
    parser.add_argument(
        "--policy",
        default=None,
        help=(
            "forced (each session one split class, round robin, keep), a heuristic name, or "
            "the decision service's URL (its client falls back to greedy); with --cell: "
            "service (default: offload-rl serve --edge-push beside the cell) or forced "
            "(keep, each session at a split drawn from --splits)"
        ),
    )
    parser.add_argument("--token-scale", type=float, default=0.25, help="workload lengths x")
    parser.add_argument("--max-new", type=int, default=512, help="prompt tokens at most")
    parser.add_argument("--max-out", type=int, default=64, help="output tokens at most")
    parser.add_argument("--seed", type=int, default=0)


def _add_profile_options(parser: argparse.ArgumentParser) -> None:
    """How the model and its profile are built (smoke-run shortcuts, re-measurement, method)."""
    parser.add_argument(
        "--small",
        action="store_true",
        help="a shrunken model of the same architecture (2 layers, d_model 64): a smoke run",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a coarse profile (few points and repeats, no re-measurement): a smoke run",
    )
    parser.add_argument("--reprofile", action="store_true", help="measure the profile again")
    parser.add_argument(
        "--profile-method",
        choices=("stack", "profiler"),
        default="stack",
        help=(
            "stack (default): offload_rl.profiler's profile with the decoder re-timed inside "
            "the whole layer stack, as the runtime runs it; profiler: as offload_rl.profiler "
            "measures it (both are always reported when stack is chosen)"
        ),
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _add_cell_options(parser: argparse.ArgumentParser) -> None:
    """The --cell mode's options, in their own help group (K devices sharing one edge)."""
    cell = parser.add_argument_group(
        "cell (--cell): K devices sharing one continuously batching edge; --requests is per "
        "device and load level"
    )
    cell.add_argument(
        "--cell",
        action="store_true",
        help="validate EdgeCell-v0 against a cell of processes (batching, KV pool, preemption)",
    )
    cell.add_argument("--devices", type=int, default=4, help="device processes (default 4)")
    cell.add_argument(
        "--gaps",
        default="0,2",
        help="load levels: mean seconds between a device's requests, comma-separated "
        "(0: back to back; default 0,2)",
    )
    cell.add_argument(
        "--pool-tokens",
        type=int,
        default=None,
        help="the edge's KV pool in tokens of the whole model (default 1536: small, so that "
        "four devices fill it and preemption happens)",
    )
    cell.add_argument(
        "--batch-sizes",
        default="1,2,4,8",
        help="batch sizes the edge's batched profile is measured at (default 1,2,4,8)",
    )
    cell.add_argument("--max-num-batched-tokens", type=int, default=None)
    cell.add_argument("--max-num-seqs", type=int, default=None)
    cell.add_argument(
        "--runs",
        type=int,
        default=None,
        help="independent repeats of every load level (own streams and link offsets, one "
        "profile); validation.json pools them with a bootstrap interval over runs (default 4: "
        "~17 min on a quiet 2-core machine)",
    )
    cell.add_argument(
        "--same-streams",
        action="store_true",
        help="every repeat replays run 1's streams, link offsets and (as far as the service "
        "decides alike) decisions: validation.json then says how far the runtime is from its "
        "own repeats, the floor under any per-request prediction of it",
    )
    cell.add_argument(
        "--pin-edge",
        action="store_true",
        help="the edge process (and the profile) alone on the last CPU, the phones, service "
        "and driver on the others, as if the phones were other machines (Linux, >= 2 CPUs)",
    )
    cell.add_argument(
        "--repeatability",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="no run: how far stored validate --cell runs of the same settings are from each "
        "other (the same requests run the same way), beside the simulator's error on them",
    )
    cell.add_argument(
        "--diff-schedule",
        type=Path,
        default=None,
        metavar="DIR",
        help="no run: replay a validate --cell --out folder's edge logs through the "
        "simulator's scheduler in lockstep (the runtime's arrival times and measured "
        "iterations) and print the first iteration where they schedule differently; exit 1 "
        "if they do",
    )
    cell.add_argument(
        "--rescore",
        type=Path,
        default=None,
        metavar="DIR",
        help="no run: replay a stored validate --cell --out folder through today's simulator "
        "with the run's own profile and print its figures (with --out: write the files there)",
    )
    cell.add_argument(
        "--rescore-profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --rescore: price with this profile (e.g. another run's) instead of the run's",
    )


def _run(args: argparse.Namespace) -> int:
    from validation.config import ValidationConfig
    from validation.run import run_validation

    if args.cell and (args.diff_schedule or args.rescore or args.repeatability):
        return _from_stored(args)
    if args.out is None:
        raise ConfigError("--out is required (the output folder)")
    if args.cell:
        return _run_cell(args)
    if args.policy is None:
        args.policy = "forced"
    splits = None
    if args.splits:
        try:
            splits = [int(x) for x in args.splits.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--splits must be comma-separated integers, got {args.splits!r}"
            ) from None
    cfg = ValidationConfig(
        requests=args.requests if args.requests is not None else 24,
        repeats=args.repeats,
        middle_splits=splits,
        policy=args.policy,
        **_common(args),
    )
    result = run_validation(cfg)
    _print_result(args.out, result, "scatter.png")
    return 0


def _common(args: argparse.Namespace) -> dict[str, Any]:
    """The checks and settings both validations share (their configs' common fields)."""
    from validation.config import DEFAULT_TRACES

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")
    if args.rtt_ms < 0:
        raise ConfigError(f"--rtt-ms must be >= 0, got {args.rtt_ms}")
    if not args.token_scale > 0:
        raise ConfigError(f"--token-scale must be > 0, got {args.token_scale}")
    model: str | ArchSpec = args.model
    if args.small:
        from validation.runtime.model import small_arch

        model = small_arch(args.model)
    quick: dict[str, Any] = {}
    if args.quick:
        quick = {
            "quiet_budget_s": 0.0,
            "profile_repeats": 2,
            "profile_retries": 0,
            "profile_min_point_s": 0.02,
        }
    return {
        "out": args.out,
        "model": model,
        "traces": args.traces or DEFAULT_TRACES,
        "seed": args.seed,
        "threads": args.threads,
        "rtt_ms": args.rtt_ms,
        "token_scale": args.token_scale,
        "max_new": args.max_new,
        "max_out": args.max_out,
        "reprofile": args.reprofile,
        "profile_method": args.profile_method,
        "progress": None if args.quiet else (lambda message: print(message, flush=True)),
        **quick,
    }


def _print_result(out: Path, result: dict[str, Any], plots: str) -> None:
    overall = result["overall"]
    print((out / "validation.md").read_text())
    print(
        f"overall: median {_pct(overall['median_abs_pct_error_total'])}, p90 "
        f"{_pct(overall['p90_abs_pct_error_total'])} absolute error of total latency; wrote "
        f"validation.json, validation.md, {plots} to {out}"
    )


def _from_stored(args: argparse.Namespace) -> int:
    """``--diff-schedule DIR`` and ``--rescore DIR``: diagnostics of a stored cell run."""
    from validation.cell_report import markdown, write_cell_outputs
    from validation.cell_rescore import rescore_run
    from validation.schedule_diff import all_agree, diff_run_folder

    stored = [("--diff-schedule", args.diff_schedule), ("--rescore", args.rescore)]
    stored += [("--repeatability", path) for path in args.repeatability or []]
    for flag, path in stored:
        if path is not None and not path.is_dir():
            raise ConfigError(f"{flag} {path}: not a folder")
    status = 0
    if args.repeatability is not None:
        print("\n".join(_repeatability_lines(args.repeatability)))
    if args.diff_schedule is not None:
        diffs, lines = diff_run_folder(args.diff_schedule)
        print("\n".join(lines))
        status = 0 if all_agree(diffs) else 1
    if args.rescore is not None:
        result = rescore_run(args.rescore, args.rescore_profile)
        if args.out is not None:
            write_cell_outputs(result, args.out)
        print(markdown(result))
    return status


def _repeatability_lines(folders: list[Path]) -> list[str]:
    """``--repeatability DIR ...``: the runtime against itself over stored validations."""
    from validation.repeatability import markdown_lines, repeatability_of_results

    results = []
    for folder in folders:
        path = folder / "validation.json"
        if not path.is_file():
            raise ConfigError(f"--repeatability {folder}: no validation.json (not a --out folder)")
        try:
            results.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    rep = repeatability_of_results(results)
    if rep is None:
        raise ConfigError(
            f"--repeatability: no request ran the same way in two runs of {len(folders)} "
            "folder(s) (different settings or seeds; one folder needs --same-streams)"
        )
    return markdown_lines(rep, f"The runtime against itself over {len(folders)} validation(s)")


def _run_cell(args: argparse.Namespace) -> int:
    from validation import cell_config as defaults
    from validation.cell_config import CellValidationConfig, check_cell_config, check_cell_splits
    from validation.cell_run import run_cell_validation
    from validation.runtime.model import resolve_arch

    try:
        gaps = [float(x) for x in args.gaps.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--gaps must be comma-separated seconds, got {args.gaps!r}") from None
    try:
        batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}"
        ) from None
    optional = {
        key: value
        for key, value in (
            ("pool_tokens", args.pool_tokens),
            ("max_num_batched_tokens", args.max_num_batched_tokens),
            ("max_num_seqs", args.max_num_seqs),
        )
        if value is not None
    }
    if args.splits:
        try:
            optional["splits"] = [int(x) for x in args.splits.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--splits must be comma-separated integers, got {args.splits!r}"
            ) from None
    cfg = CellValidationConfig(
        requests=args.requests if args.requests is not None else defaults.DEFAULT_REQUESTS,
        policy=args.policy or "service",
        devices=args.devices,
        gaps_s=gaps,
        runs=args.runs if args.runs is not None else defaults.DEFAULT_RUNS,
        same_streams=args.same_streams,
        pin_edge=args.pin_edge,
        batch_sizes=batch_sizes,
        **optional,
        **_common(args),
    )
    check_cell_config(cfg)
    check_cell_splits(cfg, resolve_arch(cfg.model).shape.n_layers)
    result = run_cell_validation(cfg)
    _print_result(args.out, result, "scatter.png, iterations.png")
    return 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}%"
