"""Shared set-up of the serving tests: the session's tiny policy and variants of it."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import onnx

from serving.policy_file import read_metadata, set_metadata
from tests.tiny_model import tiny_policy

TOKEN = "test-token-1234"


def policy_file(tmp_path_factory) -> Path:
    return tiny_policy(tmp_path_factory.getbasetemp())


def live_copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def variant(src: Path, dst: Path, **changes: str) -> Path:
    """The same graph with changed metadata and a matching hash: another valid version (or an
    incompatible one, depending on ``changes``)."""
    model = onnx.load(str(src))
    set_metadata(model, {**read_metadata(model), **changes})
    tmp = dst.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dst)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
