"""PPO training on SplitCache-v0 or EdgeCell-v0, readable top to bottom (CleanRL spirit, on SB3).

A scenario with a ``cell:`` section trains on EdgeCell-v0 (:mod:`agents.training.envs`), whose
decisions come at irregular times: returns are then discounted by elapsed time
(``ppo.half_life_s`` or ``ppo.gamma_per_second``; :mod:`agents.training.time_discount`), the
validation uses the cell's episode loop and metrics, and TensorBoard's ``env/*`` tags average
outcomes per finished request (:class:`~agents.training.monitor.CellStepMetrics`).

:func:`train` does, in order:

1. **Config** — load the YAML (:mod:`agents.train_config`), apply ``--timesteps``/``--seed``, and
   write the resolved config (absolute paths) to ``OUT/config.yaml``.
2. **Validation set** — pinned episodes (:func:`agents.evaluate.build_episodes`: per trace family
   ``eval_episodes`` episodes, each a trace, offset and workload seed drawn from ``eval_seed``),
   the same at every evaluation. The heuristics (and the oracle) do not learn, so their values
   on it are computed once and written at every evaluation step as sibling TensorBoard runs
   (:mod:`agents.training.validation`).
3. **Environments and model** — ``n_envs`` :class:`~envs.split_cache.SplitCacheEnv` in a
   ``SubprocVecEnv`` (``DummyVecEnv`` when ``n_envs == 1`` or ``vec_env: dummy``), under
   ``VecMonitor`` and ``VecNormalize`` (observation statistics on; reward normalisation as
   configured). Each training episode draws a trace family uniformly, then a trace in it
   (``trace_sampling: family``; :mod:`agents.training.envs`). The model is a fresh
   ``MaskablePPO("MlpPolicy")``, or, with ``resume``, the newest complete checkpoint: weights,
   optimiser state, step counter and normalisation statistics (:mod:`agents.training.model`).
   With ``warm_start`` a fresh model first clones a reference policy (:mod:`agents.warm_start`);
   with ``keep_credit`` the training scenario (only) redistributes the reward of a KV keep to
   the step that made it (``reward.keep_credit``).
4. **TensorBoard** — SB3's logger writes the agent's run; one writer per heuristic
   (:mod:`agents.training.tensorboard`).
5. **Learn** — one callback (:class:`~agents.training.monitor.TrainingMonitor`) logs the domain
   metrics of the training steps (from the env infos), runs the masked deterministic evaluation
   every ``eval_every`` steps and writes a checkpoint every ``checkpoint_every`` steps (both
   through :class:`~agents.training.recorder.RunRecorder`), and drives the progress bar.
   Evaluations and checkpoints happen at rollout boundaries (every ``n_steps * n_envs`` env
   steps), at the first boundary at or after each multiple of their interval.
6. **Final** — ``OUT/final/``, a last evaluation, ``OUT/summary.json`` (steps per second,
   validation table; :mod:`agents.training.summary`) and the same table on the console.

The run folder is described in :mod:`agents.training.layout`. ``--resume OUT`` continues a
killed run from its newest complete checkpoint with ``reset_num_timesteps=False``; TensorBoard
writers reopen the same runs with ``purge_step`` at the checkpoint's step, so the curves
continue without the steps that were lost.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agents.checkpoints import BEST_DIR, remove_stale_temporaries
from agents.evaluation.progress import ProgressBar
from agents.train_config import TrainConfig, load_train_config
from agents.training.checkpointing import previous_best, resolve_resume
from agents.training.envs import make_vec_env
from agents.training.layout import CONFIG_FILE, SPLIT_FILE
from agents.training.model import Learner, fresh_learner, resumed_learner
from agents.training.recorder import RunRecorder
from agents.training.summary import write_summary
from agents.training.validation import (
    Validation,
    ValidationResult,
    build_validation,
    heuristic_baselines,
)
from offload_rl.errors import ConfigError
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import policy_feature_spec, resolve_scenario

if TYPE_CHECKING:
    from stable_baselines3.common.callbacks import BaseCallback
    from torch.utils.tensorboard import SummaryWriter

    from agents.training.tensorboard import ResumableTensorBoard


def train(
    config_path: str | Path | None,
    out_dir: str | Path | None = None,
    timesteps: int | None = None,
    seed: int | None = None,
    resume: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train (or resume) a MaskablePPO agent; returns the run folder (see the module docstring).

    ``config_path`` may be ``None`` with ``resume``: the run's own ``config.yaml`` is used.
    ``timesteps`` is the total step count of the run, counted from its start (a resumed run
    trains ``timesteps - steps done``); training stops at the first rollout boundary at or
    after it.
    """
    import torch

    from agents.training import tensorboard as tb
    from agents.training.monitor import TrainingMonitor

    say = log or _print_to_stderr

    # 1. config -------------------------------------------------------------------------------
    run_dir, ckpt, config = open_run(config_path, out_dir, timesteps, seed, resume)
    train_scenario, val_scenario = config.scenarios()
    prepare_run_folder(run_dir, config, train_scenario, val_scenario)
    torch.set_num_threads(config.torch_threads)

    # 2. validation set, and the heuristics' values on it (they do not learn: computed once) --
    validation, baselines = validation_with_baselines(config, val_scenario, say)

    # 3. environments and model ---------------------------------------------------------------
    resolved = resolve_scenario(train_scenario)
    spec = policy_feature_spec(train_scenario)
    venv = make_vec_env(resolved, config.n_envs, config.vec_env, config.trace_sampling == "family")
    try:
        if ckpt is None:
            learner = fresh_learner(config, venv, resolved, train_scenario, say)
        else:
            learner = resumed_learner(config, venv, ckpt, spec)
            say(f"resuming {run_dir} from {ckpt} (step {learner.start})")

        # 4. TensorBoard: the agent's run (SB3's logger) and one sibling run per heuristic ----
        purge = learner.start if ckpt is not None else None  # hide what came after the checkpoint
        agent_tb = tb.open_agent_run(learner.model, run_dir, purge)
        tb.write_start_texts(agent_tb.writer, config if ckpt is None else None, learner.warm_start)
        writers = tb.open_heuristic_runs(run_dir, list(baselines), purge)

        # 5. learn --------------------------------------------------------------------------------
        total = config.total_timesteps
        bar = ProgressBar(progress, total, "training", learner.start, info=True, transient=False)
        recorder = RunRecorder(
            run_dir=run_dir,
            config=config,
            spec=spec,
            scenario=train_scenario,
            learner=learner,
            validation=validation,
            baselines=baselines,
            agent_writer=agent_tb.writer,
            baseline_writers=writers,
            progress=bar,
            best=previous_best(run_dir / BEST_DIR) if ckpt is not None else (-math.inf, -1),
        )
        hparams = tb.hparams(config) if ckpt is None else None
        monitor = TrainingMonitor(recorder, config.eval_every, config.checkpoint_every, hparams)
        learn_s = learn(learner, monitor, bar, total)
    finally:
        venv.close()

    # 6. final ----------------------------------------------------------------------------------
    requests = val_scenario.episode.requests
    finish(recorder, agent_tb, writers, learn_s, ckpt is not None, requests, say)
    return run_dir


