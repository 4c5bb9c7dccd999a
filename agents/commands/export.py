"""``offload-rl export``: a trained MaskablePPO to one ONNX file the service can serve.

    offload-rl export RUN_OR_ZIP --out policy.onnx [--parity 10000] [--scenario S] [--seed 0]
                     [--accept-unverified-statistics]

torch and stable-baselines3 are imported inside the handler only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

UNVERIFIED_FLAG = "--accept-unverified-statistics"  # named in agents.export's refusal


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained policy to ONNX (normalisation and masking in the graph)",
        description=(
            "Export RUN/final (or a model folder, or its model.zip) to one ONNX file: inputs obs "
            "(float32 [batch, obs_dim], raw encoder output) and mask (bool [batch, n_actions]), "
            "outputs action (int64) and masked logits. Writes nothing unless the normalisation "
            "statistics match what training recorded (vecnormalize.pkl, the digest in "
            "meta.json) and the ONNX actions equal model.predict(..., deterministic=True) on "
            "every parity observation."
        ),
    )
    parser.add_argument(
        "source", metavar="RUN_OR_ZIP", help="run folder, model folder or model.zip"
    )
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument(
        "--parity",
        type=int,
        default=10_000,
        metavar="N",
        help="observations in the parity check (default 10000; 30%% from the environment)",
    )
    parser.add_argument(
        "--scenario", default=None, help="scenario for the check (default: the run's meta.json)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the parity set")
    parser.add_argument(
        UNVERIFIED_FLAG,
        action="store_true",
        help=(
            "export a model whose normalisation statistics nothing can check (no "
            "vecnormalize.pkl and no digest in meta.json: trained before the digest existed)"
        ),
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agents.export import export_policy

    report = export_policy(
        args.source,
        args.out,
        parity=args.parity,
        seed=args.seed,
        scenario=args.scenario,
        accept_unverified=args.accept_unverified_statistics,
    )
    print(
        f"wrote {report.path} ({report.size_bytes} bytes), version {report.version[:12]}; "
        f"statistics checked against {report.statistics}; "
        f"parity: {report.parity_checked} observations ({report.parity_env} from the "
        "environment), all actions equal to model.predict"
    )
    return 0
