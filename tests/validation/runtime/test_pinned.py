"""``--pin-edge``: the launcher pins before exec, the placement splits the CPUs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from offload_rl.errors import ConfigError
from validation import cell_config, cell_run
from validation.cell_config import CellValidationConfig, check_cell_config
from validation.cell_run import Placement
from validation.runtime import pinned

can_pin = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only"
)


@can_pin
def test_the_launcher_runs_python_on_the_cpus_given() -> None:
    cpu = max(os.sched_getaffinity(0))
    cmd = pinned.command({cpu}, ["-c", "import os; print(sorted(os.sched_getaffinity(0)))"])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"[{cpu}]"


def test_the_launcher_needs_something_to_run() -> None:
    cmd = [sys.executable, "-m", "validation.runtime.pinned", "--cpus", "0", "--"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2 and "nothing to run" in done.stderr


def test_the_edge_gets_the_last_cpu_and_the_others_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cell_run, "usable_cpus", lambda: {0, 1, 2})
    place = Placement.of(CellValidationConfig(out=tmp_path, pin_edge=True))
    assert place.as_json() == {"edge_cpus": [2], "other_cpus": [0, 1]}
    assert place.python("edge", ["-m", "x"])[-5:] == ["--cpus", "2", "--", "-m", "x"]
    assert place.python("device", ["-m", "x"])[-5:] == ["--cpus", "0,1", "--", "-m", "x"]
    free = Placement.of(CellValidationConfig(out=tmp_path))
    assert free.as_json() is None and free.python("edge", ["-m", "x"]) == [
        sys.executable,
        "-m",
        "x",
    ]


def test_pinning_on_one_cpu_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cell_config, "usable_cpus", lambda: {0})
    with pytest.raises(ConfigError, match="--pin-edge"):
        check_cell_config(CellValidationConfig(out=tmp_path, pin_edge=True))
