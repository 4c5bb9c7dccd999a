"""PPO training on the split/cache environment, readable top to bottom (CleanRL spirit, on SB3).

:func:`train` does, in order:

1. **Config** — load the YAML (:mod:`agents.train_config`), apply ``--timesteps``/``--seed``, and
   write the resolved config (absolute paths) to ``OUT/config.yaml``.
2. **Validation set** — pinned episodes (:func:`agents.evaluate.build_episodes`: per trace family
   ``eval_episodes`` episodes, each a trace, offset and workload seed drawn from ``eval_seed``),
   the same at every evaluation. The heuristics (and the oracle) do not learn, so their values
   on it are computed once and written at every evaluation step as sibling TensorBoard runs.
3. **Environments and model** — ``n_envs`` :class:`~envs.split_cache.SplitCacheEnv` in a
   ``SubprocVecEnv`` (``DummyVecEnv`` when ``n_envs == 1`` or ``vec_env: dummy``), under
   ``VecMonitor`` and ``VecNormalize`` (observation statistics on; reward normalisation as
   configured). Each training episode draws a trace family uniformly, then a trace in it
   (``trace_sampling: family``). The env factory is a module-level function, so forkserver
   workers can import it. The model is a fresh ``MaskablePPO("MlpPolicy")``, or, with
   ``resume``, the newest complete checkpoint: weights, optimiser state, step counter and
   normalisation statistics. With ``warm_start`` a fresh model first clones a reference policy
   (:mod:`agents.warm_start`); with ``keep_credit`` the training scenario (only) redistributes
   the reward of a KV keep to the step that made it (``reward.keep_credit``).
4. **TensorBoard** — SB3's logger writes the agent's run; one writer per heuristic.
5. **Learn** — one callback logs the domain metrics of the training steps (from the env infos),
   runs the masked deterministic evaluation every ``eval_every`` steps, writes a checkpoint every
   ``checkpoint_every`` steps, and drives the progress bar. Evaluations and checkpoints happen
   at rollout boundaries (every ``n_steps * n_envs`` env steps), at the first boundary at or
   after each multiple of their interval.
6. **Final** — ``OUT/final/``, a last evaluation, ``OUT/summary.json`` (steps per second,
   validation table) and the same table on the console.

Run folder::

    OUT/config.yaml                 the resolved config (``--resume OUT`` reads it back)
    OUT/trace_split.json            train / validation trace files (when the config names traces)
    OUT/tb/ppo/                     SB3's train/ rollout/ time/ tags, env/* (training steps),
                                    eval/* family/* (validation), perf/*, hparams, config text
    OUT/tb/<heuristic>/             eval/* family/* of a heuristic at the same steps
    OUT/checkpoints/step_<N>/       model.zip, vecnormalize.pkl, meta.json
    OUT/best/                       the same three files for the best validation reward so far
    OUT/final/                      the same three files at the end
    OUT/summary.json

``--resume OUT`` continues a killed run from its newest complete checkpoint with
``reset_num_timesteps=False``; TensorBoard writers reopen the same runs with ``purge_step`` at
the checkpoint's step, so the curves continue without the steps that were lost.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from agents.checkpoints import (
    CHECKPOINTS_DIR,
    FINAL_DIR,
    META_FILE,
    META_FORMAT,
    META_FORMAT_VERSION,
    MODEL_FILE,
    VECNORMALIZE_FILE,
    checkpoint_name,
    is_complete,
    latest_checkpoint,
    read_meta,
    remove_stale_temporaries,
    write_atomically,
)
from agents.evaluation.tags import tag_safe
from agents.train_config import TrainConfig, load_train_config
from offload_rl import __version__
from offload_rl.cost_model import TIERS
from offload_rl.errors import ConfigError
from offload_rl.features import FEATURE_SCHEMA_VERSION, FeatureSpec
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import ResolvedScenario, resolve_scenario

if TYPE_CHECKING:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize
    from torch.utils.tensorboard import SummaryWriter

    from envs.split_cache import SplitCacheEnv

AGENT_RUN = "ppo"
BEST_DIR = "best"
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
SPLIT_FILE = "trace_split.json"


# --------------------------------------------------------------------------------------------
# Environments (module-level factories: SubprocVecEnv's forkserver workers import them)
# --------------------------------------------------------------------------------------------


class FamilyBalancedReset(gym.Wrapper[np.ndarray, np.int64, np.ndarray, np.int64]):
    """Training episodes draw a trace family uniformly, then a trace within it.

    The environment draws a trace uniformly, so a family with many files (FCC: 350) would
    otherwise dominate a mixed training set. Pinned resets (``options["trace"]``) pass through.
    """

    def __init__(self, env: SplitCacheEnv) -> None:
        super().__init__(env)
        by_family: dict[str, list[int]] = {}
        for i, trace in enumerate(env.resolved.uplinks):
            by_family.setdefault(trace.family, []).append(i)
        self._families = [by_family[f] for f in sorted(by_family)]
        self._rng = np.random.default_rng()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = dict(options or {})
        if options.get("trace") is None:
            members = self._families[int(self._rng.integers(len(self._families)))]
            options["trace"] = members[int(self._rng.integers(len(members)))]
        return self.env.reset(seed=seed, options=options)


def make_env(resolved: ResolvedScenario, balance_families: bool = True) -> gym.Env[Any, Any]:
    """One training environment (episode length from the scenario)."""
    from envs.split_cache import SplitCacheEnv

    env = SplitCacheEnv(resolved)
    return FamilyBalancedReset(env) if balance_families else env


def make_vec_env(
    resolved: ResolvedScenario, n_envs: int, kind: str = "subproc", balance_families: bool = True
) -> VecEnv:
    """``n_envs`` environments in worker processes (or in-process for one), with episode stats."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    factories: list[Callable[[], Any]] = [
        functools.partial(make_env, resolved, balance_families) for _ in range(n_envs)
    ]
    if n_envs > 1 and kind == "subproc":
        return VecMonitor(SubprocVecEnv(factories))
    return VecMonitor(DummyVecEnv(factories))


