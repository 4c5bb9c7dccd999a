"""Warm start: clone a reference policy into a fresh PPO agent before reinforcement learning.

Placement is close to a contextual bandit, and ``greedy`` already evaluates the environment's
own cost model: PPO from scratch spends its budget rediscovering that mapping and still trails
it. Starting from a clone moves the question to where learning can add something.

1. **Demonstrations** — run the reference policy in the training environment (same scenario,
   traces and family balance as PPO) for ``steps`` requests; record the raw observation, the
   action mask, the reference's action and the discounted return that followed (``gamma`` of
   the PPO config) as the critic's target.
2. **Normalisation** — the observations update ``VecNormalize``'s running statistics, so the
   clone and PPO see identically normalised inputs.
3. **Cloning** — masked cross-entropy on the actions plus ``vf_coef`` x mean squared error on
   the returns, with Adam, on all but a held-out tenth; the held-out agreement is reported.

The reference is resolved by name on the training scenario (:func:`agents.policies.resolve_policy`),
so in the cell ``greedy`` is whatever the cell's ``greedy`` is when the run starts; there the
critic's targets are discounted by elapsed time (``gamma_per_s ** info["dt"]``), as PPO's are.

The reference may be a hindsight policy (``oracle``): the clone still sees only the
observation, so it learns the oracle's choice *in expectation given what the device knows*
(which placement pays off, which session is worth keeping) and stays deployable.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.evaluate import decider
from agents.policies import resolve_policy

if TYPE_CHECKING:
    from collections.abc import Callable

    import gymnasium as gym
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.train_config import WarmStartConfig
    from offload_rl.scenario import Scenario


@dataclass
class Demonstrations:
    """What the reference did: one row per request."""

    obs: np.ndarray  # (N, obs_dim) float32, raw (not normalised)
    masks: np.ndarray  # (N, n_actions) bool
    actions: np.ndarray  # (N,) int64
    returns: np.ndarray  # (N,) float32, discounted with gamma within each episode
    mean_reward: float
    episodes: int


@dataclass
class CloneReport:
    """How well the clone matches its reference."""

    policy: str
    demonstrations: int
    reference_mean_reward: float
    collect_s: float
    train_s: float
    epochs: int
    final_loss: float
    train_agreement: float  # share of training rows where the clone's masked argmax agrees
    heldout_agreement: float  # same on the held-out tenth

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_demonstrations(
    env: gym.Env[Any, Any],
    policy_name: str,
    scenario: Scenario,
    steps: int,
    gamma: float,
    seed: int,
    gamma_per_s: float | None = None,
) -> Demonstrations:
    """Run ``policy_name`` in ``env`` (a training env, possibly wrapped) for ``steps`` requests.

    The returns discount by ``gamma`` per step, or, with ``gamma_per_s`` (EdgeCell-v0), by
    ``gamma_per_s ** info["dt"]`` between a decision and the next, as PPO will.
    """
    base: Any = env.unwrapped
    policy = resolve_policy(policy_name, scenario, seed=seed)
    decide: Callable[[], int] = decider(policy, base)
    obs_rows: list[np.ndarray] = []
    mask_rows: list[np.ndarray] = []
    actions: list[int] = []
    rewards: list[float] = []
    discounts: list[float] = []  # between each row and the next
    ends: list[int] = []  # index one past the last row of each episode
    obs, _ = env.reset(seed=seed)
    policy.reset()
    for _ in range(steps):
        obs_rows.append(obs)
        mask_rows.append(base.action_masks())
        action = decide()
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(float(reward))
        discounts.append(gamma if gamma_per_s is None else float(gamma_per_s ** info["dt"]))
        if terminated or truncated:
            ends.append(len(actions))
            obs, _ = env.reset()
            policy.reset()
    if not ends or ends[-1] != len(actions):
        ends.append(len(actions))  # the unfinished last episode: its tail is not bootstrapped
    returns = np.empty(len(rewards), dtype=np.float64)
    start = 0
    for end in ends:
        acc = 0.0
        for i in range(end - 1, start - 1, -1):
            acc = rewards[i] + discounts[i] * acc
            returns[i] = acc
        start = end
    return Demonstrations(
        obs=np.asarray(obs_rows, dtype=np.float32),
        masks=np.asarray(mask_rows, dtype=bool),
        actions=np.asarray(actions, dtype=np.int64),
        returns=returns.astype(np.float32),
        mean_reward=float(np.mean(rewards)),
        episodes=len(ends),
    )


def clone_into(
    model: MaskablePPO,
    vecnorm: VecNormalize | None,
    demos: Demonstrations,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    vf_coef: float,
    seed: int,
) -> tuple[float, float, float]:
    """Fit ``model.policy`` to the demonstrations; (final loss, train and held-out agreement)."""
    import torch

    obs = demos.obs
    if vecnorm is not None and vecnorm.norm_obs:
        vecnorm.obs_rms.update(obs.astype(np.float64))
        obs = np.asarray(vecnorm.normalize_obs(obs), dtype=np.float32)
    n = len(obs)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_hold = max(n // 10, 1) if n >= 20 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    policy = model.policy
    policy.set_training_mode(True)
    t_obs = torch.as_tensor(obs)
    t_act = torch.as_tensor(demos.actions)
    t_ret = torch.as_tensor(demos.returns)
    masks = torch.as_tensor(demos.masks)
    optimiser = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    loss_value = float("nan")
    for _ in range(epochs):
        rng.shuffle(fit)
        for lo in range(0, len(fit), batch_size):
            idx = fit[lo : lo + batch_size]
            values, log_prob, _ = policy.evaluate_actions(
                t_obs[idx], t_act[idx], action_masks=masks[idx]
            )
            loss = -log_prob.mean() + vf_coef * torch.mean((values.flatten() - t_ret[idx]) ** 2)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            optimiser.step()
            loss_value = float(loss.item())
    policy.set_training_mode(False)

    def agreement(rows: np.ndarray) -> float:
        if rows.size == 0:
            return float("nan")
        with torch.no_grad():
            dist = policy.get_distribution(t_obs[rows], action_masks=demos.masks[rows])
            chosen = dist.get_actions(deterministic=True).numpy()
        return float(np.mean(chosen == demos.actions[rows]))

    return loss_value, agreement(fit), agreement(hold)


def warm_start(
    model: MaskablePPO,
    vecnorm: VecNormalize | None,
    env: gym.Env[Any, Any],
    scenario: Scenario,
    config: WarmStartConfig,
    gamma: float,
    vf_coef: float,
    seed: int,
    gamma_per_s: float | None = None,
) -> CloneReport:
    """Collect demonstrations of ``config.policy`` in ``env`` and clone them into ``model``
    (``gamma_per_s``: discount the critic's targets by elapsed time, for EdgeCell-v0)."""
    t0 = time.perf_counter()
    demos = collect_demonstrations(
        env, config.policy, scenario, config.steps, gamma, seed, gamma_per_s
    )
    t1 = time.perf_counter()
    loss, fit_agree, hold_agree = clone_into(
        model,
        vecnorm,
        demos,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        vf_coef=vf_coef,
        seed=seed,
    )
    return CloneReport(
        policy=config.policy,
        demonstrations=len(demos.actions),
        reference_mean_reward=demos.mean_reward,
        collect_s=round(t1 - t0, 2),
        train_s=round(time.perf_counter() - t1, 2),
        epochs=config.epochs,
        final_loss=loss,
        train_agreement=fit_agree,
        heldout_agreement=hold_agree,
    )
