"""Running every policy over the same cell episodes at every load level (EdgeCell-v0).

A scenario with a ``cell:`` section is evaluated here rather than on ``SplitCache-v0``. The
load levels scale the cell's session arrival rate (``cell.arrival_rate_scale``), so "latency
against cell load" compares policies on the same devices, traces and sessions, only denser.
Runs in this process: each (load, policy, episode) is re-seeded, so results are exact repeats.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.evaluation.cell_rollout import run_cell_episode
from agents.evaluation.episodes import build_episodes
from agents.evaluation.progress import ProgressBar
from agents.evaluation.result import EvaluationResult
from agents.policies import AnyPolicy, is_deployable, resolve_policy
from offload_rl.errors import ConfigError
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import resolve_scenario

DEFAULT_LOADS: tuple[float, ...] = (0.5, 1.0, 2.0)


def _at_load(scenario: Scenario, load: float) -> Scenario:
    """``scenario`` with its cell's arrival rate scaled by ``load`` on top of its own scale."""
    assert scenario.cell is not None
    scale = scenario.cell.arrival_rate_scale * load
    cell = scenario.cell.model_copy(update={"arrival_rate_scale": scale})
    return scenario.model_copy(update={"cell": cell})


def _check(specs: list[str], loaded: list[AnyPolicy], loads: Sequence[float], workers: int) -> None:
    """Refuse what the cell cannot do yet, by name, before any work starts."""
    hindsight = [s for s, p in zip(specs, loaded, strict=True) if not is_deployable(p)]
    if hindsight:
        raise ConfigError(
            f"--policies: {', '.join(hindsight)} reads SplitCache-v0's future and has no "
            "cell version yet; evaluate the cell with deployable policies"
        )
    if workers > 1:
        raise ConfigError("--workers: the cell is evaluated in one process; use --workers 1")
    if not loads or any(not (np.isfinite(x) and x > 0) for x in loads):
        raise ConfigError(f"--loads must be positive numbers, got {list(loads)}")


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
    from envs.edge_cell import EdgeCellEnv

    started = time.perf_counter()
    loaded = [resolve_policy(s, scenario, seed=seed) for s in specs]
    _check(specs, loaded, loads, workers)
    episodes = build_episodes(resolve_scenario(scenario), episodes_per_family, seed)
    records: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in specs}
    with ProgressBar(progress, len(loads) * len(specs) * len(episodes)) as bar:
        for load in loads:
            env = EdgeCellEnv(_at_load(scenario, load), episode_requests=scenario.episode.requests)
            for spec, policy in zip(specs, loaded, strict=True):
                for ep in episodes:
                    records[spec].append(run_cell_episode(policy, env, ep))
                    bar.advance()
    return EvaluationResult(
        policies=specs,
        deployable={s: True for s in specs},
        episodes=episodes,
        records=records,
        n_layers=env.layout.n_layers,
        args=dict(args or {}),
        wall_s=time.perf_counter() - started,
        workers=1,
        loads=tuple(float(x) for x in loads),
    )
