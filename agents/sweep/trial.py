"""One trial: the project's own train + evaluate, resumable, never raising.

::

    OUT/trials/<id>/config.yaml   the trial's training config (agents.sweep.plan)
    OUT/trials/<id>/run/          exactly what ``offload-rl train --out`` writes (tb/, checkpoints/,
                                  final/, summary.json, ...)
    OUT/trials/<id>/eval/         exactly what ``offload-rl evaluate --out`` writes: the trained
                                  agent beside the sweep's policies on the held-out traces
    OUT/trials/<id>/select/       the same, for the ``select_on_train`` heuristics on the
                                  training traces (a table chooses among them here)
    OUT/trials/<id>/trial.json    status, error, attempts (pid, host, resumed step), wall and
                                  CPU seconds
    OUT/trials/<id>/trial.log     the training log

A trial that finds its record finished returns it (``--resume``; or a retry that came after
the work was done). Otherwise training continues from the run's newest complete checkpoint
when there is one (a worker killed mid-run), and starts afresh when there is none. An
exception of the trial's own (a bad model, a missing trace) is recorded with its message and
returned as an ``error`` outcome, so the scheduler's retries are kept for dead workers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.sweep.config import EvaluationConfig
from agents.sweep.plan import TRIAL_CONFIG, TrialSpec, trial_dir

RUN_DIR = "run"
EVAL_DIR = "eval"
SELECT_DIR = "select"
TRIAL_FILE = "trial.json"
TRIAL_LOG = "trial.log"

FINISHED = "finished"
ERROR = "error"  # the trial's own failure (an exception in train or evaluate)
RUNNING = "running"  # a record left like this was killed, or is running now
FAILED = "failed"  # the scheduler gave up (its worker died more than max_failures times)


def read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / TRIAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """Atomically: a reader (the sweep's summary, a test) never sees half a file."""
    tmp = folder / f".{TRIAL_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(folder / TRIAL_FILE)


def run_trial(
    spec: TrialSpec,
    out: Path,
    evaluation: EvaluationConfig | None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one trial (see the module docstring); returns its record."""
    folder = trial_dir(out, spec.trial_id)
    record = read_record(folder) or {}
    if record.get("status") == FINISHED:
        return record
    started, cpu_started = time.perf_counter(), time.process_time()
    record.update({**spec.to_dict(), "status": RUNNING, "error": None})
    attempts = record.setdefault("attempts", [])
    attempt: dict[str, Any] = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    attempts.append(attempt)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = resume_point(folder / RUN_DIR)
    attempt["resumed_from"] = None if ckpt is None else int(ckpt.name.removeprefix("step_"))
    write_record(folder, record)
    with (folder / TRIAL_LOG).open("a") as log_file:

        def log(message: str) -> None:
            log_file.write(message + "\n")
            log_file.flush()
            if say is not None:
                say(f"{spec.trial_id}: {message}")

        try:
            train_trial(folder, ckpt, log)
            record["train_wall_s"] = time.perf_counter() - started
            if evaluation is not None:
                record["metrics"] = evaluate_trial(folder, evaluation)
            record["status"] = FINISHED
        except Exception as err:
            log(traceback.format_exc())
            record["status"], record["error"] = ERROR, f"{type(err).__name__}: {err}"
    record["wall_s"] = record.get("wall_s", 0.0) + time.perf_counter() - started
    # CPU seconds of this process (summed over attempts that got this far): what a trial costs
    # on a cluster, whatever the load of the machine it ran on
    record["cpu_s"] = record.get("cpu_s", 0.0) + time.process_time() - cpu_started
    write_record(folder, record)
    return record


def resume_point(run: Path) -> Path | None:
    """The checkpoint a killed run continues from (``None``: start afresh, or already done)."""
    from agents.checkpoints import latest_checkpoint

    return None if training_finished(run) else latest_checkpoint(run)


def training_finished(run: Path) -> bool:
    from agents.checkpoints import FINAL_DIR, is_complete
    from agents.train import SUMMARY_FILE

    return (run / SUMMARY_FILE).is_file() and is_complete(run / FINAL_DIR)


def train_trial(folder: Path, ckpt: Path | None, log: Callable[[str], None]) -> None:
    """Train the trial's run: continue it from ``ckpt``, start it, or keep a finished one."""
    from agents.train import train

    run = folder / RUN_DIR
    if training_finished(run):
        log(f"training already finished in {run}")
    elif ckpt is not None:
        log(f"resuming from {ckpt}")
        train(None, None, resume=run, log=log)
    else:
        if run.exists():  # killed before its first checkpoint: nothing to keep
            shutil.rmtree(run)
        train(folder / TRIAL_CONFIG, run, log=log)


def evaluate_trial(folder: Path, evaluation: EvaluationConfig) -> dict[str, Any]:
    """``eval/`` (agent + policies on the held-out traces) and ``select/`` (the
    ``select_on_train`` heuristics on the training traces); returns the mean rewards."""
    from agents.evaluate import evaluate, write_outputs
    from agents.train import CONFIG_FILE
    from agents.train_config import load_train_config

    run = folder / RUN_DIR
    config = load_train_config(run / CONFIG_FILE)
    train_scenario, held_out = config.scenarios()
    agent = f"sb3:{run}"
    held_out_policies = [agent, *evaluation.policies]
    held_out_policies += [p for p in evaluation.select_on_train if p not in held_out_policies]
    recorded = {
        "trial_config": str(folder / TRIAL_CONFIG),
        "episodes": evaluation.episodes,
        "seed": evaluation.seed,
    }
    metrics: dict[str, Any] = {"agent": agent}

    def run_eval(policies: list[str], scenario: Any, target: Path) -> dict[str, Any]:
        if target.exists():  # a killed attempt's partial outputs
            shutil.rmtree(target)
        result = evaluate(
            policies,
            scenario,
            episodes_per_family=evaluation.episodes,
            seed=evaluation.seed,
            args={**recorded, "policies": policies},
            loads=evaluation.loads,
        )
        written = write_outputs(result, target)
        return {spec: m.get("mean_reward") for spec, m in written["policies"].items()}

    metrics["held_out"] = run_eval(held_out_policies, held_out, folder / EVAL_DIR)
    if evaluation.select_on_train:
        # the plain reward: keep credit only moves reward within an episode while training
        plain = train_scenario.model_copy(
            update={"reward": train_scenario.reward.model_copy(update={"keep_credit": False})}
        )
        metrics["train"] = run_eval(list(evaluation.select_on_train), plain, folder / SELECT_DIR)
    return metrics
