"""The ``offload-rl`` command line.

Sub-commands live in :mod:`offload_rl.commands`; this module only wires them together and turns
user errors into one clear line on stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from offload_rl import __version__
from offload_rl.errors import OffloadRLError

# Sub-command modules under offload_rl.commands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "traces",
    "workload",
    "profile",
    "scenario",
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
        module = importlib.import_module(f"offload_rl.commands.{name}")
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
