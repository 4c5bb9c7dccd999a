"""``offload-rl validate``: check the simulator's latencies against a real split runtime.

    offload-rl validate --out runs/validate [--model gpt2] [--requests 24] [--repeats 3]
        [--traces synthetic:ghent-4g-lte*0.22 synthetic:wifi*0.5 | PATH[*SCALE] | constant:MBPS]
        [--rtt-ms 20] [--threads 1] [--splits 4,8] [--policy forced|greedy|http://127.0.0.1:8000]
        [--profile-method stack|profiler] [--reprofile]

torch and transformers are imported inside the handler only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from offload_rl.errors import ConfigError
from offload_rl.model_shapes import ArchSpec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--model", default="gpt2", help="architecture (gpt2, qwen2.5-0.5b, ...)")
    parser.add_argument("--requests", type=int, default=24, help="requests per trace")
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
        "--splits", default=None, help="middle splits, comma-separated (default L/3, 2L/3)"
    )
    parser.add_argument(
        "--policy",
        default="forced",
        help=(
            "forced (each session one split class, round robin, keep), a heuristic name, or "
            "the decision service's URL (its client falls back to greedy)"
        ),
    )
    parser.add_argument("--token-scale", type=float, default=0.25, help="workload lengths x")
    parser.add_argument("--max-new", type=int, default=512, help="prompt tokens at most")
    parser.add_argument("--max-out", type=int, default=64, help="output tokens at most")
    parser.add_argument("--seed", type=int, default=0)
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
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from validation.config import DEFAULT_TRACES, ValidationConfig
    from validation.run import run_validation

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")
    splits = None
    if args.splits:
        try:
            splits = [int(x) for x in args.splits.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"--splits must be comma-separated integers, got {args.splits!r}"
            ) from None
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
    cfg = ValidationConfig(
        out=args.out,
        model=model,
        requests=args.requests,
        traces=args.traces or DEFAULT_TRACES,
        repeats=args.repeats,
        seed=args.seed,
        threads=args.threads,
        rtt_ms=args.rtt_ms,
        token_scale=args.token_scale,
        max_new=args.max_new,
        max_out=args.max_out,
        middle_splits=splits,
        policy=args.policy,
        reprofile=args.reprofile,
        profile_method=args.profile_method,
        progress=None if args.quiet else (lambda message: print(message, flush=True)),
        **quick,
    )
    result = run_validation(cfg)
    overall = result["overall"]
    print((args.out / "validation.md").read_text())
    print(
        f"overall: median {overall['median_abs_pct_error_total']:.1f}%, p90 "
        f"{overall['p90_abs_pct_error_total']:.1f}% absolute error of total latency; "
        f"wrote validation.json, validation.md, scatter.png to {args.out}"
    )
    return 0
