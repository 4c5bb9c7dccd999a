"""Running every policy over the same episode set, in this process or a process pool.

Results are independent of ``workers``: each (policy, episode) pair is a self-contained task
(the environment is re-seeded and the policy reset at its start) and results are assembled in a
fixed order. The worker side is module-level so that spawn/forkserver processes can import it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from agents.evaluation.cell_runner import DEFAULT_LOADS, evaluate_cell
from agents.evaluation.episodes import Episode, build_episodes
from agents.evaluation.pool import WorkerConfig, run_in_pool
from agents.evaluation.progress import ProgressBar
from agents.evaluation.result import EvaluationResult
from agents.evaluation.rollout import run_episode
from agents.policies import (
    AnyPolicy,
    is_deployable,
    resolve_policy,
)
from offload_rl.errors import ConfigError
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import ResolvedScenario, resolve_scenario

_WORKER: dict[str, Any] = {}


def _init_worker(config: WorkerConfig, resolved: ResolvedScenario) -> None:
    """Build the environment once per process (and register the parent's policy loaders).

    ``resolved`` holds only the traces the episode set uses (see :func:`_episode_subset`), so
    a worker reads no files and receives a few MB rather than every trace of every family.
    """
    from envs.split_cache import SplitCacheEnv

    config.register_loaders()
    _WORKER["config"] = config
    _WORKER["env"] = SplitCacheEnv(resolved, episode_requests=config.requests)
    _WORKER["policies"] = {}


def _run_task(policy_index: int, episode: Episode) -> tuple[int, int, dict[str, np.ndarray]]:
    """One (policy, episode) pair; policies are built once per process and cached."""
    config: WorkerConfig = _WORKER["config"]
    cache: dict[int, AnyPolicy] = _WORKER["policies"]
    policy = cache.get(policy_index)
    if policy is None:
        spec = config.policies[policy_index]
        policy = resolve_policy(spec, config.scenario, seed=config.seed)
        cache[policy_index] = policy
    return policy_index, episode.index, run_episode(policy, _WORKER["env"], episode)


def evaluate(
    policies: Sequence[str],
    scenario: Scenario,
    episodes_per_family: int = 8,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
    args: dict[str, Any] | None = None,
    loads: Sequence[float] | None = None,
) -> EvaluationResult:
    """Run every policy over the same episode set (see the module docstring).

    A scenario with a ``cell:`` section runs on EdgeCell-v0 at each of ``loads``
    (:func:`agents.evaluation.cell_runner.evaluate_cell`); ``loads`` is for the cell only.
    """
    started = time.perf_counter()
    specs = [p.strip() for p in policies if p.strip()]
    if not specs:
        raise ConfigError("--policies: give at least one policy")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"--policies: a policy is listed twice: {', '.join(specs)}")
    if scenario.cell is not None:
        return evaluate_cell(
            specs,
            scenario,
            episodes_per_family,
            seed,
            workers,
            progress,
            args,
            loads or DEFAULT_LOADS,
        )
    if loads is not None:
        raise ConfigError(
            f"--loads: scenario {scenario.name!r} has no cell; loads are for the cell"
        )
    # resolve every policy here first: bad names fail before any work starts
    loaded = [resolve_policy(s, scenario, seed=seed) for s in specs]
    deployable = {s: is_deployable(p) for s, p in zip(specs, loaded, strict=True)}
    resolved = resolve_scenario(scenario)
    episodes = build_episodes(resolved, episodes_per_family, seed)
    config = WorkerConfig.for_run(scenario, specs, seed)
    subset, runnable = _episode_subset(resolved, episodes)
    tasks = [(p, ep) for p in range(len(specs)) for ep in runnable]
    with ProgressBar(progress, len(tasks)) as bar:
        if workers <= 1:
            results = _run_here(config, subset, loaded, tasks, bar)
        else:
            results = _run_in_pool(config, subset, workers, tasks, bar)
    records = {s: [results[(p, ep.index)] for ep in episodes] for p, s in enumerate(specs)}
    return EvaluationResult(
        policies=specs,
        deployable=deployable,
        episodes=episodes,
        records=records,
        n_layers=resolved.n_layers,
        args=dict(args or {}),
        wall_s=time.perf_counter() - started,
        workers=max(workers, 1),
    )


Task = tuple[int, Episode]
Results = dict[tuple[int, int], dict[str, np.ndarray]]


def _run_here(
    config: WorkerConfig,
    subset: ResolvedScenario,
    loaded: list[Any],
    tasks: list[Task],
    bar: ProgressBar,
) -> Results:
    """Every task in this process, with the policies already loaded."""
    _init_worker(config, subset)
    _WORKER["policies"] = dict(enumerate(loaded))
    results: Results = {}
    for p, ep in tasks:
        _, _, rec = _run_task(p, ep)
        results[(p, ep.index)] = rec
        bar.advance()
    return results


def _run_in_pool(
    config: WorkerConfig,
    subset: ResolvedScenario,
    workers: int,
    tasks: list[Task],
    bar: ProgressBar,
) -> Results:
    """Every task in a pool of spawned worker processes, each loading the policies once."""
    done = run_in_pool(_run_task, tasks, workers, _init_worker, (config, subset), bar)
    return {(p, e): rec for p, e, rec in done}


def _episode_subset(
    resolved: ResolvedScenario, episodes: list[Episode]
) -> tuple[ResolvedScenario, list[Episode]]:
    """The scenario reduced to the traces the episodes use, and the episodes re-indexed into
    it (same traces, offsets and seeds: the environment's results do not change)."""
    used = sorted({ep.trace for ep in episodes})
    position = {t: i for i, t in enumerate(used)}
    subset = replace(
        resolved,
        uplinks=[resolved.uplinks[t] for t in used],
        downlinks=[resolved.downlinks[t] for t in used],
    )
    return subset, [replace(ep, trace=position[ep.trace]) for ep in episodes]
