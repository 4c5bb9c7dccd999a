"""The exported policy file: one ONNX graph plus the metadata that says what it was trained on.

The exporter (:mod:`agents.export`) writes it and the decision service reads it; both use this
module, so the contract lives in one place. A file is only served if its metadata matches the
encoder the service runs (:mod:`offload_rl.features`): feature order, schema version, mask layout
and action meanings. A version hash over the graph (weights included) and the metadata makes a
tampered or half-written file detectable.

Graph contract: inputs ``obs`` (float32 ``[batch, obs_dim]``, the raw encoder output; the
observation normalisation is inside the graph) and ``mask`` (bool ``[batch, n_actions]``);
outputs ``action`` (int64 ``[batch]``) and ``logits`` (float32 ``[batch, n_actions]``, masked
entries set to :data:`MASKED_LOGIT`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import onnx

from offload_rl.actions import ActionLayout
from offload_rl.errors import OffloadRLError
from offload_rl.features import FEATURE_SCHEMA_VERSION, FeatureSpec

FORMAT = "offload-rl-policy"
FORMAT_VERSION = 1
MASKED_LOGIT = -1e8
"""What sb3-contrib puts in place of a masked logit; the one copy, used by training's
``meta.json``, the exported graph and the checks here (importable without torch)."""
INPUT_OBS = "obs"
INPUT_MASK = "mask"
OUTPUT_ACTION = "action"
OUTPUT_LOGITS = "logits"
MAX_POLICY_BYTES = 64 * 1024 * 1024  # a policy MLP is kilobytes; refuse anything absurd

HASH_KEY = "version_hash"
REQUIRED_KEYS: tuple[str, ...] = (
    "format",
    "format_version",
    "feature_schema_version",
    "feature_names",
    "obs_dim",
    "n_actions",
    "mask_layout",
    "action_meanings",
    *FeatureSpec(n_layers=1).to_dict(),
    "normalization",
    "masked_logit",
    "scenario",
    "profiles",
    HASH_KEY,
)


class PolicyFileError(OffloadRLError):
    """A policy file that cannot be served; the message says why, on one line."""


def mask_layout(layout: ActionLayout) -> dict[str, Any]:
    """How the flat action mask is laid out (stored in the metadata, checked on load); the
    device-lite tier's entries only when the layout has it (older files stay as they were)."""
    out: dict[str, Any] = {
        "n_actions": layout.n_actions,
        "n_tiers": layout.n_tiers,
        "encoding": "action = tier_index * 2 + keep",
        "tier_index": "0 = edge runs every layer, 1..L-1 = split, L = device, L+1 = cloud",
        "keep": "0 = drop the session's KV, 1 = keep it",
        "cloud_index": layout.cloud_index,
        "always_masked": [layout.encode(layout.cloud_index, 1)],
    }
    if layout.lite_index is not None:
        out["tier_index"] += ", L+2 = lite (the device-lite model)"
        out["lite_index"] = layout.lite_index
        out["always_masked"].append(layout.encode(layout.lite_index, 1))
    return out