def validation_with_baselines(
    config: TrainConfig, scenario: Scenario, say: Callable[[str], None]
) -> tuple[Validation, dict[str, ValidationResult]]:
    """The pinned validation set, and each heuristic's result on it (said on one line)."""
    t0 = time.perf_counter()
    validation = build_validation(config, scenario)
    baselines = heuristic_baselines(validation, config, scenario)
    say(
        f"validation: {len(validation.episodes)} episodes x {scenario.episode.requests} "
        f"requests; baselines in {time.perf_counter() - t0:.1f} s: "
        + ", ".join(f"{k} {v.mean_reward:.3f}" for k, v in baselines.items())
    )
    return validation, baselines


def learn(learner: Learner, monitor: BaseCallback, bar: ProgressBar, total: int) -> float:
    """Train up to ``total`` steps of the run (the first rollout boundary at or after it);
    returns the wall-clock seconds, validation and checkpoints included."""
    t_learn = time.perf_counter()
    with bar:
        learner.model.learn(
            total_timesteps=max(total - learner.start, 0),
            callback=monitor,
            reset_num_timesteps=False,
            progress_bar=False,
        )
    return time.perf_counter() - t_learn


def finish(
    recorder: RunRecorder,
    agent_tb: ResumableTensorBoard,
    writers: dict[str, SummaryWriter],
    learn_s: float,
    resumed: bool,
    validation_requests: int,
    say: Callable[[str], None],
) -> None:
    """``final/``, a last evaluation, the TensorBoard runs closed, ``summary.json``."""
    learner = recorder.learner
    steps = int(learner.model.num_timesteps)
    steps_per_s = (steps - learner.start) / learn_s if learn_s > 0 else math.nan
    recorder.save_final(steps)
    final = recorder.evaluate(steps)  # never evaluated at this step: training ends after an update
    agent_tb.writer.add_scalar("perf/env_steps_per_s", steps_per_s, steps)
    agent_tb.close()
    for writer in writers.values():
        writer.close()
    resumed_from = learner.start if resumed else None
    write_summary(recorder, final, steps, resumed_from, learn_s, steps_per_s, validation_requests)
    say(
        f"trained {steps - learner.start} steps in {learn_s:.0f} s: {steps_per_s:.0f} env steps/s "
        f"(incl. {recorder.eval_s:.0f} s of validation); run in {recorder.run_dir}"
    )


def open_run(
    config_path: str | Path | None,
    out_dir: str | Path | None,
    timesteps: int | None,
    seed: int | None,
    resume: str | Path | None,
) -> tuple[Path, Path | None, TrainConfig]:
    """``(run folder, checkpoint to resume from or None, resolved config)``.

    A fresh run refuses a folder that already holds one; ``--resume`` reads the run's own
    ``config.yaml`` unless given another, and ``--out`` elsewhere continues the checkpoint
    into a new run folder.
    """
    ckpt: Path | None = None
    if resume is not None:
        origin, ckpt = resolve_resume(resume)
        config_path = config_path or origin / CONFIG_FILE
        run_dir = Path(out_dir) if out_dir is not None else origin
    elif out_dir is None:
        raise ConfigError("give an output folder (--out)")
    else:
        run_dir = Path(out_dir)
        if (run_dir / CONFIG_FILE).exists():
            raise ConfigError(f"{run_dir} already holds a run: continue it with --resume {run_dir}")
    if config_path is None:
        raise ConfigError("give a training config (--config)")
    config = load_train_config(config_path, total_timesteps=timesteps, seed=seed).resolved()
    return run_dir, ckpt, config


def prepare_run_folder(
    run_dir: Path, config: TrainConfig, train_scenario: Scenario, val_scenario: Scenario
) -> None:
    """Create the folder, clear a killed writer's leftovers, write the config and trace split."""
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    (run_dir / CONFIG_FILE).write_text(config.to_yaml())
    if config.traces is not None:
        split = {
            "train": [s.source for s in train_scenario.network.sources()],
            "validation": [s.source for s in val_scenario.network.sources()],
        }
        test = config.test_sources()
        if test is not None:  # a three-way split: files no part of training reads
            split["test"] = [s.source for s in test]
        (run_dir / SPLIT_FILE).write_text(json.dumps(split, indent=1) + "\n")


def _print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)
