"""The training callback: domain metrics of the training steps, and the evaluation and
checkpoint schedule, at SB3's rollout boundaries.

Imports SB3 at module level: only :func:`agents.training.loop.train` imports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam

if TYPE_CHECKING:
    from agents.training.recorder import RunRecorder

NOT_IN_TEXT_LOGS = ("stdout", "log", "json", "csv")  # histograms and hparams: TensorBoard only

# env/* tags of the info fields averaged over a rollout (``reward`` comes from the rollout)
INFO_TAGS = {
    "latency_s": "env/latency_s",
    "ttft_s": "env/ttft_s",
    "energy_j": "env/energy_j",
    "slo_violated": "env/slo_violation_rate",
    "cache_hit": "env/cache_hit_rate",
    "keep": "env/keep_rate",
    "invalid_action": "env/invalid_action_rate",
}


class StepMetrics:
    """The raw reward and the info fields of every training step since the last rollout end."""

    def __init__(self) -> None:
        self.reward: list[float] = []
        self.tier_index: list[float] = []
        self.info: dict[str, list[float]] = {key: [] for key in INFO_TAGS}

    def add(self, rewards: Any, infos: Iterable[dict[str, Any]]) -> None:
        if rewards is not None:
            self.reward.extend(np.asarray(rewards, dtype=np.float64).tolist())
        for info in infos:
            for key, column in self.info.items():
                column.append(info[key])
            self.tier_index.append(info["action"] >> 1)

    def record(self, record: Callable[..., None], n_layers: int) -> None:
        """``env/*``: the means of a rollout, its tier shares and its split histogram."""
        if not self.info["latency_s"]:
            return
        # raw env reward (the rollout buffer holds the normalised one when enabled)
        record("env/reward", float(np.mean(np.asarray(self.reward, dtype=np.float64))))
        for key, tag in INFO_TAGS.items():
            record(tag, float(np.asarray(self.info[key], dtype=np.float64).mean()))
        self.record_tiers(record, n_layers)

    def record_tiers(self, record: Callable[..., None], n_layers: int) -> None:
        """``env/tier_share/*`` and the ``env/split`` histogram of the rollout's decisions."""
        splits = np.asarray(self.tier_index, dtype=np.float64)
        tier = splits.astype(np.int64)
        L = n_layers
        shares = {"edge": tier == 0, "split": (tier > 0) & (tier < L)}
        shares |= {"device": tier == L, "cloud": tier == L + 1}
        for name, sel in shares.items():
            record(f"env/tier_share/{name}", float(sel.mean()))
        record("env/split", splits, exclude=NOT_IN_TEXT_LOGS)


# EdgeCell-v0: info fields summed over the requests that finished in a step -> env/* tag of
# their mean per finished request (sum over the rollout / its finished requests)
CELL_PER_REQUEST_TAGS = {
    "latency_s": "env/latency_s",
    "ttft_s": "env/ttft_s",
    "queue_s": "env/queue_s",
    "slo_violated": "env/slo_violation_rate",
    "cache_hit": "env/cache_hits_per_request",
    "preempted": "env/preemptions_per_request",
}
# EdgeCell-v0: info fields of each decision (or of the interval after it) -> env/* tag of
# their mean per decision
CELL_PER_DECISION_TAGS = {
    "energy_j": "env/energy_j_per_decision",
    "edge_batch": "env/edge_batch",
    "edge_waiting": "env/edge_waiting",
    "edge_kv_occupancy": "env/edge_kv_occupancy",
    "keep": "env/keep_rate",
    "invalid_action": "env/invalid_action_rate",
    "dt": "env/dt_s",
}
# EdgeCell-v0: info fields of an episode's last step -> env/* tag of their mean per episode
CELL_EPISODE_TAGS = {
    "session_return_rate_in_episode": "env/session_return_rate_in_episode",
    "session_return_rate_unbounded": "env/session_return_rate_unbounded",
}


class CellStepMetrics(StepMetrics):
    """EdgeCell-v0's training metrics: a step's outcome fields are sums over the requests that
    finished in its interval, so they are averaged per finished request (never per step)."""

    def __init__(self) -> None:
        super().__init__()
        keys = (*CELL_PER_REQUEST_TAGS, *CELL_PER_DECISION_TAGS, "n_finished")
        self.info = {key: [] for key in keys}
        self.episode_ends: dict[str, list[float]] = {key: [] for key in CELL_EPISODE_TAGS}

    def add(self, rewards: Any, infos: Iterable[dict[str, Any]]) -> None:
        infos = list(infos)
        super().add(rewards, infos)
        for info in infos:
            for key, column in self.episode_ends.items():
                if key in info:
                    column.append(info[key])

    def record(self, record: Callable[..., None], n_layers: int) -> None:
        """``env/*``: reward per decision and per second, outcomes per finished request, the
        edge's batch and KV occupancy per decision, session-return rates per episode end."""
        if not self.info["dt"]:
            return

        def total(key: str) -> float:
            return float(np.sum(np.asarray(self.info[key], dtype=np.float64)))

        rewards = np.asarray(self.reward, dtype=np.float64)
        record("env/reward", float(rewards.mean()))
        if total("dt") > 0:
            record("env/reward_per_s", float(rewards.sum()) / total("dt"))
        finished = total("n_finished")
        record("env/finished_per_decision", finished / len(self.info["dt"]))
        if finished > 0:
            for key, tag in CELL_PER_REQUEST_TAGS.items():
                record(tag, total(key) / finished)
        for key, tag in CELL_PER_DECISION_TAGS.items():
            record(tag, float(np.asarray(self.info[key], dtype=np.float64).mean()))
        for key, tag in CELL_EPISODE_TAGS.items():
            if self.episode_ends[key]:
                record(tag, float(np.mean(self.episode_ends[key])))
        self.record_tiers(record, n_layers)


class TrainingMonitor(BaseCallback):
    """Step-info metrics per rollout, periodic validation, checkpoints and progress.

    Evaluations and checkpoints happen at rollout starts: the first at or after each multiple
    of their interval; the first evaluation at the run's (or resume's) first step, the first
    checkpoint at the next multiple after it.
    """

    def __init__(
        self,
        recorder: RunRecorder,
        eval_every: int,
        checkpoint_every: int,
        hparams: dict[str, Any] | None,
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.eval_every = eval_every
        self.checkpoint_every = checkpoint_every
        self.hparams = hparams  # logged once, at the start of a fresh run
        self.progress = recorder.progress
        self.n_layers = recorder.spec.n_layers
        self.new_metrics = CellStepMetrics if recorder.spec.cell else StepMetrics
        self.metrics = self.new_metrics()
        self.start_step = 0
        self.start_time = 0.0
        self._next_eval = 0  # both set from the start step in _on_training_start
        self._next_ckpt = 0

    def _on_training_start(self) -> None:
        self.start_step = self.num_timesteps
        self.start_time = time.perf_counter()
        self._next_eval = self.start_step
        self._next_ckpt = self._next_multiple(self.start_step, self.checkpoint_every)
        if self.hparams is not None:
            metrics = {"eval/mean_reward": 0.0}
            self.logger.record("hparams", HParam(self.hparams, metrics), exclude=NOT_IN_TEXT_LOGS)
        self.metrics = self.new_metrics()

    def _on_rollout_start(self) -> None:
        n = self.num_timesteps
        if n >= self._next_eval:
            self.recorder.evaluate(n)
            self._next_eval = self._next_multiple(n, self.eval_every)
        if n >= self._next_ckpt:
            self.recorder.checkpoint(n)
            self._next_ckpt = self._next_multiple(n, self.checkpoint_every)

    def _on_step(self) -> bool:
        self.metrics.add(self.locals.get("rewards"), self.locals.get("infos", ()))
        if self.n_calls % 16 == 0:
            self.progress.update(self.num_timesteps)
        return True

    def _on_rollout_end(self) -> None:
        self.metrics.record(self.logger.record, self.n_layers)
        self.metrics = self.new_metrics()
        elapsed = time.perf_counter() - self.start_time
        if elapsed > 0:
            steps_per_s = (self.num_timesteps - self.start_step) / elapsed
            self.logger.record("perf/env_steps_per_s", steps_per_s)
        self.progress.update(self.num_timesteps)

    @staticmethod
    def _next_multiple(step: int, every: int) -> int:
        return (step // every + 1) * every