def build_metadata(
    spec: FeatureSpec,
    *,
    scenario: str,
    profiles: dict[str, str],
    normalization: dict[str, Any],
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The ``metadata_props`` of a policy for ``spec`` (all values are strings), without the
    version hash (see :func:`with_version_hash`)."""
    layout = spec.layout
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "feature_schema_version": str(FEATURE_SCHEMA_VERSION),
        "feature_names": json.dumps(spec.feature_names()),
        "obs_dim": str(spec.obs_dim),
        "n_actions": str(layout.n_actions),
        "mask_layout": json.dumps(mask_layout(layout), sort_keys=True),
        "action_meanings": json.dumps(layout.meanings()),
        **{key: str(value) for key, value in spec.to_dict().items()},
        "normalization": json.dumps(normalization, sort_keys=True),
        "masked_logit": repr(MASKED_LOGIT),
        "scenario": scenario,
        "profiles": json.dumps(profiles, sort_keys=True),
    }
    for key, value in (extra or {}).items():
        meta.setdefault(key, str(value))
    return meta


def compute_version_hash(model: onnx.ModelProto, metadata: dict[str, str]) -> str:
    """sha256 over the graph (weights included) and the metadata (the hash itself excluded)."""
    h = hashlib.sha256()
    h.update(model.graph.SerializeToString(deterministic=True))
    meta = {k: v for k, v in metadata.items() if k != HASH_KEY}
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> str:
    """Replace the model's metadata by ``metadata`` plus its version hash; returns the hash."""
    meta = {k: v for k, v in metadata.items() if k != HASH_KEY}
    digest = compute_version_hash(model, meta)
    del model.metadata_props[:]
    for key, value in sorted({**meta, HASH_KEY: digest}.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return digest


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def spec_from_metadata(meta: dict[str, str]) -> FeatureSpec:
    """The feature spec a policy was trained with."""
    try:
        return FeatureSpec.from_dict(meta)
    except ValueError as err:
        raise PolicyFileError(f"metadata: bad feature spec ({err})") from None


@dataclass(frozen=True)
class PolicyMetadata:
    """What a validated policy file says about itself."""

    version: str  # the version hash
    spec: FeatureSpec
    scenario: str
    profiles: dict[str, str]
    raw: dict[str, str]

    def public(self) -> dict[str, Any]:
        """The metadata as JSON values (what ``GET /v1/policy`` shows)."""
        out: dict[str, Any] = {}
        for key, value in self.raw.items():
            try:
                out[key] = json.loads(value) if value[:1] in "[{" else value
            except ValueError:
                out[key] = value
        return out


def _shape(value_info: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def _check_io(model: onnx.ModelProto, spec: FeatureSpec) -> None:
    g = model.graph
    initializers = {i.name for i in g.initializer}
    inputs = {i.name: i for i in g.input if i.name not in initializers}
    outputs = {o.name: o for o in g.output}
    expected_in = {
        INPUT_OBS: (onnx.TensorProto.FLOAT, spec.obs_dim),
        INPUT_MASK: (onnx.TensorProto.BOOL, spec.layout.n_actions),
    }
    if set(inputs) != set(expected_in):
        raise PolicyFileError(f"graph inputs are {sorted(inputs)}, expected ['mask', 'obs']")
    for name, (dtype, width) in expected_in.items():
        vi = inputs[name]
        shape = _shape(vi)
        if vi.type.tensor_type.elem_type != dtype or len(shape) != 2 or shape[1] != width:
            got = onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
            want = onnx.TensorProto.DataType.Name(dtype)
            raise PolicyFileError(
                f"graph input {name!r} is {got} {list(shape)}, expected {want} [batch, {width}]"
            )
        if isinstance(shape[0], int) and shape[0] > 0:
            raise PolicyFileError(f"graph input {name!r} has a fixed batch size {shape[0]}")
    for name, dtype in (
        (OUTPUT_ACTION, onnx.TensorProto.INT64),
        (OUTPUT_LOGITS, onnx.TensorProto.FLOAT),
    ):
        if name not in outputs:
            raise PolicyFileError(f"graph has no output {name!r} (outputs: {sorted(outputs)})")
        if outputs[name].type.tensor_type.elem_type != dtype:
            raise PolicyFileError(
                f"graph output {name!r} is not {onnx.TensorProto.DataType.Name(dtype)}"
            )


def validate_policy_model(model: onnx.ModelProto, expected: FeatureSpec | None) -> PolicyMetadata:
    """Check a policy graph and its metadata; ``expected`` is the spec the caller encodes with
    (``None``: take the policy's own). Raises :class:`PolicyFileError` naming the mismatch."""
    meta = read_metadata(model)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if meta.get("format") != FORMAT:
        raise PolicyFileError(
            f"not an offload-rl policy (metadata format={meta.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    if missing:
        raise PolicyFileError(f"metadata lacks {', '.join(missing)}")
    if meta["format_version"] != str(FORMAT_VERSION):
        raise PolicyFileError(
            f"policy file format version {meta['format_version']}, this service reads "
            f"{FORMAT_VERSION}"
        )
    if meta["feature_schema_version"] != str(FEATURE_SCHEMA_VERSION):
        raise PolicyFileError(
            f"feature schema version {meta['feature_schema_version']}, this service encodes "
            f"version {FEATURE_SCHEMA_VERSION}: re-export the policy from a matching model"
        )
    digest = compute_version_hash(model, meta)
    if digest != meta[HASH_KEY]:
        raise PolicyFileError("version hash does not match the graph and metadata (file altered)")
    spec = spec_from_metadata(meta)
    if expected is not None and spec != expected:
        raise PolicyFileError(
            f"policy was trained for {_spec_text(spec)}, the service encodes {_spec_text(expected)}"
        )
    checks = {
        "feature_names": json.dumps(spec.feature_names()),
        "action_meanings": json.dumps(spec.layout.meanings()),
        "mask_layout": json.dumps(mask_layout(spec.layout), sort_keys=True),
        "obs_dim": str(spec.obs_dim),
        "n_actions": str(spec.layout.n_actions),
        "masked_logit": repr(MASKED_LOGIT),
    }
    for key, want in checks.items():
        if meta[key] != want:
            raise PolicyFileError(f"metadata {key} differs from the current feature schema")
    _check_io(model, spec)
    try:
        profiles = json.loads(meta["profiles"])
        if not isinstance(profiles, dict):
            raise ValueError("not a mapping")
    except ValueError as err:
        raise PolicyFileError(f"metadata profiles: {err}") from None
    return PolicyMetadata(
        version=digest,
        spec=spec,
        scenario=meta["scenario"],
        profiles={str(k): str(v) for k, v in profiles.items()},
        raw=meta,
    )


def _spec_text(spec: FeatureSpec) -> str:
    return ", ".join(f"{key}={value}" for key, value in spec.to_dict().items())


def load_policy_model(data: bytes, source: str) -> onnx.ModelProto:
    """Parse ONNX bytes; a policy must be one self-contained file."""
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyFileError(f"{source}: {len(data)} bytes, more than a policy can be")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf raises DecodeError and friends
        raise PolicyFileError(f"{source}: not an ONNX model ({type(err).__name__})") from None
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise PolicyFileError(f"{source}: weights in an external data file are not served")
    return model
