"""Export a trained MaskablePPO to one ONNX file the decision service can run without torch.

The graph is a small module of our own, not SB3's ``policy.forward``: observation
normalisation (``VecNormalize`` statistics, baked in) → the actor MLP → action logits → mask →
argmax. No distribution objects, so it exports with the TorchScript exporter at opset 17 and a
dynamic batch axis (see NOTES.md, "ONNX export of an SB3 policy"). The normalisation runs in
float64 exactly as ``VecNormalize.normalize_obs`` does, so the graph's actions can be compared
with ``model.predict`` for equality, not closeness.

Nothing is written unless the exported graph chooses the same action as
``model.predict(normalised_obs, action_masks=mask, deterministic=True)`` on every one of
``parity`` observations (environment observations and random points of the observation box,
each with a random *valid* mask). That check applies the same statistics on both sides, so
the statistics are first checked against what training recorded (:func:`normalization_of`):
a ``meta.json`` or ``vecnormalize.pkl`` edited or corrupted since is refused, naming the file.

torch, stable-baselines3 and gymnasium are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.commands.export import UNVERIFIED_FLAG
from agents.sb3_policy import ObsNormalization, load_obs_normalization, normalization_digest
from offload_rl.errors import ConfigError, OffloadRLError
from offload_rl.features import (
    FEATURE_SCHEMA_VERSION,
    DecisionState,
    FeatureSpec,
    action_mask,
)
from offload_rl.scenario import Scenario, load_scenario
from offload_rl.scenario_facts import policy_feature_spec
from serving.policy_file import (
    INPUT_MASK,
    INPUT_OBS,
    MASKED_LOGIT,
    OUTPUT_ACTION,
    OUTPUT_LOGITS,
    build_metadata,
    set_metadata,
)
from serving.policy_runtime import OnnxPolicy, session_options

if TYPE_CHECKING:
    import onnx

META_REQUIRED: tuple[str, ...] = (
    "scenario",
    *FeatureSpec(n_layers=1).to_dict(),
    "obs_dim",
    "n_actions",
    "feature_schema_version",
    "num_timesteps",
)
OPSET = 17
DEFAULT_PARITY = 10_000
ENV_SHARE = 0.3  # share of the parity set drawn from real environment observations
DIGEST_KEY = "obs_normalization_sha256"  # written by agents.train.checkpoint_meta
UNVERIFIED = "nothing (accepted unverified)"
PROVENANCE_PREFIX = "provenance_"  # metadata keys of export_policy(provenance=...)


class ExportError(OffloadRLError):
    """The model cannot be exported (or the export does not match the model)."""


@dataclass(frozen=True)
class SavedModel:
    """A model directory of the training run (``RUN/final`` or ``RUN/checkpoints/step_N``)."""

    directory: Path
    model_zip: Path
    vecnormalize: Path | None
    meta: dict[str, Any]

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.meta)

    @property
    def meta_path(self) -> Path:
        return self.directory / "meta.json"


def describe_normalization(norm: ObsNormalization | None) -> dict[str, Any]:
    """The ``normalization`` entry of the policy metadata (the statistics are in the graph)."""
    if norm is None:
        return {"kind": "none"}
    return {
        "kind": "vecnormalize",
        "baked_into_graph": True,
        "formula": "clip((obs - mean) / sqrt(var + epsilon), -clip, clip)",
        "clip": norm.clip_obs,
        "epsilon": norm.epsilon,
    }


@dataclass(frozen=True)
class ExportReport:
    path: Path
    version: str
    statistics: str  # what the baked-in normalisation was checked against
    parity_checked: int
    parity_env: int
    size_bytes: int
    metadata: dict[str, str]


# --------------------------------------------------------------------------------------------
# Reading a saved model
# --------------------------------------------------------------------------------------------


def locate_saved_model(path: str | Path) -> SavedModel:
    """A run folder (its ``final/``, else its newest complete checkpoint), a ``final/`` or
    ``checkpoints/step_N/`` folder, or a ``model.zip`` with ``meta.json`` beside it."""
    from agents.checkpoints import find_model_dir

    p = Path(path)
    if not p.exists():
        raise ExportError(f"{p}: no such file or folder")
    try:
        directory = find_model_dir(p)
    except OffloadRLError as err:
        raise ExportError(str(err)) from None
    model_zip = p if p.is_file() else directory / "model.zip"
    meta_path = directory / "meta.json"
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ExportError(f"{meta_path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:
        raise ExportError(f"{meta_path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise ExportError(f"{meta_path}: expected a JSON object")
    # the feature spec may sit at the top level or under "feature_spec" (agents.train)
    nested = raw.get("feature_spec")
    meta = {**(nested if isinstance(nested, dict) else {}), **raw}
    missing = [k for k in META_REQUIRED if k not in meta]
    if missing:
        raise ExportError(f"{meta_path}: missing {', '.join(missing)}")
    vecnorm = directory / "vecnormalize.pkl"
    saved = SavedModel(directory, model_zip, vecnorm if vecnorm.is_file() else None, meta)
    _check_meta(saved, meta_path)
    return saved


def _check_meta(saved: SavedModel, meta_path: Path) -> None:
    m = saved.meta
    if str(m["feature_schema_version"]) != str(FEATURE_SCHEMA_VERSION):
        raise ExportError(
            f"{meta_path}: model trained on feature schema {m['feature_schema_version']}, the "
            f"encoder is at {FEATURE_SCHEMA_VERSION}; retrain it"
        )
    try:
        spec = saved.spec
        dims = (int(m["obs_dim"]), int(m["n_actions"]))
    except (TypeError, ValueError) as err:
        raise ExportError(f"{meta_path}: bad feature spec ({err})") from None
    if dims != (spec.obs_dim, spec.layout.n_actions):
        raise ExportError(
            f"{meta_path}: obs_dim={m['obs_dim']}, n_actions={m['n_actions']} do not match "
            f"n_layers={spec.n_layers}, history={spec.history} "
            f"(expected {spec.obs_dim} and {spec.layout.n_actions})"
        )


def normalization_of(
    saved: SavedModel, accept_unverified: bool = False
) -> tuple[ObsNormalization | None, str]:
    """The statistics to bake into the graph and what they were checked against.

    The parity check applies the same statistics on both sides, so it cannot see them wrong;
    they are checked here against a record training wrote: the ``obs_normalization_sha256``
    digest in ``meta.json`` (runs since the digest) and ``vecnormalize.pkl`` (SB3's own file).
    A folder with neither (a model trained before the digest, its pickle gone) is refused
    unless ``accept_unverified`` (:data:`UNVERIFIED_FLAG`) says to trust
    ``meta.json`` as it stands.
    """
    meta_path, pkl = saved.meta_path, saved.vecnormalize
    in_meta = "obs_normalization" in saved.meta
    recorded = _meta_statistics(saved) if in_meta else None
    pickled = _read_pickle(pkl) if pkl is not None else None
    digest = saved.meta.get(DIGEST_KEY)
    if digest is not None and normalization_digest(recorded) != digest:
        raise ExportError(
            f"{meta_path}: obs_normalization does not match its {DIGEST_KEY} written at "
            "training time (edited or corrupted statistics); nothing written"
        )
    if pkl is not None and digest is not None and normalization_digest(pickled) != digest:
        raise ExportError(
            f"{pkl}: statistics do not match the {DIGEST_KEY} training wrote in {meta_path} "
            "(edited, corrupted or from another run); nothing written"
        )
    differ = normalization_digest(pickled) != normalization_digest(recorded)
    if pkl is not None and digest is None and in_meta and differ:
        raise ExportError(
            f"{pkl}: statistics differ from obs_normalization in {meta_path}, and without an "
            f"{DIGEST_KEY} nothing tells which is right; nothing written"
        )
    if pkl is not None:
        checked = "vecnormalize.pkl" + (f" and the {DIGEST_KEY}" if digest else "")
        return _checked_shape(pickled, saved, pkl), checked
    if digest is not None:
        return _checked_shape(recorded, saved, meta_path), f"the {DIGEST_KEY} in meta.json"
    if not accept_unverified:
        raise ExportError(
            f"{meta_path}: no vecnormalize.pkl beside it and no {DIGEST_KEY} (a model trained "
            "before the digest): its normalisation statistics cannot be checked; pass "
            f"{UNVERIFIED_FLAG} to export them as they are"
        )
    return _checked_shape(recorded, saved, meta_path), UNVERIFIED


def _meta_statistics(saved: SavedModel) -> ObsNormalization | None:
    stats = saved.meta.get("obs_normalization")
    if stats is None:
        return None
    try:
        return ObsNormalization.from_json(stats)
    except ValueError as err:
        raise ExportError(f"{saved.meta_path}: bad obs_normalization ({err})") from None


def _read_pickle(path: Path) -> ObsNormalization | None:
    try:
        return load_obs_normalization(path)
    except ConfigError as err:
        raise ExportError(str(err)) from None


def _checked_shape(
    norm: ObsNormalization | None, saved: SavedModel, source: Path
) -> ObsNormalization | None:
    """Statistics for another observation width would broadcast into nonsense or fail late."""
    obs_dim = saved.spec.obs_dim
    if norm is not None and norm.mean.shape != (obs_dim,):
        raise ExportError(f"{source}: statistics of shape {norm.mean.shape}, expected ({obs_dim},)")
    return norm


def resolve_export_scenario(saved: SavedModel, override: str | None) -> Scenario:
    """The scenario to export for (``--scenario``, else the one the run names)."""
    ref = override or str(saved.meta["scenario"])
    try:
        scenario = load_scenario(ref)
    except ConfigError as err:
        hint = "" if override else " (pass --scenario if the run's scenario file moved)"
        raise ExportError(f"scenario of the model: {err}{hint}") from None
    spec = policy_feature_spec(scenario)
    if spec != saved.spec:
        raise ExportError(
            f"scenario {scenario.name!r} encodes {spec}, the model was trained for {saved.spec}"
        )
    return scenario


# --------------------------------------------------------------------------------------------
# The exported module
# --------------------------------------------------------------------------------------------


def build_export_module(model: Any, norm: ObsNormalization | None) -> Any:
    """features → actor MLP → logits → mask → argmax, as a plain ``torch.nn.Module``."""
    import copy

    import torch
    from stable_baselines3.common.torch_layers import FlattenExtractor

    policy = model.policy
    extractor = getattr(policy, "pi_features_extractor", policy.features_extractor)
    if not isinstance(extractor, FlattenExtractor):
        raise ExportError(
            f"features extractor {type(extractor).__name__} is not supported (MlpPolicy only)"
        )

    class ExportedPolicy(torch.nn.Module):
        mean: torch.Tensor
        std: torch.Tensor
        masked: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.actor = copy.deepcopy(policy.mlp_extractor.policy_net).float().eval()
            self.action_net = copy.deepcopy(policy.action_net).float().eval()
            self.normalize = norm is not None
            if norm is not None:
                self.register_buffer("mean", torch.as_tensor(norm.mean, dtype=torch.float64))
                self.register_buffer("std", torch.as_tensor(norm.std, dtype=torch.float64))
            self.clip = float(norm.clip_obs) if norm is not None else 0.0
            self.register_buffer("masked", torch.tensor(MASKED_LOGIT, dtype=torch.float32))

        def forward(self, obs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = obs
            if self.normalize:
                x = (obs.to(torch.float64) - self.mean) / self.std
                x = torch.clamp(x, -self.clip, self.clip).to(torch.float32)
            x = torch.flatten(x, start_dim=1)
            logits = self.action_net(self.actor(x))
            masked = torch.where(mask, logits, self.masked)
            return torch.argmax(masked, dim=1), masked

    return ExportedPolicy().eval()


def export_graph(module: Any, obs_dim: int, n_actions: int) -> onnx.ModelProto:
    """TorchScript export at opset 17 with a dynamic batch axis, weights inside the graph."""
    import onnx
    import torch

    obs = torch.rand(2, obs_dim, dtype=torch.float32)
    mask = torch.ones(2, n_actions, dtype=torch.bool)
    with (
        tempfile.TemporaryDirectory(prefix="offload-rl-export-") as tmp,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        path = Path(tmp) / "policy.onnx"
        torch.onnx.export(
            module,
            (obs, mask),
            path,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_OBS, INPUT_MASK],
            output_names=[OUTPUT_ACTION, OUTPUT_LOGITS],
            dynamic_axes={
                INPUT_OBS: {0: "batch"},
                INPUT_MASK: {0: "batch"},
                OUTPUT_ACTION: {0: "batch"},
                OUTPUT_LOGITS: {0: "batch"},
            },
        )
        data = path.read_bytes()
        if any(p != path for p in Path(tmp).iterdir()):
            raise ExportError("the exporter wrote weights to a side file; expected one file")
    model = onnx.load_model_from_string(data)
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------


def random_valid_masks(rng: np.random.Generator, n: int, spec: FeatureSpec) -> np.ndarray:
    """Valid masks: half from :func:`action_mask` on random states, half random subsets; every
    one keeps >= 1 valid action and forbids "cloud + keep"."""
    layout = spec.layout
    L, n_actions = spec.n_layers, layout.n_actions
    forbidden = layout.encode(layout.cloud_index, 1)
    masks = np.zeros((n, n_actions), dtype=bool)
    for i in range(n):
        if i % 2 == 0:
            newest = float(rng.choice([0.0, spec.outage_mbps * 0.5, 1.0, 20.0]))
            state = DecisionState(
                throughput_mbps=[1.0] * (spec.history - 1) + [newest],
                rtt_ms=20.0,
                new_tokens=100,
                context_tokens=0,
                turn=0,
                private=bool(rng.random() < 0.3),
                slo_ttft_s=1.0,
                slo_tpot_s=0.1,
                cached_split=None,
                cached_tokens=0,
                edge_kv_occupancy=0.0,
                edge_load=0.0,
                device_memory_layers=int(rng.integers(0, L + 1)),
            )
            masks[i] = action_mask(state, spec)
        else:
            m = rng.random(n_actions) < rng.uniform(0.05, 0.9)
            m[forbidden] = False
            if not m.any():
                choices = [a for a in range(n_actions) if a != forbidden]
                m[int(rng.choice(choices))] = True
            masks[i] = m
    return masks


def environment_samples(
    scenario: Scenario, spec: FeatureSpec, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` observations and masks of the real environment (EdgeCell-v0 for a scenario with a
    ``cell:`` section, else SplitCache-v0) under random valid actions."""
    env: Any
    if scenario.cell is not None:
        from envs.edge_cell import EdgeCellEnv

        env = EdgeCellEnv(scenario, episode_requests=64)
    else:
        from envs.split_cache import SplitCacheEnv

        env = SplitCacheEnv(scenario, episode_requests=64)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out_obs, out_mask = [], []
    for _ in range(n):
        mask = env.action_masks()
        out_obs.append(obs)
        out_mask.append(mask)
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        if terminated or truncated:
            obs, _ = env.reset()
    return (
        np.asarray(out_obs, dtype=np.float32).reshape(n, spec.obs_dim),
        np.asarray(out_mask, dtype=bool).reshape(n, spec.layout.n_actions),
    )


def parity_set(
    scenario: Scenario, spec: FeatureSpec, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Raw observations and valid masks for the parity check; also how many came from the env."""
    rng = np.random.default_rng(seed)
    n_env = int(n * ENV_SHARE)
    env_obs, env_masks = environment_samples(scenario, spec, n_env, seed)
    # half the env observations keep their own mask, half get random valid ones
    env_masks[1::2] = random_valid_masks(rng, len(env_masks[1::2]), spec)
    n_rand = n - n_env
    rand_obs = rng.random((n_rand, spec.obs_dim), dtype=np.float32)
    corners = rng.random(rand_obs.shape) < 0.1  # some exact 0/1 values, as binary features
    rand_obs[corners] = np.round(rand_obs[corners])
    rand_masks = random_valid_masks(rng, n_rand, spec)
    obs = np.concatenate([env_obs, rand_obs])
    masks = np.concatenate([env_masks, rand_masks])
    return obs, masks, n_env


def check_parity(
    model: Any,
    norm: ObsNormalization | None,
    onnx_bytes: bytes,
    obs: np.ndarray,
    masks: np.ndarray,
) -> None:
    """ONNX actions must equal ``model.predict(normalised_obs, masks, deterministic=True)``."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        onnx_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    got = np.concatenate(
        [
            session.run(
                [OUTPUT_ACTION], {INPUT_OBS: obs[i : i + 4096], INPUT_MASK: masks[i : i + 4096]}
            )[0]
            for i in range(0, len(obs), 4096)
        ]
    ).astype(np.int64)
    want = np.concatenate(
        [
            np.asarray(
                model.predict(
                    norm.apply(obs[i : i + 2048]) if norm is not None else obs[i : i + 2048],
                    action_masks=masks[i : i + 2048],
                    deterministic=True,
                )[0]
            ).reshape(-1)
            for i in range(0, len(obs), 2048)
        ]
    ).astype(np.int64)
    invalid = ~masks[np.arange(len(got)), got]
    if invalid.any():
        i = int(np.flatnonzero(invalid)[0])
        raise ExportError(
            f"parity: the ONNX graph chose masked actions on {int(invalid.sum())} of {len(got)} "
            f"observations (first: #{i}, action {int(got[i])}); nothing written"
        )
    diff = np.flatnonzero(got != want)
    if diff.size:
        i = int(diff[0])
        raise ExportError(
            f"parity: ONNX and model.predict disagree on {diff.size} of {len(got)} observations "
            f"(first: #{i}, ONNX {int(got[i])} vs predict {int(want[i])}); nothing written"
        )


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def _load_model(saved: SavedModel) -> Any:
    from sb3_contrib import MaskablePPO

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return MaskablePPO.load(saved.model_zip, device="cpu")
    except Exception as err:
        raise ExportError(f"{saved.model_zip}: cannot load a MaskablePPO model ({err})") from None


def _check_model_spaces(model: Any, spec: FeatureSpec, source: Path) -> None:
    obs_shape = tuple(getattr(model.observation_space, "shape", ()) or ())
    n = getattr(model.action_space, "n", None)
    if obs_shape != (spec.obs_dim,) or n is None or int(n) != spec.layout.n_actions:
        raise ExportError(
            f"{source}: model spaces obs {obs_shape}, actions {n} do not match meta.json "
            f"(obs ({spec.obs_dim},), actions {spec.layout.n_actions})"
        )


def export_policy(
    source: str | Path,
    out: str | Path,
    parity: int = DEFAULT_PARITY,
    seed: int = 0,
    scenario: str | None = None,
    accept_unverified: bool = False,
    provenance: dict[str, str] | None = None,
) -> ExportReport:
    """Export the model at ``source`` to ``out`` after the statistics and parity checks;
    writes nothing on error (``accept_unverified``: see :func:`normalization_of`).

    ``provenance``: where the model came from (config, commit, validation reward...), written
    into the metadata as ``provenance_<key>`` entries (covered by the version hash, so a
    shipped file says how it was made and that text cannot be edited unnoticed)."""
    if parity < 1:
        raise ConfigError(f"--parity must be at least 1, got {parity}")
    saved = locate_saved_model(source)
    sc = resolve_export_scenario(saved, scenario)
    spec = saved.spec
    norm, checked = normalization_of(saved, accept_unverified)
    model = _load_model(saved)
    _check_model_spaces(model, spec, saved.model_zip)
    module = build_export_module(model, norm)
    graph = export_graph(module, spec.obs_dim, spec.layout.n_actions)
    profiles = {t: str(getattr(sc.profiles, t)) for t in ("device", "edge", "cloud")}
    metadata = build_metadata(
        spec,
        scenario=sc.name,
        profiles=profiles,
        normalization=describe_normalization(norm),
        extra={
            "num_timesteps": str(saved.meta.get("num_timesteps")),
            "source_model": saved.directory.name,
            "policy_type": type(model).__name__,
            "deterministic": "true",
            "opset": str(OPSET),
            # only unverified exports carry it: a checked export's file is as it always was
            **({"normalization_unverified": "true"} if checked == UNVERIFIED else {}),
            **{f"{PROVENANCE_PREFIX}{k}": str(v) for k, v in (provenance or {}).items()},
        },
    )
    version = set_metadata(graph, metadata)
    data = graph.SerializeToString()
    obs, masks, n_env = parity_set(sc, spec, parity, seed)
    check_parity(model, norm, data, obs, masks)
    out_path = Path(out)
    OnnxPolicy(data, out_path, spec)  # the service must accept exactly these bytes
    _write_atomically(out_path, data)
    return ExportReport(
        path=out_path,
        version=version,
        statistics=checked,
        parity_checked=len(obs),
        parity_env=n_env,
        size_bytes=len(data),
        metadata={k: v for k, v in ((p.key, p.value) for p in graph.metadata_props)},
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """One file, no side ``.onnx.data``; a reader never sees it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the policy from a service's user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
