"""The model a run trains: a fresh ``MaskablePPO`` (optionally warm-started), or the one a
checkpoint holds, each with its ``VecNormalize`` wrapper and the step it starts from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.checkpoints import MODEL_FILE, VECNORMALIZE_FILE
from agents.train_config import TrainConfig
from agents.training.checkpointing import check_checkpoint_fits
from agents.training.envs import make_env
from offload_rl.features import FeatureSpec
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import ResolvedScenario

if TYPE_CHECKING:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize


class LinearSchedule:
    """``learning_rate x progress_remaining`` (a class, so that it pickles into model.zip)."""

    def __init__(self, initial: float) -> None:
        self.initial = initial

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining


@dataclass
class Learner:
    """The model, its normalisation wrapper, the step it starts at, and its warm-start report."""

    model: MaskablePPO
    vecnorm: VecNormalize
    start: int
    warm_start: dict[str, Any] | None = None


def fresh_learner(
    config: TrainConfig,
    venv: VecEnv,
    resolved: ResolvedScenario,
    scenario: Scenario,
    say: Callable[[str], None],
) -> Learner:
    """A new model under a new ``VecNormalize``; with ``warm_start``, cloned from a heuristic."""
    from stable_baselines3.common.vec_env import VecNormalize

    norm = config.normalize
    vecnorm = VecNormalize(
        venv,
        norm_obs=norm.obs,
        norm_reward=norm.reward,
        clip_obs=norm.clip_obs,
        clip_reward=norm.clip_reward,
        gamma=config.ppo.gamma,
    )
    model = build_model(config, vecnorm, resolved.spec)  # the layout only: same in the cell
    if config.warm_start is None:
        return Learner(model, vecnorm, start=0)
    from agents.warm_start import warm_start

    cloned = warm_start(
        model,
        vecnorm if norm.obs else None,
        make_env(resolved, config.trace_sampling == "family"),
        scenario,
        config.warm_start,
        gamma=config.ppo.gamma,
        vf_coef=config.ppo.vf_coef,
        seed=config.seed,
        gamma_per_s=config.ppo.discount_per_second(),
    )
    say(
        f"warm start: cloned {cloned.policy} from {cloned.demonstrations} requests "
        f"(its reward {cloned.reference_mean_reward:.3f}) in "
        f"{cloned.collect_s + cloned.train_s:.0f} s; agreement "
        f"{cloned.train_agreement:.1%} on the demonstrations, "
        f"{cloned.heldout_agreement:.1%} held out"
    )
    return Learner(model, vecnorm, start=0, warm_start=cloned.as_dict())


def resumed_learner(config: TrainConfig, venv: VecEnv, ckpt: Path, spec: FeatureSpec) -> Learner:
    """The checkpoint's weights, optimiser state, step counter and normalisation statistics."""
    from stable_baselines3.common.vec_env import VecNormalize

    check_checkpoint_fits(ckpt, spec)
    vecnorm = VecNormalize.load(str(ckpt / VECNORMALIZE_FILE), venv)
    model = algorithm_class(config).load(str(ckpt / MODEL_FILE), env=vecnorm, device="cpu")
    start = int(model.num_timesteps)
    model.set_random_seed(config.seed + start)  # new episodes, not a replay
    return Learner(model, vecnorm, start=start)


def algorithm_class(config: TrainConfig) -> type[MaskablePPO]:
    """``MaskablePPO``, or its time-discounted variant when the config discounts per second
    (:mod:`agents.training.time_discount`)."""
    if config.ppo.discount_per_second() is not None:
        from agents.training.time_discount import TimeDiscountedMaskablePPO

        return TimeDiscountedMaskablePPO
    from sb3_contrib import MaskablePPO

    return MaskablePPO


def build_model(config: TrainConfig, env: VecEnv, spec: FeatureSpec) -> MaskablePPO:
    """A fresh ``MaskablePPO("MlpPolicy")`` with the config's hyper-parameters (discounting
    by elapsed time when the config gives a discount per second)."""
    import torch

    ppo = config.ppo
    lr: Any = (
        LinearSchedule(ppo.learning_rate) if ppo.lr_schedule == "linear" else ppo.learning_rate
    )
    per_s = ppo.discount_per_second()
    extra: dict[str, Any] = {} if per_s is None else {"gamma_per_s": per_s}
    model = algorithm_class(config)(
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
        **extra,
    )
    if ppo.init_keep_logit:
        bias_keep_actions(model, spec, ppo.init_keep_logit)
    return model


def bias_keep_actions(model: MaskablePPO, spec: FeatureSpec, logit: float) -> None:
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
