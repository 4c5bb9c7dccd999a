"""Checks every environment of the project must pass, written once for both of them."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np


def random_valid(env: Any, rng: np.random.Generator) -> int:
    """A uniformly random action among those the environment's mask allows."""
    return int(rng.choice(np.flatnonzero(env.action_masks())))


def played(env: Any, seed: int, steps: int) -> Any:
    """``env`` reset with ``seed`` and ``steps`` random valid actions in (a generator seeded
    alike): a cell partway through its episode, for tests that fork or inspect it there."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        env.step(random_valid(env, rng))
    return env


def rollout(env: Any, seed: int, n: int, action_seed: int = 0) -> list:
    """``n`` steps of random valid actions from a seeded reset, observations copied."""
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    out: list = [obs.copy()]
    for _ in range(n):
        obs, r, term, trunc, info = env.step(random_valid(env, rng))
        out.append((obs.copy(), r, term, trunc, info))
        if term or trunc:
            obs, _ = env.reset()
    return out


def check_with_gymnasium(env: gym.Env) -> None:
    """Gymnasium's env checker, with every warning an error."""
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def check_with_sb3(env: gym.Env) -> None:
    """Stable-Baselines3's env checker, with every warning an error."""
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, warn=True)
