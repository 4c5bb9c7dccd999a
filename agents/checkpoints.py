"""Checkpoint folders of a training run: written atomically, found again after a crash.

A checkpoint is a folder holding exactly three files::

    model.zip          MaskablePPO (weights and optimiser state, SB3's format)
    vecnormalize.pkl   the VecNormalize wrapper with its running observation statistics
    meta.json          what a loader needs without unpickling anything: scenario reference,
                       feature spec, action meanings, normalisation statistics, step, config

The files are written into a hidden temporary folder beside the target, flushed to disk, and
the folder is renamed into place, so a ``kill -9`` at any moment leaves either the complete
checkpoint or no checkpoint (plus a hidden ``.tmp-*`` folder that :func:`latest_checkpoint`
ignores and :func:`remove_stale_temporaries` deletes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from offload_rl.errors import ConfigError

MODEL_FILE = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.pkl"
META_FILE = "meta.json"
CHECKPOINT_FILES: tuple[str, ...] = (MODEL_FILE, VECNORMALIZE_FILE, META_FILE)

CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"
BEST_DIR = "best"  # the checkpoint with the best validation reward so far
META_FORMAT = "offload-rl/sb3-checkpoint"
META_FORMAT_VERSION = 1

_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_name(num_timesteps: int) -> str:
    return f"step_{num_timesteps}"


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds all three checkpoint files."""
    return folder.is_dir() and all((folder / f).is_file() for f in CHECKPOINT_FILES)


def write_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write(tmp)`` fill a temporary folder, then rename it to ``target``.

    An existing ``target`` (a run resumed past its earlier end writes ``final/`` again) is
    replaced: it is moved aside first and deleted after the new folder is in place.
    """
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".tmp-{target.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write(tmp)
    missing = [f for f in CHECKPOINT_FILES if not (tmp / f).is_file()]
    if missing:
        raise RuntimeError(f"checkpoint writer left out {missing}")
    for f in CHECKPOINT_FILES:
        _fsync(tmp / f)
    old: Path | None = None
    if target.exists():
        old = parent / f".old-{target.name}-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    tmp.rename(target)
    _fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first, as ``(num_timesteps, folder)``."""
    folder = run_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and is_complete(child):
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or ``None``."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def newest_state(run_dir: Path) -> Path | None:
    """The folder holding a run's newest training state: ``final/`` or a periodic checkpoint.

    A finished run's ``final/`` is newer than its last periodic checkpoint, and a run resumed
    past its end and killed has periodic checkpoints newer than its old ``final/``: the step
    counter in ``meta.json`` decides (at equal steps, ``final/``). ``None`` when neither exists.
    """
    candidates = [(step, 0, folder) for step, folder in list_checkpoints(run_dir)]
    final = run_dir / FINAL_DIR
    if is_complete(final):
        meta = read_meta(final)
        step = int(meta.get("num_timesteps", -1)) if meta is not None else -1
        candidates.append((step, 1, final))
    return max(candidates)[2] if candidates else None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the hidden folders a killed writer left behind."""
    for parent in (run_dir / CHECKPOINTS_DIR, run_dir):
        if parent.is_dir():
            for child in parent.iterdir():
                if child.is_dir() and child.name.startswith((".tmp-", ".old-")):
                    shutil.rmtree(child, ignore_errors=True)


def find_model_dir(path: str | Path) -> Path:
    """The checkpoint folder that ``path`` designates.

    ``path`` may be a run folder (its ``final/``, else its newest complete checkpoint), a
    ``final/`` or ``step_N/`` folder, or a ``model.zip`` with ``vecnormalize.pkl`` beside it.
    """
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix != ".zip":
            raise ConfigError(f"{p}: expected a model.zip, a checkpoint folder or a run folder")
        return p.parent
    if not p.is_dir():
        raise ConfigError(f"{p}: no such model file or folder")
    if (p / MODEL_FILE).is_file():
        return p
    if is_complete(p / FINAL_DIR):
        return p / FINAL_DIR
    latest = latest_checkpoint(p)
    if latest is not None:
        return latest
    raise ConfigError(f"{p}: holds no {MODEL_FILE}, no complete final/ and no complete checkpoint")


def read_meta(folder: Path) -> dict[str, Any] | None:
    """``meta.json`` of a checkpoint folder, or ``None`` when it has none."""
    path = folder / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable checkpoint metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise ConfigError(f"{path}: not an offload-rl checkpoint meta.json")
    return meta
