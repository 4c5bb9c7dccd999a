"""Running ``offload-rl profile`` as a user does, for the profiler's tests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs the 'profile' extra")

# Runs the real `offload_rl.cli.main` (its error handling, exit codes) with only this command
# registered, so the test does not depend on sibling commands being importable.
CLI = (
    "import sys, offload_rl.cli as c;"
    "c.COMMAND_MODULES = tuple(m for m in c.COMMAND_MODULES if m.rsplit('.', 1)[-1] == 'profile');"
    "sys.exit(c.main(sys.argv[1:]))"
)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "profile", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def shown_text(profile: Any, tmp_path: Path) -> str:
    """``offload-rl profile show`` of ``profile`` saved under ``tmp_path``: its output with the
    whitespace collapsed (the table wraps with the terminal's width)."""
    path = tmp_path / "shown.json"
    profile.save(path)
    shown = run_cli("show", str(path))
    assert shown.returncode == 0, shown.stderr
    return " ".join(shown.stdout.split())
