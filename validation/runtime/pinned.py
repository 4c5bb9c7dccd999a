"""Run a Python module on a set of CPUs: ``python -m validation.runtime.pinned --cpus 1 -- ARGS``.

``offload-rl validate --cell --pin-edge`` gives the edge process a CPU of its own and the
emulated phones, the decision service and the driver the others: in the deployment validated,
the phones are other machines and do not share the edge's CPU. The affinity is set before
``exec``, so every thread the program starts later (torch's included) inherits it, which
setting it on a running process from outside would not do (Linux applies it per thread).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_cpus(text: str) -> set[int]:
    """``"0,2"`` -> ``{0, 2}``."""
    return {int(c) for c in text.split(",") if c.strip()}


def command(cpus: set[int], args: list[str]) -> list[str]:
    """The command line that runs ``python ARGS`` on ``cpus``."""
    spec = ",".join(str(c) for c in sorted(cpus))
    return [sys.executable, "-m", "validation.runtime.pinned", "--cpus", spec, "--", *args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", required=True, help="comma-separated CPU numbers")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then python's arguments")
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    if not args:
        parser.error("nothing to run after --")
    os.sched_setaffinity(0, parse_cpus(ns.cpus))
    os.execv(sys.executable, [sys.executable, *args])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
