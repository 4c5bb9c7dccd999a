"""A trained MaskablePPO agent as a deployable policy: ``sb3:PATH`` in ``offload-rl evaluate``.

``PATH`` is a run folder (its ``final/``, else its newest complete checkpoint), a ``final/`` or
``checkpoints/step_N/`` folder, or a ``model.zip`` with ``vecnormalize.pkl`` beside it.

The policy sees what a deployed one sees: a :class:`DecisionState` and the action mask. It
encodes the state with the one shared encoder, normalises it with the statistics saved with
the model (``clip((obs - mean) / sqrt(var + eps), ±clip)``, exactly ``VecNormalize``), and
takes the deterministic masked action (argmax of the logits, masked ones set to -1e8), the
same path as ``MaskablePPO.predict(obs, deterministic=True, action_masks=mask)``.

Importing this module registers the ``sb3`` prefix with :mod:`agents.policies`; torch and
stable-baselines3 are imported only when a policy is loaded.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.checkpoints import MODEL_FILE, VECNORMALIZE_FILE, find_model_dir, read_meta
from offload_rl.errors import ConfigError
from offload_rl.features import (
    FEATURE_SCHEMA_VERSION,
    DecisionState,
    FeatureSpec,
    encode_observation,
)
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import scenario_facts

if TYPE_CHECKING:
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from stable_baselines3.common.vec_env import VecNormalize

MASKED_LOGIT = -1e8
"""What sb3-contrib puts in place of a masked logit; serve-time code must use the same."""


@dataclass(frozen=True)
class ObsNormalization:
    """The observation statistics of a ``VecNormalize`` wrapper, frozen for inference."""

    mean: np.ndarray
    var: np.ndarray
    clip_obs: float
    epsilon: float

    def apply(self, obs: np.ndarray) -> np.ndarray:
        """``VecNormalize.normalize_obs``, without updating anything."""
        scaled = (obs - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    @classmethod
    def from_vecnormalize(cls, vn: VecNormalize) -> ObsNormalization | None:
        """A snapshot of ``vn``'s statistics (``None`` when it does not normalise obs)."""
        if not vn.norm_obs:
            return None
        rms: Any = vn.obs_rms
        return cls(
            mean=np.array(rms.mean, dtype=np.float64),
            var=np.array(rms.var, dtype=np.float64),
            clip_obs=float(vn.clip_obs),
            epsilon=float(vn.epsilon),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "var": self.var.tolist(),
            "clip_obs": self.clip_obs,
            "epsilon": self.epsilon,
        }


class SB3Policy:
    """Deterministic masked actions of a MaskablePPO actor (see the module docstring)."""

    deployable = True

    def __init__(
        self,
        policy: MaskableActorCriticPolicy,
        spec: FeatureSpec,
        normalization: ObsNormalization | None,
        name: str = "sb3",
    ) -> None:
        n_obs = int(policy.observation_space.shape[0])  # type: ignore[index]
        n_actions = int(policy.action_space.n)  # type: ignore[attr-defined]
        if n_obs != spec.obs_dim or n_actions != spec.layout.n_actions:
            raise ConfigError(
                f"policy {name!r} expects {n_obs} features and {n_actions} actions; the "
                f"scenario gives {spec.obs_dim} features and {spec.layout.n_actions} actions"
            )
        if normalization is not None and normalization.mean.shape != (n_obs,):
            raise ConfigError(f"policy {name!r}: normalisation statistics do not match its input")
        self.policy = policy
        self.spec = spec
        self.normalization = normalization
        self.name = name

    def reset(self) -> None:
        return None

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        obs = encode_observation(state, self.spec)
        return int(self.act_batch(obs[None, :], np.asarray(mask, dtype=bool)[None, :])[0])

    def act_batch(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Actions for a batch of *raw* (unnormalised) observations and their masks."""
        import torch

        x = self.normalization.apply(obs) if self.normalization is not None else obs
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(x, dtype=np.float32))
            dist = self.policy.get_distribution(t, action_masks=masks)
            actions = dist.get_actions(deterministic=True)
        return actions.cpu().numpy().astype(np.int64).reshape(-1)

    @classmethod
    def from_parts(
        cls,
        policy: MaskableActorCriticPolicy,
        spec: FeatureSpec,
        normalization: ObsNormalization | None,
        name: str = "sb3",
    ) -> SB3Policy:
        policy.set_training_mode(False)
        return cls(policy, spec, normalization, name=name)

    @classmethod
    def from_model(
        cls, model: Any, vecnormalize: VecNormalize | None, spec: FeatureSpec, name: str = "sb3"
    ) -> SB3Policy:
        """A view of a live model with a snapshot of its statistics (training evaluates so)."""
        norm = ObsNormalization.from_vecnormalize(vecnormalize) if vecnormalize else None
        return cls.from_parts(model.policy, spec, norm, name=name)


def load_obs_normalization(path: Path) -> ObsNormalization | None:
    """The statistics in a saved ``vecnormalize.pkl`` (needs stable-baselines3 to unpickle)."""
    try:
        with path.open("rb") as fh:
            vn = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise ConfigError(f"{path}: cannot read the normalisation statistics ({err})") from None
    return ObsNormalization.from_vecnormalize(vn)


def load_sb3_policy(path: str, scenario: Scenario) -> SB3Policy:
    """Loader of ``sb3:PATH`` specs (module-level: evaluation sends it to worker processes)."""
    try:
        from sb3_contrib import MaskablePPO
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ConfigError(f"sb3:{path} needs the 'train' extra (sb3-contrib): {err}") from None
    folder = find_model_dir(path)
    model_file = Path(path) if Path(path).is_file() else folder / MODEL_FILE
    meta = read_meta(folder)
    spec = scenario_facts(scenario).spec
    if meta is not None:
        _check_spec(meta, spec, path)
    vn_file = folder / VECNORMALIZE_FILE
    if vn_file.is_file():
        norm = load_obs_normalization(vn_file)
    elif meta is not None and meta.get("obs_normalization") is not None:
        raise ConfigError(f"{path}: trained with normalised observations but {vn_file} is missing")
    else:
        norm = None
    try:
        model = MaskablePPO.load(str(model_file), device="cpu")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ConfigError(f"{model_file}: cannot load the model ({err})") from None
    return SB3Policy.from_parts(model.policy, spec, norm, name=f"sb3:{path}")


def _check_spec(meta: dict[str, Any], spec: FeatureSpec, path: str) -> None:
    """The scenario must encode observations the way the policy was trained on."""
    trained = meta.get("feature_spec", {})
    want = {
        "n_layers": spec.n_layers,
        "history": spec.history,
        "k_priv": spec.k_priv,
        "outage_mbps": spec.outage_mbps,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
    }
    diff = [
        f"{k}: trained {trained.get(k)!r}, scenario {v!r}"
        for k, v in want.items()
        if k in trained and trained[k] != v
    ]
    if diff:
        raise ConfigError(f"sb3:{path} does not fit this scenario ({'; '.join(diff)})")


def _register() -> None:
    try:
        from agents.policies import register_policy_loader
    except ModuleNotFoundError:  # pragma: no cover - the registry is optional for this module
        return
    register_policy_loader("sb3", load_sb3_policy)


_register()
