"""Discounting by elapsed time: GAE with a per-step discount ``gamma_per_s ** dt`` and the
truncation bootstrap of a continuing environment (agents.training.time_discount)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

pytest.importorskip("sb3_contrib")

import torch as th
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.training.time_discount import (
    TimeDiscountedMaskablePPO,
    TimeDiscountedRolloutBuffer,
    step_discounts,
)

OBS = spaces.Box(0.0, 1.0, (2,), np.float32)
ACT = spaces.Discrete(4)


def _fill(
    buffer: MaskableRolloutBuffer,
    rewards: np.ndarray,
    values: np.ndarray,
    starts: np.ndarray,
    discounts: np.ndarray | None,
) -> None:
    """Add ``T`` steps of ``E`` envs (arrays of shape (T, E)) to ``buffer``."""
    buffer.reset()
    steps, n_envs = rewards.shape
    for t in range(steps):
        extra = {} if discounts is None else {"discounts": discounts[t]}
        buffer.add(
            np.zeros((n_envs, 2), dtype=np.float32),
            np.zeros((n_envs, 1)),
            rewards[t].astype(np.float32),
            starts[t].astype(np.float32),
            th.as_tensor(values[t].astype(np.float32).reshape(n_envs, 1)),
            th.zeros(n_envs),
            **extra,
        )


def test_gae_with_time_discounts_matches_a_hand_computed_reference() -> None:
    # env 0: dt = 1, 2, 3, 1 s at gamma_per_s = 1/2, so g = 1/2, 1/4, 1/8, 1/2; its second
    # episode starts at step 3. env 1: dt = 0 throughout (g = 1). lambda = 1/2. All numbers
    # are dyadic, so float32 holds them exactly.
    buffer = TimeDiscountedRolloutBuffer(4, OBS, ACT, "cpu", gae_lambda=0.5, gamma=0.99, n_envs=2)
    rewards = np.array([[1, 1], [2, 1], [4, 1], [8, 1]], dtype=np.float64)
    values = np.array([[0.5, 0], [1, 0], [2, 0], [4, 0]], dtype=np.float64)
    starts = np.array([[1, 1], [0, 0], [0, 0], [1, 0]], dtype=np.float64)
    dts = np.array([[1, 0], [2, 0], [3, 0], [1, 0]], dtype=np.float64)
    _fill(buffer, rewards, values, starts, np.power(0.5, dts))
    buffer.compute_returns_and_advantage(
        last_values=th.tensor([[16.0], [0.0]]), dones=np.array([False, False])
    )
    # env 0, backwards:
    #   step 3: 8 + 1/2 * 16 - 4 = 12
    #   step 2: last step of its episode: 4 - 2 = 2
    #   step 1: delta = 2 + 1/4 * 2 - 1 = 1.5;  A = 1.5 + 1/4 * 1/2 * 2 = 1.75
    #   step 0: delta = 1 + 1/2 * 1 - 0.5 = 1;  A = 1 + 1/2 * 1/2 * 1.75 = 1.4375
    # env 1 (g = 1, V = 0): A_t = 1 + 1/2 * A_{t+1}: 1, 1.5, 1.75, 1.875
    want_adv = np.array([[1.4375, 1.875], [1.75, 1.75], [2, 1.5], [12, 1]], dtype=np.float32)
    np.testing.assert_array_equal(buffer.advantages, want_adv)
    np.testing.assert_array_equal(buffer.returns, want_adv + values.astype(np.float32))


# (0.9, 0.95): float32(gamma) * float32(lambda) != float32(gamma * lambda), so the rounding
# of the products matters too
@pytest.mark.parametrize(("seed", "gamma", "lam"), [(0, 0.93, 0.9), (1, 0.9, 0.95), (2, 0.5, 1.0)])
def test_with_every_dt_one_the_numbers_are_sb3s_bit_for_bit(
    seed: int, gamma: float, lam: float
) -> None:
    rng = np.random.default_rng(seed)
    steps, n_envs = 9, 3
    rewards = rng.normal(size=(steps, n_envs))
    values = rng.normal(size=(steps, n_envs))
    starts = (rng.random((steps, n_envs)) < 0.3).astype(np.float64)
    last = th.as_tensor(rng.normal(size=(n_envs, 1)).astype(np.float32))
    dones = rng.random(n_envs) < 0.5
    ours = TimeDiscountedRolloutBuffer(steps, OBS, ACT, "cpu", lam, gamma=0.1, n_envs=n_envs)
    sb3 = MaskableRolloutBuffer(steps, OBS, ACT, "cpu", lam, gamma=gamma, n_envs=n_envs)
    infos = [{"dt": 1.0}] * n_envs
    _fill(ours, rewards, values, starts, np.stack([step_discounts(infos, gamma)] * steps))
    _fill(sb3, rewards, values, starts, None)
    ours.compute_returns_and_advantage(last, dones)
    sb3.compute_returns_and_advantage(last, dones)
    np.testing.assert_array_equal(ours.advantages, sb3.advantages)
    np.testing.assert_array_equal(ours.returns, sb3.returns)


@pytest.mark.parametrize("dt", [None, -1.0, float("nan")])
def test_a_missing_or_bad_dt_is_an_error_not_a_discount_of_one(dt: float | None) -> None:
    info = {} if dt is None else {"dt": dt}
    with pytest.raises(ValueError, match=r"environment 1: info\['dt'\]"):
        step_discounts([{"dt": 1.0}, info], 0.9)


class TimedEnv(gym.Env[np.ndarray, np.int64]):
    """A continuing toy with timed steps: never terminates, truncates every ``length`` steps;
    ``dt`` cycles through ``dts``; it remembers the observation each episode was cut at."""

    def __init__(self, dts: tuple[float, ...], length: int = 5) -> None:
        self.observation_space = OBS
        self.action_space = ACT
        self.dts = dts
        self.length = length
        self.final_obs: list[np.ndarray] = []
        self._i = 0
        self._k = 0

    def _obs(self) -> np.ndarray:
        return self.np_random.random(2).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._i = 0
        return self._obs(), {}

    def action_masks(self) -> np.ndarray:
        return np.array([True, True, False, True])

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        dt = self.dts[self._k % len(self.dts)]
        self._k += 1
        self._i += 1
        obs = self._obs()
        truncated = self._i >= self.length
        if truncated:
            self.final_obs.append(obs)
        return obs, -1.0 - 0.1 * int(action), False, truncated, {"dt": dt}


def _collect(model: MaskablePPO) -> None:
    """One rollout, as ``learn`` collects it (no update)."""
    _, callback = model._setup_learn(total_timesteps=model.n_steps * model.n_envs)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)  # type: ignore[arg-type]


def _model(cls: type[MaskablePPO], dts: tuple[float, ...], **kwargs: Any) -> MaskablePPO:
    venv = DummyVecEnv([lambda: TimedEnv(dts), lambda: TimedEnv(dts)])
    venv.seed(7)
    return cls("MlpPolicy", venv, n_steps=12, batch_size=24, seed=3, device="cpu", **kwargs)


def test_truncation_bootstraps_with_the_value_of_the_cut_state_discounted_by_its_dt() -> None:
    dts = (0.5, 2.0, 7.0)  # every truncation falls on dt = 2.0 (step 5 of each env: k = 4, 9)
    model = _model(TimeDiscountedMaskablePPO, dts, gamma_per_s=0.9, gae_lambda=0.8)
    _collect(model)
    buffer = model.rollout_buffer
    assert isinstance(buffer, TimeDiscountedRolloutBuffer)
    rewards = -1.0 - 0.1 * buffer.actions[..., 0]
    for e, env in enumerate(model.env.envs):  # type: ignore[union-attr]
        cut = [t for t in range(buffer.buffer_size) if (t + 1) % 5 == 0]
        assert len(env.final_obs) == len(cut) == 2
        with th.no_grad():
            v = model.policy.predict_values(th.as_tensor(np.stack(env.final_obs))).numpy()[:, 0]
        g = [0.9 ** dts[t % 3] for t in cut]
        want = rewards[cut, e] + np.array(g) * v
        np.testing.assert_allclose(buffer.rewards[cut, e], want, rtol=1e-6)
        assert not np.any(buffer.rewards[cut, e] == rewards[cut, e])  # the bootstrap is there
        others = [t for t in range(buffer.buffer_size) if t not in cut]
        np.testing.assert_allclose(buffer.rewards[others, e], rewards[others, e], rtol=1e-6)
        np.testing.assert_allclose(buffer.discounts[:, e], [0.9 ** dts[t % 3] for t in range(12)])


def test_constant_dt_equals_sb3_with_the_equivalent_per_step_gamma() -> None:
    # a whole rollout (bootstraps, GAE) of the time-discounted algorithm at dt = 2 s is
    # MaskablePPO's at gamma = gamma_per_s ** 2, number for number
    # (each model built and run in turn: both start from the same torch and env seeds)
    ours = _model(TimeDiscountedMaskablePPO, (2.0,), gamma_per_s=0.9, gae_lambda=0.8)
    _collect(ours)
    sb3 = _model(MaskablePPO, (2.0,), gamma=0.9**2.0, gae_lambda=0.8)
    _collect(sb3)
    for name in ("actions", "rewards", "values", "advantages", "returns"):
        np.testing.assert_array_equal(
            getattr(ours.rollout_buffer, name), getattr(sb3.rollout_buffer, name), err_msg=name
        )