class LinearSchedule:
    """``learning_rate x progress_remaining`` (a class, so that it pickles into model.zip)."""

    def __init__(self, initial: float) -> None:
        self.initial = initial

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining


# --------------------------------------------------------------------------------------------
# Validation: masked deterministic evaluation on pinned episodes
# --------------------------------------------------------------------------------------------


@dataclass
class Validation:
    """The fixed validation episodes and an environment to run them in."""

    env: SplitCacheEnv
    episodes: list[Any]  # agents.evaluate.Episode
    n_layers: int

    def run(self, policy: Any) -> ValidationResult:
        from agents.evaluate import run_episode

        records = [run_episode(policy, self.env, ep) for ep in self.episodes]
        return ValidationResult.from_records(records, self.episodes, self.n_layers)


@dataclass
class ValidationResult:
    """Scalars (same tags for every policy) and the split histogram of one validation run."""

    scalars: dict[str, float]
    splits: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_reward(self) -> float:
        return self.scalars["eval/mean_reward"]

    @classmethod
    def from_records(
        cls, records: list[dict[str, np.ndarray]], episodes: Sequence[Any], n_layers: int
    ) -> ValidationResult:
        from agents.evaluate import FAMILY_TAGS, SUMMARY_TAGS, summarise

        def num(x: Any) -> float:
            return math.nan if x is None else float(x)

        summary = summarise(records, n_layers)
        scalars = {tag: num(summary[key]) for tag, key in SUMMARY_TAGS.items()}
        for tier in TIERS:
            scalars[f"eval/tier_share/{tier}"] = float(summary["tier_share"].get(tier, 0.0))
        scalars["eval/invalid_action_rate"] = num(summary["invalid_action_rate"])
        for family in sorted({ep.family for ep in episodes}):
            sub = [r for r, ep in zip(records, episodes, strict=True) if ep.family == family]
            fam = summarise(sub, n_layers)
            for name, key in FAMILY_TAGS.items():
                scalars[f"family/{tag_safe(family)}/{name}"] = num(fam[key])
        splits = np.concatenate([r["tier_index"] for r in records]).astype(np.float64)
        return cls(scalars=scalars, splits=splits, summary=summary)

    def write(self, writer: SummaryWriter, step: int) -> None:
        for tag, value in self.scalars.items():
            writer.add_scalar(tag, value, step)
        if self.splits.size:
            writer.add_histogram("eval/split", self.splits, step, bins="auto")
        writer.flush()


