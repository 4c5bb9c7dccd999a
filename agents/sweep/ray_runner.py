"""Trials on Ray Tune: an embedded local Ray, or an existing cluster (``--address``).

The trial list is fixed (:mod:`agents.sweep.plan`), so Tune receives it as one grid over
trial descriptions and schedules them with the sweep's resources and concurrency. Each Tune
trial runs :func:`agents.sweep.trial.run_trial` in its worker process. When that process dies
(killed, out of memory, its node lost), Tune starts the trial again, up to ``max_failures``
times, and the new attempt continues from the run's newest checkpoint. An exception of the
trial's own never reaches Tune: it comes back as an ``error`` record, so it is not retried.

Every machine of the cluster needs the project installed (``pip install 'offload-rl[sweep]'``)
and the sweep's output folder at the same path (a shared filesystem): trials write their run
folders there, as a single ``offload-rl train`` would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import tune

from agents.sweep.config import EvaluationConfig, SweepConfig
from agents.sweep.plan import TrialSpec
from agents.sweep.trial import FAILED, read_record, run_trial, trial_dir
from offload_rl.errors import ConfigError

TUNE_DIR = "_tune"  # Tune's own experiment state (the trials' results live in trials/)


def _tune_trial(params: dict[str, Any]) -> dict[str, Any]:
    """The Tune trainable: one trial in this worker process."""
    spec = TrialSpec.from_dict(params["trial"])
    evaluation = params["evaluation"]
    record = run_trial(
        spec,
        Path(params["out"]),
        None if evaluation is None else EvaluationConfig.model_validate(evaluation),
    )
    return {"status": record["status"], "error": record.get("error") or ""}


def connect(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address``, or start an embedded one on this machine."""
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = f"--address {address}" if address else "a local Ray"
        raise ConfigError(f"cannot start or join {where}: {first}") from None


def run_on_ray(
    sweep: SweepConfig,
    trials: list[TrialSpec],
    out: Path,
    address: str | None,
    say: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    """Run the trials on Ray; returns each trial's record, by trial id."""
    connect(address, None)
    try:
        resources = {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu}
        by_name = {_tune_name(t): t.trial_id for t in trials}
        tuner = tune.Tuner(
            tune.with_resources(_tune_trial, resources),
            param_space={
                "trial": tune.grid_search([t.to_dict() for t in trials]),
                "out": str(out),
                "evaluation": None if sweep.evaluate is None else sweep.evaluate.model_dump(),
            },
            tune_config=tune.TuneConfig(
                max_concurrent_trials=sweep.max_concurrent,
                reuse_actors=False,
                trial_name_creator=lambda t: _tune_name(TrialSpec.from_dict(t.config["trial"])),
                trial_dirname_creator=lambda t: _tune_name(TrialSpec.from_dict(t.config["trial"])),
            ),
            run_config=tune.RunConfig(
                name="sweep",
                storage_path=str(out / TUNE_DIR),
                failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                callbacks=[_Reporter(say, by_name)],
                verbose=0,
            ),
        )
        grid = tuner.fit()
        results = [grid[i] for i in range(len(grid))]
        errors = {
            r.config["trial"]["trial_id"]: r.error
            for r in results
            if r.error is not None and r.config
        }
    finally:
        ray.shutdown()
    records: dict[str, dict[str, Any]] = {}
    for t in trials:
        record = read_record(trial_dir(out, t.trial_id)) or t.to_dict()
        if t.trial_id in errors:  # Tune gave up: the worker died more than max_failures times
            record = {**record, "status": FAILED, "error": _one_line(errors[t.trial_id])}
        records[t.trial_id] = record
    return records


def _tune_name(trial: TrialSpec) -> str:
    return trial.trial_id.replace("/", "_")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"


class _Reporter(tune.Callback):
    """One line per trial that finishes, fails or is restarted after its worker died."""

    def __init__(self, say: Callable[[str], None], names: dict[str, str]) -> None:
        self.say = say
        self.names = names

    def _id(self, trial: Any) -> str:
        return str(self.names.get(str(trial), trial))

    def on_trial_result(
        self, iteration: int, trials: Any, trial: Any, result: Any, **_: Any
    ) -> None:
        status = result.get("status", "?")
        error = result.get("error")
        self.say(f"trial {self._id(trial)}: {status}" + (f" ({error})" if error else ""))

    def on_trial_error(self, iteration: int, trials: Any, trial: Any, **_: Any) -> None:
        self.say(f"trial {self._id(trial)}: worker died; Tune gave up after its retries")

    def on_trial_recover(self, iteration: int, trials: Any, trial: Any, **_: Any) -> None:
        self.say(f"trial {self._id(trial)}: worker died; retrying from its last checkpoint")
