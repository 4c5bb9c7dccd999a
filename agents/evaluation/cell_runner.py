"""Running every policy over the same cell episodes at every load level (EdgeCell-v0).

A scenario with a ``cell:`` section is evaluated here rather than on ``SplitCache-v0``. The
load levels scale the cell's session arrival rate (``cell.arrival_rate_scale``), so "latency
against cell load" compares policies on the same devices, traces and sessions, only denser.

Each (load, policy, episode) is a self-contained task (the environment is re-seeded and the
policy reset at its start), so results do not depend on ``workers`` or on the order tasks run
in: with ``workers > 1`` they run in a pool of spawned processes, each building its
environments (one per load) and policies once, and are assembled in a fixed order, as
:mod:`agents.evaluation.runner` does for ``SplitCache-v0``. The hindsight ``oracle`` runs here
as :class:`agents.cell_oracle.CellOraclePolicy` and is reported as not deployable.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.evaluation.cell_rollout import run_cell_episode
from agents.evaluation.episodes import Episode, build_episodes
from agents.evaluation.pool import WorkerConfig, run_in_pool
from agents.evaluation.progress import ProgressBar
from agents.evaluation.result import EvaluationResult
from agents.oracle import OraclePolicy
from agents.policies import AnyPolicy, is_deployable, resolve_policy
from offload_rl.errors import ConfigError
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import resolve_scenario

if TYPE_CHECKING:
    from envs.edge_cell import EdgeCellEnv

DEFAULT_LOADS: tuple[float, ...] = (0.5, 1.0, 2.0)


def _at_load(scenario: Scenario, load: float) -> Scenario:
    """``scenario`` with its cell's arrival rate scaled by ``load`` on top of its own scale."""
    assert scenario.cell is not None
    scale = scenario.cell.arrival_rate_scale * load
    cell = scenario.cell.model_copy(update={"arrival_rate_scale": scale})
    return scenario.model_copy(update={"cell": cell})


def _check(specs: list[str], loaded: list[AnyPolicy], loads: Sequence[float], workers: int) -> None:
    """Refuse what the cell cannot do, by name, before any work starts."""
    single = [s for s, p in zip(specs, loaded, strict=True) if isinstance(p, OraclePolicy)]
    if single:
        raise ConfigError(
            f"--policies: {', '.join(single)} reads SplitCache-v0's future and has no cell version"
        )
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if not loads or any(not (np.isfinite(x) and x > 0) for x in loads):
        raise ConfigError(f"--loads must be positive numbers, got {list(loads)}")


_WORKER: dict[str, Any] = {}

Task = tuple[int, int, Episode]  # (load index, policy index, episode)
Record = dict[str, np.ndarray]


def _init_worker(config: WorkerConfig) -> None:
    """Remember the configuration (and register the parent's policy loaders)."""
    config.register_loaders()
    _WORKER.clear()
    _WORKER.update(config=config, envs={}, policies={})


def _env(load_index: int) -> EdgeCellEnv:
    """The environment of one load level, built once per process."""
    from envs.edge_cell import EdgeCellEnv

    envs: dict[int, EdgeCellEnv] = _WORKER["envs"]
    env = envs.get(load_index)
    if env is None:
        config: WorkerConfig = _WORKER["config"]
        scenario = _at_load(config.scenario, config.loads[load_index])
        env = envs[load_index] = EdgeCellEnv(scenario, episode_requests=config.requests)
    return env


def _run_task(load_index: int, policy_index: int, episode: Episode) -> tuple[int, int, int, Record]:
    """One (load, policy, episode) task; policies are built once per process and cached."""
    config: WorkerConfig = _WORKER["config"]
    cache: dict[int, AnyPolicy] = _WORKER["policies"]
    policy = cache.get(policy_index)
    if policy is None:
        spec = config.policies[policy_index]
        policy = cache[policy_index] = resolve_policy(spec, config.scenario, seed=config.seed)
    record = run_cell_episode(policy, _env(load_index), episode)
    return load_index, policy_index, episode.index, record


def evaluate_cell(
    specs: list[str],
    scenario: Scenario,
    episodes_per_family: int = 8,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
    args: dict[str, Any] | None = None,
    loads: Sequence[float] = DEFAULT_LOADS,
) -> EvaluationResult:
    """Every policy over the same pinned episodes at each load level (see the module)."""
    started = time.perf_counter()
    loaded = [resolve_policy(s, scenario, seed=seed) for s in specs]
    _check(specs, loaded, loads, workers)
    resolved = resolve_scenario(scenario)
    episodes = build_episodes(resolved, episodes_per_family, seed)
    config = WorkerConfig.for_run(scenario, specs, seed, loads)
    tasks = [(lv, p, ep) for lv in range(len(loads)) for p in range(len(specs)) for ep in episodes]
    with ProgressBar(progress, len(tasks)) as bar:
        if workers <= 1:
            _init_worker(config)
            _WORKER["policies"] = dict(enumerate(loaded))
            results = {}
            for lv, p, ep in tasks:
                results[(lv, p, ep.index)] = _run_task(lv, p, ep)[3]
                bar.advance()
            _WORKER.clear()  # the environments are not needed after the run
        else:
            done = run_in_pool(_run_task, tasks, workers, _init_worker, (config,), bar)
            results = {(lv, p, e): rec for lv, p, e, rec in done}
    records = {
        s: [results[(lv, p, ep.index)] for lv in range(len(loads)) for ep in episodes]
        for p, s in enumerate(specs)
    }
    return EvaluationResult(
        policies=specs,
        deployable={s: is_deployable(p) for s, p in zip(specs, loaded, strict=True)},
        episodes=episodes,
        records=records,
        n_layers=resolved.n_layers,
        args=dict(args or {}),
        wall_s=time.perf_counter() - started,
        workers=max(workers, 1),
        loads=config.loads,
    )
