"""Shared fixtures: the recorded traces and workloads in ``../shared`` (skip when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFFLOAD_RL_SHARED", REPO_ROOT.parent / "shared"))
TRACES = SHARED / "traces"
WORKLOADS = SHARED / "workloads"


@pytest.fixture()
def shared_traces() -> Path:
    if not TRACES.is_dir():
        pytest.skip(f"needs recorded traces in {TRACES} (absent on this machine)")
    return TRACES


@pytest.fixture()
def shared_workloads() -> Path:
    if not WORKLOADS.is_dir():
        pytest.skip(f"needs recorded workloads in {WORKLOADS} (absent on this machine)")
    return WORKLOADS