def build_validation(config: TrainConfig, scenario: Scenario) -> Validation:
    from agents.evaluate import build_episodes
    from envs.split_cache import SplitCacheEnv

    resolved = resolve_scenario(scenario)
    episodes = build_episodes(resolved, config.eval_episodes, config.eval_seed)
    return Validation(env=SplitCacheEnv(resolved), episodes=episodes, n_layers=resolved.n_layers)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def checkpoint_meta(
    config: TrainConfig,
    spec: FeatureSpec,
    scenario: Scenario,
    vecnormalize: VecNormalize,
    num_timesteps: int,
) -> dict[str, Any]:
    """``meta.json``: everything an exporter or loader needs without unpickling, and the
    digest of the statistics that lets an export check them where ``vecnormalize.pkl`` is gone."""
    import sb3_contrib
    import stable_baselines3
    import torch

    from agents.sb3_policy import ObsNormalization, normalization_digest
    from serving.policy_file import MASKED_LOGIT

    norm = ObsNormalization.from_vecnormalize(vecnormalize)
    return {
        "format": META_FORMAT,
        "format_version": META_FORMAT_VERSION,
        "algorithm": "MaskablePPO",
        "num_timesteps": int(num_timesteps),
        "scenario": config.scenario_ref(),
        "scenario_name": scenario.name,
        "feature_spec": {
            **spec.to_dict(),
            "obs_dim": spec.obs_dim,
            "n_actions": spec.layout.n_actions,
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "feature_names": spec.feature_names(),
        },
        "action_meanings": spec.layout.meanings(),
        "masked_logit": MASKED_LOGIT,
        "obs_normalization": norm.to_json() if norm is not None else None,
        "obs_normalization_sha256": normalization_digest(norm),
        "versions": {
            "offload_rl": __version__,
            "stable_baselines3": stable_baselines3.__version__,
            "sb3_contrib": sb3_contrib.__version__,
            "torch": torch.__version__,
        },
        "config": config.model_dump(mode="json", exclude_none=True),
    }


def save_checkpoint(
    target: Path, model: MaskablePPO, vecnormalize: VecNormalize, meta: dict[str, Any]
) -> Path:
    """Write model, statistics and metadata to ``target`` atomically."""

    def write(tmp: Path) -> None:
        model.save(tmp / MODEL_FILE)
        vecnormalize.save(str(tmp / VECNORMALIZE_FILE))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    return write_atomically(target, write)


def resolve_resume(resume: str | Path) -> tuple[Path, Path]:
    """``(run folder, checkpoint folder)`` for ``--resume`` (a run or a checkpoint folder)."""
    p = Path(resume)
    if is_complete(p) and p.parent.name == CHECKPOINTS_DIR:
        return p.parent.parent, p
    if is_complete(p) and p.name in (FINAL_DIR, BEST_DIR):
        return p.parent, p
    if not p.is_dir():
        raise ConfigError(f"--resume {p}: no such run folder")
    ckpt = latest_checkpoint(p)
    if ckpt is None:
        if is_complete(p / FINAL_DIR):
            return p, p / FINAL_DIR
        raise ConfigError(f"--resume {p}: no complete checkpoint to resume from")
    return p, ckpt


# --------------------------------------------------------------------------------------------
# The callback: domain metrics, evaluation, checkpoints, progress
# --------------------------------------------------------------------------------------------


