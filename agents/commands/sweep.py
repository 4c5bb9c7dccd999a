"""``offload-rl sweep``: many train + evaluate trials on Ray (local, or an existing cluster).

    offload-rl sweep --config experiments/sweeps/results_table.yaml [--out DIR]
        [--address HOST:PORT] [--resume]

Ray (the ``sweep`` extra) is imported inside the handler only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from offload_rl.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a sweep of training + evaluation trials on Ray (seeds, configs, search)",
        description=(
            "Expand a sweep file (configs x grid x search samples x seeds) into trials and run "
            "each as `offload-rl train` + `offload-rl evaluate` on Ray: an embedded local Ray, "
            "or the cluster at --address. Writes OUT/trials/<id>/{run,eval,select}, "
            "OUT/results.json and OUT/results.md; `tensorboard --logdir OUT/trials` shows every "
            "trial. A trial whose worker dies is retried from its last checkpoint; --resume "
            "skips finished trials and continues the others from their checkpoints."
        ),
    )
    parser.add_argument("--config", type=Path, required=True, help="sweep file (YAML)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: runs/sweeps/<file name>)"
    )
    parser.add_argument(
        "--address",
        default=None,
        help="join the Ray cluster at this address (e.g. 10.0.0.1:6379); default: local Ray",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the sweep already in the output folder"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("offload-rl sweep needs Ray: pip install 'offload-rl[sweep]'") from None
    from agents.sweep.driver import run_sweep
    from agents.sweep.summary import RESULTS_MD

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")
    outcome = run_sweep(
        args.config,
        args.out,
        address=args.address,
        resume=args.resume,
        command="offload-rl " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    print((outcome.out / RESULTS_MD).read_text())
    return 0 if outcome.all_finished else 1
