"""``offload-rl sweep`` on a real Ray: a head started with ``ray start`` (``--address``) with a
worker killed mid-trial, and an embedded local Ray with ``--resume``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.checkpoints import latest_checkpoint
from tests.agents.sweep.helpers import (
    RAY_ENV,
    REPO,
    TINY_SWEEP,
    finish,
    sweep_process,
    wait_for,
    write_sweep,
)

pytest.importorskip("ray", reason="the sweep extra (Ray) is not installed")

pytestmark = pytest.mark.slow

TRAINED = ("tiny/scenario=default/seed0", "tiny/scenario=default/seed1")
BROKEN = ("tiny/scenario=missing-scenario.yaml/seed0", "tiny/scenario=missing-scenario.yaml/seed1")


def _record(out: Path, trial_id: str) -> dict:
    try:
        return json.loads((out / "trials" / trial_id / "trial.json").read_text())
    except (OSError, ValueError):
        return {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A Ray head with 2 CPUs, in a temporary folder, joined at 127.0.0.1; stopped after.

    ``ray start --block`` stays in the foreground and shuts its processes down on SIGTERM, so
    the test stops exactly this head (``ray stop`` would stop every Ray on the machine).
    """
    temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths
    port = _free_port()
    ray_bin = Path(sys.executable).parent / "ray"
    start = [str(ray_bin), "start", "--head", "--block", "--num-cpus", "2", "--port", str(port)]
    head = subprocess.Popen(
        [*start, "--temp-dir", str(temp), "--include-dashboard", "false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **RAY_ENV},
    )
    try:
        wait_for(lambda: (temp / "ray_current_cluster").is_file(), 180, "the Ray head")
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        with contextlib.suppress(ProcessLookupError):  # what is left of this head's group
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _check_outcome(out: Path, output: str) -> None:
    """Both trainings finished, both broken trials reported with their error, summary written."""
    for trial_id in TRAINED:
        record = _record(out, trial_id)
        assert record["status"] == "finished", (trial_id, record, output[-3000:])
        run = out / "trials" / trial_id / "run"
        assert (run / "summary.json").is_file() and (run / "final" / "model.zip").is_file()
        metrics = json.loads((out / "trials" / trial_id / "eval" / "metrics.json").read_text())
        assert f"sb3:{run}" in metrics["policies"] and "greedy" in metrics["policies"]
        assert set(record["metrics"]["train"]) == {"greedy", "greedy-last"}
    for trial_id in BROKEN:
        record = _record(out, trial_id)
        assert record["status"] == "error", record
        assert "missing-scenario.yaml" in record["error"]
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["counts"] == {"finished": 2, "error": 2}
    assert "missing-scenario.yaml" in (out / "results.md").read_text()


def test_sweep_on_a_cluster_retries_a_killed_worker_from_its_checkpoint(ray_head, tmp_path):
    sweep = write_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    proc = sweep_process(sweep, out, "--address", ray_head)

    def running_with_checkpoint() -> tuple[str, int] | None:
        for trial_id in TRAINED:
            record = _record(out, trial_id)
            run = out / "trials" / trial_id / "run"
            if (
                record.get("status") == "running"
                and len(record.get("attempts", [])) == 1
                and latest_checkpoint(run) is not None
                and not (run / "summary.json").exists()
            ):
                return trial_id, record["attempts"][0]["pid"]
        return None

    trial_id, pid = wait_for(running_with_checkpoint, 300, "a checkpoint of a running trial", proc)
    os.kill(pid, signal.SIGKILL)  # the Ray worker process that runs the trial
    code, output = finish(proc)

    record = _record(out, trial_id)
    assert code == 1, output[-3000:]  # the broken trials make the sweep's exit status 1
    assert len(record["attempts"]) == 2, record
    assert record["attempts"][1]["pid"] != pid
    resumed = record["attempts"][1]["resumed_from"]
    assert resumed is not None and resumed >= 256, record
    summary = json.loads((out / "trials" / trial_id / "run" / "summary.json").read_text())
    assert summary["resumed_from"] is not None and summary["num_timesteps"] >= 6144
    assert "retrying from its last checkpoint" in output
    _check_outcome(out, output)


def test_sweep_on_embedded_ray_then_resume(tmp_path):
    # nothing is killed here: shorter runs (the sweep's own timesteps override)
    sweep = write_sweep(tmp_path / "sweep", TINY_SWEEP + "timesteps: 2048\n")
    out = tmp_path / "out"
    code, output = finish(sweep_process(sweep, out))
    assert code == 1, output[-3000:]
    _check_outcome(out, output)
    for trial_id in TRAINED:
        assert len(_record(out, trial_id)["attempts"]) == 1

    # the same folder again without --resume: refused, nothing touched
    code, output = finish(sweep_process(sweep, out), timeout=300)
    assert code == 2 and "--resume" in output, output[-2000:]

    # a sweep killed mid-trial: seed1 left running, its run without final/ and summary.json
    killed = out / "trials" / TRAINED[1]
    record = _record(out, TRAINED[1])
    (killed / "trial.json").write_text(json.dumps({**record, "status": "running"}))
    shutil.rmtree(killed / "run" / "final")
    (killed / "run" / "summary.json").unlink()
    last = max(int(c.name.removeprefix("step_")) for c in (killed / "run/checkpoints").iterdir())

    code, output = finish(sweep_process(sweep, out, "--resume"))
    assert code == 1, output[-3000:]
    _check_outcome(out, output)
    assert len(_record(out, TRAINED[0])["attempts"]) == 1  # finished: skipped
    attempts = _record(out, TRAINED[1])["attempts"]
    assert len(attempts) == 2 and attempts[1]["resumed_from"] == last
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["skipped_finished"] == [TRAINED[0]]
    assert REPO.is_dir()