def _make_callback(**kwargs: Any) -> Any:
    """The training callback (built here so that SB3 is imported only when training)."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import HParam

    class TrainingMonitor(BaseCallback):
        """Step-info metrics per rollout, periodic validation, checkpoints and progress."""

        def __init__(
            self,
            on_eval: Callable[[int], object],
            on_checkpoint: Callable[[int], None],
            eval_every: int,
            checkpoint_every: int,
            n_layers: int,
            hparams: dict[str, Any] | None,
            progress: Any,
        ) -> None:
            super().__init__()
            self.on_eval = on_eval
            self.on_checkpoint = on_checkpoint
            self.eval_every = eval_every
            self.checkpoint_every = checkpoint_every
            self.n_layers = n_layers
            self.hparams = hparams
            self.progress = progress
            self._cols: dict[str, list[float]] = {}
            self.start_step = 0
            self.start_time = 0.0
            self.steps_per_s = math.nan

        def _on_training_start(self) -> None:
            self.start_step = self.num_timesteps
            self.start_time = time.perf_counter()
            self._next_eval = self.start_step
            self._next_ckpt = (self.start_step // self.checkpoint_every + 1) * self.checkpoint_every
            if self.hparams is not None:
                self.logger.record(
                    "hparams",
                    HParam(self.hparams, {"eval/mean_reward": 0.0}),
                    exclude=("stdout", "log", "json", "csv"),
                )
            self._reset_cols()

        def _reset_cols(self) -> None:
            self._cols = {
                k: []
                for k in (
                    "reward",
                    "latency_s",
                    "ttft_s",
                    "energy_j",
                    "slo_violated",
                    "cache_hit",
                    "keep",
                    "invalid_action",
                    "tier_index",
                )
            }

        def _on_rollout_start(self) -> None:
            n = self.num_timesteps
            if n >= self._next_eval:
                self.on_eval(n)
                self._next_eval = (n // self.eval_every + 1) * self.eval_every
            if n >= self._next_ckpt:
                self.on_checkpoint(n)
                self._next_ckpt = (n // self.checkpoint_every + 1) * self.checkpoint_every

        def _on_step(self) -> bool:
            cols = self._cols
            rewards = self.locals.get("rewards")
            if rewards is not None:
                cols["reward"].extend(np.asarray(rewards, dtype=np.float64).tolist())
            for info in self.locals.get("infos", ()):
                cols["latency_s"].append(info["latency_s"])
                cols["ttft_s"].append(info["ttft_s"])
                cols["energy_j"].append(info["energy_j"])
                cols["slo_violated"].append(info["slo_violated"])
                cols["cache_hit"].append(info["cache_hit"])
                cols["keep"].append(info["keep"])
                cols["invalid_action"].append(info["invalid_action"])
                cols["tier_index"].append(info["action"] >> 1)
            if self.progress is not None and self.n_calls % 16 == 0:
                self.progress.update(self.num_timesteps)
            return True

        def _on_rollout_end(self) -> None:
            cols = {k: np.asarray(v, dtype=np.float64) for k, v in self._cols.items()}
            self._reset_cols()
            if cols["latency_s"].size:
                record = self.logger.record
                # raw env reward (the rollout buffer holds the normalised one when enabled)
                record("env/reward", float(cols["reward"].mean()))
                record("env/latency_s", float(cols["latency_s"].mean()))
                record("env/ttft_s", float(cols["ttft_s"].mean()))
                record("env/energy_j", float(cols["energy_j"].mean()))
                record("env/slo_violation_rate", float(cols["slo_violated"].mean()))
                record("env/cache_hit_rate", float(cols["cache_hit"].mean()))
                record("env/keep_rate", float(cols["keep"].mean()))
                record("env/invalid_action_rate", float(cols["invalid_action"].mean()))
                tier = cols["tier_index"].astype(np.int64)
                L = self.n_layers
                names = {"edge": tier == 0, "split": (tier > 0) & (tier < L)}
                names |= {"device": tier == L, "cloud": tier == L + 1}
                for name, sel in names.items():
                    record(f"env/tier_share/{name}", float(sel.mean()))
                record("env/split", cols["tier_index"], exclude=("stdout", "log", "json", "csv"))
            elapsed = time.perf_counter() - self.start_time
            if elapsed > 0:
                self.steps_per_s = (self.num_timesteps - self.start_step) / elapsed
                self.logger.record("perf/env_steps_per_s", self.steps_per_s)
            if self.progress is not None:
                self.progress.update(self.num_timesteps)

    return TrainingMonitor(**kwargs)


class _Progress:
    """A rich progress bar on stderr (steps, steps/s, last validation reward)."""

    def __init__(self, total: int, start: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
        )
        self._task = self._p.add_task("train", total=total, completed=start, info="")
        self._p.start()

    def update(self, completed: int, info: str | None = None) -> None:
        if info is None:
            self._p.update(self._task, completed=completed)
        else:
            self._p.update(self._task, completed=completed, info=info)

    def stop(self) -> None:
        self._p.stop()


def _open_tb_format(folder: Path, purge_step: int | None) -> Any:
    """SB3's TensorBoard output, reopened with ``purge_step`` when a run resumes."""
    from stable_baselines3.common.logger import TensorBoardOutputFormat
    from torch.utils.tensorboard import SummaryWriter

    class _ResumableTensorBoard(TensorBoardOutputFormat):
        def __init__(self, folder: str, purge_step: int | None) -> None:
            self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
            self._is_closed = False

    return _ResumableTensorBoard(str(folder), purge_step)


