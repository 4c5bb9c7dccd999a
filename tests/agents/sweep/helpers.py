"""A two-trial sweep of tiny trainings (seconds each) that needs nothing from ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# Ray 2.60 authenticates with a token; one of the test's own, for the head and the sweep alike
# (not the user's ~/.ray/auth_token)
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex,
}

# ~6k env steps of a 16-unit net: long enough (seconds) that a worker can be killed between the
# first checkpoint (256 steps) and the end, short enough for the suite
TINY_TRAIN = """\
scenario: default
total_timesteps: 6144
n_envs: 1
vec_env: dummy
episode_requests: 64
checkpoint_every: 256
eval_every: 100000
eval_episodes: 1
eval_requests: 32
heuristics: [greedy]
ppo: {n_steps: 128, batch_size: 64, n_epochs: 1, net_arch: [16]}
"""

# two trials that train, and two whose scenario file is missing: they fail on their own, at
# run time, and must be reported while the others carry on
TINY_SWEEP = """\
configs: [train_tiny.yaml]
seeds: [0, 1]
grid: {scenario: [default, missing-scenario.yaml]}
evaluate: {policies: [greedy], episodes: 1, select_on_train: [greedy, greedy-last]}
resources: {cpu: 1}
max_concurrent: 2
max_failures: 2
"""


def write_sweep(folder: Path, text: str = TINY_SWEEP, name: str = "tiny.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_tiny.yaml").write_text(TINY_TRAIN)
    path = folder / name
    path.write_text(text)
    return path


def sweep_process(sweep: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """``offload-rl sweep`` in a process of its own (Ray's driver state stays out of pytest)."""
    env = {**os.environ, **RAY_ENV, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "offload_rl", "sweep", "--config", str(sweep), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str]:
    """Exit status and output (the timeout is a guard against a hang, not a speed check)."""
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"sweep did not finish in {timeout} s:\n{output[-4000:]}") from None
    return proc.returncode, output


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen[str] | None = None):
    """Poll ``predicate`` until it returns something truthy (a guard timeout, not a check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sweep exited before {what}:\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
