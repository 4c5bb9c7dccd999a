"""A trained MaskablePPO agent as a deployable policy: ``sb3:PATH`` in ``offload-rl evaluate``.

``PATH`` is a run folder (its ``final/``, else its newest complete checkpoint), a ``final/`` or
``checkpoints/step_N/`` folder, or a ``model.zip`` with ``vecnormalize.pkl`` beside it.

The policy sees what a deployed one sees: a :class:`DecisionState` and the action mask. It
encodes the state with the one shared encoder, normalises it with the statistics saved with
the model (``clip((obs - mean) / sqrt(var + eps), ±clip)``, exactly ``VecNormalize``), and
takes the deterministic masked action (argmax of the logits, masked ones set to -1e8 as in
:data:`serving.policy_file.MASKED_LOGIT`), the same path as
``MaskablePPO.predict(obs, deterministic=True, action_masks=mask)``.

Importing this module registers the ``sb3`` prefix with :mod:`agents.policies`; torch and
stable-baselines3 are imported only when a policy is loaded.
"""

from __future__ import annotations

import hashlib
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
from offload_rl.scenario_facts import policy_feature_spec

if TYPE_CHECKING:
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from stable_baselines3.common.vec_env import VecNormalize


@dataclass(frozen=True)
class ObsNormalization:
    """The observation statistics of a ``VecNormalize`` wrapper, frozen for inference.

    The one copy of SB3's formula outside SB3: evaluation (``sb3:``) applies it, the exporter
    bakes :attr:`std` into the graph, training records it in ``meta.json`` with its
    :func:`normalization_digest`.
    """

    mean: np.ndarray  # float64
    var: np.ndarray  # float64
    clip_obs: float
    epsilon: float

    @property
    def std(self) -> np.ndarray:
        """``sqrt(var + epsilon)`` in float64, as ``VecNormalize.normalize_obs`` computes it."""
        return np.sqrt(self.var + self.epsilon)

    def apply(self, obs: np.ndarray) -> np.ndarray:
        """``VecNormalize.normalize_obs`` (float64 arithmetic, float32 result), updating nothing."""
        scaled = (obs - self.mean) / self.std
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    @classmethod
    def from_vecnormalize(cls, vn: VecNormalize) -> ObsNormalization | None:
        """A snapshot of ``vn``'s statistics (``None`` when it does not normalise obs)."""
        if not vn.norm_obs:
            return None
        rms: Any = vn.obs_rms
        if isinstance(rms, dict):
            raise ConfigError("dict observations are not supported")
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

    @classmethod
    def from_json(cls, data: Any) -> ObsNormalization:
        """What :meth:`to_json` wrote; ``ValueError`` says what is wrong."""
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            var = np.asarray(data["var"], dtype=np.float64)
            clip_obs, epsilon = float(data["clip_obs"]), float(data["epsilon"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{type(err).__name__}: {err}") from None
        if mean.ndim != 1 or mean.shape != var.shape:
            raise ValueError(f"mean {mean.shape} and var {var.shape} are not one vector each")
        return cls(mean=mean, var=var, clip_obs=clip_obs, epsilon=epsilon)


def normalization_digest(norm: ObsNormalization | None) -> str:
    """sha256 of the statistics as float64 bytes (``"none"`` when obs are not normalised).

    Training writes it beside the statistics in ``meta.json``: the exporter's parity check
    applies the same statistics on both sides and cannot see them changed, the digest can.
    JSON round-trips float64 exactly, so statistics read back from ``meta.json`` hash alike.
    """
    h = hashlib.sha256(b"offload-rl/obs-normalization/1\0")
    if norm is None:
        h.update(b"none")
        return h.hexdigest()
    for part in (norm.mean, norm.var, np.array([norm.clip_obs, norm.epsilon])):
        array = np.ascontiguousarray(part, dtype="<f8")
        h.update(repr(array.shape).encode())
        h.update(array.tobytes())
    return h.hexdigest()


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
    """The statistics in a saved ``vecnormalize.pkl`` (needs stable-baselines3 to unpickle;
    the pickle of one's own run is trusted input)."""
    try:
        with path.open("rb") as fh:
            vn = pickle.load(fh)
        return ObsNormalization.from_vecnormalize(vn)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except Exception as err:  # unpickling raises whatever the pickled classes raise
        raise ConfigError(f"{path}: cannot read the normalisation statistics ({err})") from None


def load_sb3_policy(path: str, scenario: Scenario) -> SB3Policy:
    """Loader of ``sb3:PATH`` specs (module-level: evaluation sends it to worker processes)."""
    try:
        from sb3_contrib import MaskablePPO
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ConfigError(f"sb3:{path} needs the 'train' extra (sb3-contrib): {err}") from None
    folder = find_model_dir(path)
    model_file = Path(path) if Path(path).is_file() else folder / MODEL_FILE
    meta = read_meta(folder)
    spec = policy_feature_spec(scenario)
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
    recorded = meta.get("feature_spec")
    if not isinstance(recorded, dict):
        return
    try:
        trained = FeatureSpec.from_dict(recorded)
    except ValueError as err:
        raise ConfigError(f"sb3:{path}: meta.json feature_spec: {err}") from None
    want = {**spec.to_dict(), "feature_schema_version": FEATURE_SCHEMA_VERSION}
    have = {**trained.to_dict(), "feature_schema_version": recorded.get("feature_schema_version")}
    diff = [f"{k}: trained {have[k]!r}, scenario {v!r}" for k, v in want.items() if have[k] != v]
    if diff:
        raise ConfigError(f"sb3:{path} does not fit this scenario ({'; '.join(diff)})")


def _register() -> None:
    try:
        from agents.policies import register_policy_loader
    except ModuleNotFoundError:  # pragma: no cover - the registry is optional for this module
        return
    register_policy_loader("sb3", load_sb3_policy)


_register()
