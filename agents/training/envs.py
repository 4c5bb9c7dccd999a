"""Training environments: module-level factories, so that ``SubprocVecEnv``'s forkserver
workers can import them, and a reset wrapper that balances trace families.

A scenario with a ``cell:`` section trains on EdgeCell-v0 (its masks through the env's own
``action_masks()``, as MaskablePPO wants). There the balanced draw pins device 0's trace; the
other devices draw theirs from the scenario's traces with the episode's workload seed, so every
family appears in every cell, and device 0 keeps a family with few files from being rare.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from offload_rl.scenario_facts import ResolvedScenario

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from envs.edge_cell import EdgeCellEnv
    from envs.split_cache import SplitCacheEnv


class FamilyBalancedReset(gym.Wrapper[np.ndarray, np.int64, np.ndarray, np.int64]):
    """Training episodes draw a trace family uniformly, then a trace within it.

    The environment draws a trace uniformly, so a family with many files (FCC: 350) would
    otherwise dominate a mixed training set. Pinned resets (``options["trace"]``) pass through.
    """

    def __init__(self, env: SplitCacheEnv | EdgeCellEnv) -> None:
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
    """One training environment (episode length from the scenario): EdgeCell-v0 for a scenario
    with a ``cell:`` section, else SplitCache-v0."""
    env: SplitCacheEnv | EdgeCellEnv
    if resolved.scenario.cell is not None:
        from envs.edge_cell import EdgeCellEnv

        env = EdgeCellEnv(resolved)
    else:
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
