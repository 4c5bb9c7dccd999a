"""The ``offload-rl`` command line.

This module is the composition root: it wires together sub-commands that live beside the code
they drive (``offload_rl.commands``, ``agents.commands``, ``validation.commands``,
``serving.commands``) and turns user errors into one clear line on stderr with a non-zero exit
status. Command modules only register arguments at import time; heavy dependencies (torch,
gymnasium, onnxruntime) are imported inside their handlers, so ``offload-rl serve`` never loads
torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from offload_rl import __version__
from offload_rl.errors import OffloadRLError

# Sub-command modules, in the order `--help` lists them. Each exposes `register(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = (
    "offload_rl.commands.traces",
    "offload_rl.commands.workload",
    "offload_rl.commands.profile",
    "offload_rl.commands.scenario",
    "agents.commands.evaluate",
    "agents.commands.train",
    "agents.commands.export",
    "agents.commands.sweep",
    "validation.commands.validate",
    "serving.commands",
)

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (imports every command module, but not their heavy deps)."""
    parser = argparse.ArgumentParser(
        prog="offload-rl",
        description="Decide where LLM inference runs at the mobile edge (device / edge / cloud).",
    )
    parser.add_argument("--version", action="version", version=f"offload-rl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except OffloadRLError as err:
        print(f"offload-rl: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("offload-rl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
