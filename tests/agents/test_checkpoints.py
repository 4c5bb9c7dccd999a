"""Which checkpoint folder ``--resume`` continues from: the run's newest training state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.checkpoints import (
    CHECKPOINT_FILES,
    CHECKPOINTS_DIR,
    FINAL_DIR,
    META_FILE,
    META_FORMAT,
    checkpoint_name,
    newest_state,
)
from agents.training.checkpointing import resolve_resume
from offload_rl.errors import ConfigError


def fake_checkpoint(folder: Path, num_timesteps: int) -> Path:
    """A complete checkpoint folder whose ``meta.json`` records ``num_timesteps``."""
    folder.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        (folder / name).write_bytes(b"")
    meta = {"format": META_FORMAT, "num_timesteps": num_timesteps}
    (folder / META_FILE).write_text(json.dumps(meta))
    return folder


def periodic(run: Path, step: int) -> Path:
    return fake_checkpoint(run / CHECKPOINTS_DIR / checkpoint_name(step), step)


def test_finished_run_resumes_from_final_not_its_last_periodic_checkpoint(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    periodic(run, 256)
    periodic(run, 512)
    final = fake_checkpoint(run / FINAL_DIR, 1024)
    assert newest_state(run) == final
    assert resolve_resume(run) == (run, final)


def test_run_resumed_past_its_end_and_killed_resumes_from_the_newer_checkpoint(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    periodic(run, 512)
    fake_checkpoint(run / FINAL_DIR, 1024)  # the first run's end
    newer = periodic(run, 1536)  # the resumed run, killed before writing final/ again
    assert resolve_resume(run) == (run, newer)


@pytest.mark.parametrize("steps", [[], [512], [256, 1024]])
def test_final_wins_a_tie_and_stands_alone(tmp_path: Path, steps: list[int]) -> None:
    run = tmp_path / "run"
    for step in steps:
        periodic(run, step)
    final = fake_checkpoint(run / FINAL_DIR, 1024)
    assert resolve_resume(run) == (run, final)


def test_incomplete_final_is_ignored(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = periodic(run, 512)
    fake_checkpoint(run / FINAL_DIR, 1024)
    (run / FINAL_DIR / CHECKPOINT_FILES[0]).unlink()  # a final/ that lost a file
    assert resolve_resume(run) == (run, ckpt)


def test_run_without_any_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    assert newest_state(tmp_path / "run") is None
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        resolve_resume(tmp_path / "run")


def test_an_explicit_checkpoint_folder_is_taken_as_given(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ckpt = periodic(run, 512)
    fake_checkpoint(run / FINAL_DIR, 1024)
    assert resolve_resume(ckpt) == (run, ckpt)
