"""Discounting by elapsed time: MaskablePPO for a continuing environment whose steps are not evenly
spaced (EdgeCell-v0: one step per request, ``info["dt"]`` seconds to the next decision).

A per-step ``gamma`` would make the value of a second depend on how busy the cell is: at twice
the load, twice as many decisions fall into the same minute, and a fixed ``gamma`` per decision
halves the horizon in seconds. Decima (Mao et al., SIGCOMM 2019) discounts by time instead; so
does this module. The discount between decision ``t`` and ``t + 1`` is

    g_t = gamma_per_s ** dt_t

and GAE runs with it step by step (``lambda`` stays per step: it trades bias for variance over
estimates, not value over time)::

    delta_t = r_t + g_t * V(s_{t+1}) * (1 - start_{t+1}) - V(s_t)
    A_t     = delta_t + g_t * lambda * (1 - start_{t+1}) * A_{t+1}
    R_t     = A_t + V(s_t)

The reward ``r_t`` is the cost accrued over ``[t, t + dt_t)``, undiscounted within the interval.
EdgeCell-v0 never terminates, only truncates: at a truncation SB3 adds ``gamma * V(s_final)``
to the reward (the value of the state the episode was cut at); here it adds ``g_t * V(s_final)``.
With every ``dt = 1`` and ``gamma_per_s = gamma`` both are exactly SB3's numbers (the tests
check it, float32 rounding included).

:class:`TimeDiscountedMaskablePPO` differs from sb3-contrib's ``MaskablePPO`` only in
``collect_rollouts``: the step's discounts are read from the infos and handed to the buffer with
the step, and the truncation bootstrap uses them. The rest of that method is sb3-contrib 2.9.2's,
kept in its order so that a diff against it stays short.

Imports SB3 and torch at module level: only the training code imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

DT_KEY = "dt"  # the info key of the seconds between a decision and the next one


def step_discounts(infos: Sequence[dict[str, Any]], gamma_per_s: float) -> np.ndarray:
    """``gamma_per_s ** info["dt"]`` for each environment's step (float64).

    A missing, negative or non-finite ``dt`` is an error: silently discounting by 1 would turn
    the time discount off without anyone noticing.
    """
    dts = np.empty(len(infos), dtype=np.float64)
    for i, info in enumerate(infos):
        dt = info.get(DT_KEY)
        if dt is None or not np.isfinite(dt) or dt < 0:
            raise ValueError(
                f"environment {i}: info[{DT_KEY!r}] is {dt!r}; discounting by elapsed time "
                "needs the seconds to the next decision (EdgeCell-v0 sets it)"
            )
        dts[i] = dt
    return np.power(gamma_per_s, dts)


class TimeDiscountedRolloutBuffer(MaskableRolloutBuffer):
    """``MaskableRolloutBuffer`` whose GAE uses each step's own discount (module docstring).

    ``gamma`` (SB3's argument) is ignored by :meth:`compute_returns_and_advantage`; the
    discounts arrive with each :meth:`add`.
    """

    discounts: np.ndarray  # (buffer_size, n_envs) float64: g_t of each stored step

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
    ) -> None:
        super().__init__(
            buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs
        )

    def reset(self) -> None:
        self.discounts = np.ones((self.buffer_size, self.n_envs), dtype=np.float64)
        super().reset()

    def add(  # type: ignore[override]
        self, *args: Any, discounts: np.ndarray, **kwargs: Any
    ) -> None:
        """SB3's ``add`` and the discounts ``g_t`` of the step (one per environment)."""
        self.discounts[self.pos] = np.asarray(discounts, dtype=np.float64).reshape(self.n_envs)
        super().add(*args, **kwargs)

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: np.ndarray) -> None:
        """GAE with ``g_t`` in place of ``gamma``. The products are rounded to float32 where
        SB3 rounds them (``gamma * V`` and ``gamma * lambda``), so ``g_t = gamma`` reproduces
        its numbers bit for bit."""
        last = last_values.clone().cpu().numpy().flatten()
        last_gae_lam: Any = 0
        for step in reversed(range(self.buffer_size)):
            if step == self.buffer_size - 1:
                next_non_terminal = 1.0 - dones.astype(np.float32)
                next_values = last
            else:
                next_non_terminal = 1.0 - self.episode_starts[step + 1]
                next_values = self.values[step + 1]
            g = self.discounts[step]
            g_value = g.astype(np.float32)
            g_trace = (g * self.gae_lambda).astype(np.float32)
            delta = self.rewards[step] + g_value * next_values * next_non_terminal
            delta = delta - self.values[step]
            last_gae_lam = delta + g_trace * next_non_terminal * last_gae_lam
            self.advantages[step] = last_gae_lam
        self.returns = self.advantages + self.values


class TimeDiscountedMaskablePPO(MaskablePPO):
    """MaskablePPO with GAE and truncation bootstrap discounted by ``info["dt"]``.

    ``gamma_per_s`` is saved with the model, so a resumed run discounts as it began.
    """

    def __init__(self, *args: Any, gamma_per_s: float = 0.99, **kwargs: Any) -> None:
        if not 0.0 < gamma_per_s <= 1.0:
            raise ValueError(f"gamma_per_s must be in (0, 1], got {gamma_per_s}")
        self.gamma_per_s = float(gamma_per_s)
        kwargs.setdefault("rollout_buffer_class", TimeDiscountedRolloutBuffer)
        super().__init__(*args, **kwargs)

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
        use_masking: bool = True,
    ) -> bool:
        """sb3-contrib's ``collect_rollouts``; the discounts come from the step's infos."""
        assert isinstance(rollout_buffer, TimeDiscountedRolloutBuffer), (
            "time discounting needs a TimeDiscountedRolloutBuffer"
        )
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        n_steps = 0
        action_masks = None
        rollout_buffer.reset()
        if use_masking and not is_masking_supported(env):
            raise ValueError("the environment does not support action masking")
        callback.on_rollout_start()
        while n_steps < n_rollout_steps:
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                if use_masking:
                    action_masks = get_action_masks(env)
                actions, values, log_probs = self.policy(obs_tensor, action_masks=action_masks)
            actions = actions.cpu().numpy()
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            discounts = step_discounts(infos, self.gamma_per_s)  # changed: g_t per env
            for idx, done in enumerate(dones):
                if (
                    done
                    and infos[idx].get("terminal_observation") is not None
                    and infos[idx].get("TimeLimit.truncated", False)
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.no_grad():
                        terminal_value = self.policy.predict_values(terminal_obs)[0]
                    rewards[idx] += float(discounts[idx]) * terminal_value  # changed: g_t
            rollout_buffer.add(
                self._last_obs,
                actions,
                rewards,
                self._last_episode_starts,
                values,
                log_probs,
                action_masks=action_masks,
                discounts=discounts,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
        with th.no_grad():
            values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))  # type: ignore[arg-type]
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.on_rollout_end()
        return True