def _hparams(config: TrainConfig) -> dict[str, Any]:
    """Flat scalar hyper-parameters for TensorBoard's HPARAMS tab."""
    out: dict[str, Any] = {
        "scenario": config.scenario,
        "n_envs": config.n_envs,
        "seed": config.seed,
        "total_timesteps": config.total_timesteps,
        "episode_requests": config.episode_requests or 0,
        "normalize_obs": config.normalize.obs,
        "normalize_reward": config.normalize.reward,
    }
    for k, v in config.ppo.model_dump().items():
        out[f"ppo.{k}"] = "x".join(map(str, v)) if isinstance(v, list) else v
    return out


# --------------------------------------------------------------------------------------------
# train()
# --------------------------------------------------------------------------------------------


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
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecNormalize
    from torch.utils.tensorboard import SummaryWriter

    from agents.evaluate import run_dir_name
    from agents.policies import resolve_policy
    from agents.sb3_policy import SB3Policy

    say = log or (lambda msg: print(msg, file=sys.stderr))

    # 1. config ---------------------------------------------------------------------------
    ckpt: Path | None = None
    if resume is not None:
        origin, ckpt = resolve_resume(resume)
        config_path = config_path or origin / CONFIG_FILE
        # --out elsewhere continues the checkpoint into a new run folder
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
    train_scenario, val_scenario = config.scenarios()
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run_dir)
    (run_dir / CONFIG_FILE).write_text(config.to_yaml())
    if config.traces is not None:
        split = {
            "train": [s.source for s in train_scenario.network.sources()],
            "validation": [s.source for s in val_scenario.network.sources()],
        }
        (run_dir / SPLIT_FILE).write_text(json.dumps(split, indent=1) + "\n")
    torch.set_num_threads(config.torch_threads)

    # 2. validation set, and the heuristics' values on it (they do not learn: computed once) --
    t0 = time.perf_counter()
    validation = build_validation(config, val_scenario)
    baselines: dict[str, ValidationResult] = {}
    for name in config.heuristics:
        baselines[name] = validation.run(resolve_policy(name, val_scenario, seed=config.seed))
    n_val = len(validation.episodes)
    say(
        f"validation: {n_val} episodes x {val_scenario.episode.requests} requests; "
        f"baselines in {time.perf_counter() - t0:.1f} s: "
        + ", ".join(f"{k} {v.mean_reward:.3f}" for k, v in baselines.items())
    )

    # 3. environments and model ------------------------------------------------------------------
    resolved = resolve_scenario(train_scenario)
    spec = resolved.spec
    venv = make_vec_env(resolved, config.n_envs, config.vec_env, config.trace_sampling == "family")
    warm_report: dict[str, Any] | None = None
    try:
        norm = config.normalize
        if ckpt is None:
            vecnorm = VecNormalize(
                venv,
                norm_obs=norm.obs,
                norm_reward=norm.reward,
                clip_obs=norm.clip_obs,
                clip_reward=norm.clip_reward,
                gamma=config.ppo.gamma,
            )
            model = build_model(config, vecnorm, spec)
            start = 0
            if config.warm_start is not None:  # before TensorBoard: logged at step 0 below
                from agents.warm_start import warm_start

                cloned = warm_start(
                    model,
                    vecnorm if norm.obs else None,
                    make_env(resolved, config.trace_sampling == "family"),
                    train_scenario,
                    config.warm_start,
                    gamma=config.ppo.gamma,
                    vf_coef=config.ppo.vf_coef,
                    seed=config.seed,
                )
                warm_report = cloned.as_dict()
                say(
                    f"warm start: cloned {cloned.policy} from {cloned.demonstrations} requests "
                    f"(its reward {cloned.reference_mean_reward:.3f}) in "
                    f"{cloned.collect_s + cloned.train_s:.0f} s; agreement "
                    f"{cloned.train_agreement:.1%} on the demonstrations, "
                    f"{cloned.heldout_agreement:.1%} held out"
                )
        else:
            _check_checkpoint_fits(ckpt, spec)
            vecnorm = VecNormalize.load(str(ckpt / VECNORMALIZE_FILE), venv)
            model = MaskablePPO.load(str(ckpt / MODEL_FILE), env=vecnorm, device="cpu")
            start = int(model.num_timesteps)
            model.set_random_seed(config.seed + start)  # new episodes, not a replay
            say(f"resuming {run_dir} from {ckpt} (step {start})")

        # 4. TensorBoard: the agent's run (SB3's logger) and one sibling run per heuristic --
        purge = start if ckpt is not None else None  # hide what was logged after the checkpoint
        tb_root = run_dir / "tb"
        agent_tb = _open_tb_format(tb_root / AGENT_RUN, purge)
        model.set_logger(Logger(folder=None, output_formats=[agent_tb]))
        if ckpt is None:
            agent_tb.writer.add_text("config", _as_code(config.to_yaml()), 0)
        if warm_report is not None:
            agent_tb.writer.add_text("warm_start", _as_code(json.dumps(warm_report, indent=1)), 0)
            agent_tb.writer.add_scalar(
                "warm_start/heldout_agreement", warm_report["heldout_agreement"], 0
            )
        writers: dict[str, SummaryWriter] = {
            name: SummaryWriter(log_dir=str(tb_root / run_dir_name(name)), purge_step=purge)
            for name in baselines
        }

        # 5. learn ----------------------------------------------------------------------------
        total = config.total_timesteps
        bar = _Progress(total, start) if progress else None
        history: list[tuple[int, float]] = []
        best = _previous_best(run_dir / BEST_DIR) if ckpt is not None else (-math.inf, -1)
        eval_seconds = [0.0]

        def meta(step: int, **extra: Any) -> dict[str, Any]:
            return checkpoint_meta(config, spec, train_scenario, vecnorm, step) | extra

        def snapshot() -> SB3Policy:
            return SB3Policy.from_model(model, vecnorm if norm.obs else None, spec, name="ppo")

        def on_eval(step: int) -> ValidationResult:
            nonlocal best
            t = time.perf_counter()
            result = validation.run(snapshot())
            result.write(agent_tb.writer, step)
            for name, res in baselines.items():
                res.write(writers[name], step)
            history.append((step, result.mean_reward))
            if result.mean_reward > best[0]:
                best = (result.mean_reward, step)
                validated = {"validation": {"mean_reward": result.mean_reward}}
                save_checkpoint(run_dir / BEST_DIR, model, vecnorm, meta(step, **validated))
            eval_seconds[0] += time.perf_counter() - t
            agent_tb.writer.add_scalar("perf/eval_s", time.perf_counter() - t, step)
            if bar is not None:
                bar.update(step, info=f"validation reward {result.mean_reward:.3f}")
            return result

        def on_checkpoint(step: int) -> None:
            target = run_dir / CHECKPOINTS_DIR / checkpoint_name(step)
            save_checkpoint(target, model, vecnorm, meta(step))

        callback = _make_callback(
            on_eval=on_eval,
            on_checkpoint=on_checkpoint,
            eval_every=config.eval_every,
            checkpoint_every=config.checkpoint_every,
            n_layers=spec.n_layers,
            hparams=_hparams(config) if ckpt is None else None,
            progress=bar,
        )
        t_learn = time.perf_counter()
        try:
            model.learn(
                total_timesteps=max(total - start, 0),
                callback=callback,
                reset_num_timesteps=False,
                progress_bar=False,
            )
        finally:
            if bar is not None:
                bar.stop()
        learn_s = time.perf_counter() - t_learn
    finally:
        venv.close()
    steps = int(model.num_timesteps)
    steps_per_s = (steps - start) / learn_s if learn_s > 0 else math.nan

    # 6. final ----------------------------------------------------------------------------------
    save_checkpoint(run_dir / FINAL_DIR, model, vecnorm, meta(steps))
    final = on_eval(steps)  # never evaluated at this step: training ends after an update
    agent_tb.writer.add_scalar("perf/env_steps_per_s", steps_per_s, steps)
    agent_tb.close()
    for w in writers.values():
        w.close()
    learn_only = learn_s - eval_seconds[0]
    summary = {
        "num_timesteps": steps,
        "resumed_from": start if ckpt is not None else None,
        "warm_start": warm_report,
        "learn_wall_s": round(learn_s, 2),
        "eval_wall_s": round(eval_seconds[0], 2),
        "env_steps_per_s": round(steps_per_s, 1),
        "env_steps_per_s_without_eval": round((steps - start) / learn_only, 1)
        if learn_only > 0
        else None,
        "n_envs": config.n_envs,
        "vec_env": config.vec_env if config.n_envs > 1 else "dummy",
        "validation": {
            "episodes": n_val,
            "requests": val_scenario.episode.requests,
            "seed": config.eval_seed,
        },
        "best": {"step": best[1], "mean_reward": best[0]},
        "curve": [{"step": s, "mean_reward": r} for s, r in history],
        "final": {AGENT_RUN: _brief(final.summary)}
        | {k: _brief(v.summary) for k, v in baselines.items()},
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    say(
        f"trained {steps - start} steps in {learn_s:.0f} s: {steps_per_s:.0f} env steps/s "
        f"(incl. {eval_seconds[0]:.0f} s of validation); run in {run_dir}"
    )
    return run_dir


def build_model(config: TrainConfig, env: VecEnv, spec: FeatureSpec) -> MaskablePPO:
    """A fresh ``MaskablePPO("MlpPolicy")`` with the config's hyper-parameters."""
    import torch
    from sb3_contrib import MaskablePPO

    ppo = config.ppo
    lr: Any = (
        LinearSchedule(ppo.learning_rate) if ppo.lr_schedule == "linear" else ppo.learning_rate
    )
    model = MaskablePPO(
        "MlpPolicy",
        env,
        learning_rate=lr,
        n_steps=ppo.n_steps,
        batch_size=ppo.batch_size,
        n_epochs=ppo.n_epochs,
        gamma=ppo.gamma,
        gae_lambda=ppo.gae_lambda,
        ent_coef=ppo.ent_coef,
        clip_range=ppo.clip_range,
        vf_coef=ppo.vf_coef,
        max_grad_norm=ppo.max_grad_norm,
        policy_kwargs={
            "net_arch": {"pi": list(ppo.net_arch), "vf": list(ppo.net_arch)},
            "activation_fn": torch.nn.Tanh if ppo.activation == "tanh" else torch.nn.ReLU,
        },
        seed=config.seed,
        device="cpu",
        verbose=0,
    )
    if ppo.init_keep_logit:
        _bias_keep_actions(model, spec, ppo.init_keep_logit)
    return model


def _previous_best(folder: Path) -> tuple[float, int]:
    """Validation reward and step of a run's ``best/`` (a resumed run must beat it)."""
    meta = read_meta(folder) if is_complete(folder) else None
    if meta is None or "validation" not in meta:
        return -math.inf, -1
    return float(meta["validation"]["mean_reward"]), int(meta["num_timesteps"])


def _bias_keep_actions(model: MaskablePPO, spec: FeatureSpec, logit: float) -> None:
    """Add ``logit`` to the output bias of every "keep" action of the fresh policy.

    The cloud is stateless (its "keep" is always masked), so its "drop" gets the same prior:
    otherwise the prior would also push the policy away from the cloud tier.
    """
    import torch

    from offload_rl.actions import DROP, KEEP

    layout = spec.layout
    keep = [layout.encode(t, KEEP) for t in range(layout.n_tiers - 1)]
    keep.append(layout.encode(layout.cloud_index, DROP))
    action_net: Any = model.policy.action_net
    with torch.no_grad():
        action_net.bias[keep] += logit


def _check_checkpoint_fits(ckpt: Path, spec: FeatureSpec) -> None:
    meta = read_meta(ckpt)
    if meta is None:
        raise ConfigError(f"{ckpt}: no {META_FILE}")
    trained = meta.get("feature_spec", {})
    want = {"obs_dim": spec.obs_dim, "n_actions": spec.layout.n_actions}
    bad = [f"{k} {trained.get(k)} != {v}" for k, v in want.items() if trained.get(k) != v]
    if bad:
        raise ConfigError(
            f"{ckpt}: checkpoint does not fit the config's scenario ({', '.join(bad)})"
        )


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "mean_reward",
        "mean_reward_ci95",
        "mean_latency_s",
        "latency_p95_s",
        "mean_ttft_s",
        "slo_violation_rate",
        "energy_j_per_request",
        "cache_hit_rate",
        "keep_rate",
        "tier_share",
    )
    return {k: summary.get(k) for k in keys}


def _as_code(text: str) -> str:
    """Markdown code block for TensorBoard's text tab."""
    return "\n".join("    " + line for line in text.splitlines())
