"""Per-layer cost profiles of one transformer on one piece of hardware.

A profile is what the environment and the heuristics read to price a split: for the embedding,
every decoder layer and the LM head it gives prefill time as a function of tokens and decode time
per token as a function of context, plus the bytes that cross each split boundary, the KV bytes
per token and the weight bytes. Profiles are JSON files validated on load, so a bad number is
caught with the file and the field named instead of surfacing later as a NaN latency.
"""

from __future__ import annotations

import json
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from offload_rl.errors import ConfigError, DataFileError

SCHEMA_VERSION = 1

# Shipped profiles live in offload_rl/data/profiles/<model>@<hardware>.json.
PROFILE_DATA_DIR = ("data", "profiles")

NonNegativeFinite = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    """Base for the schema: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class ModelShape(_Strict):
    """The published shape of a decoder-only transformer (what the costs depend on)."""

    name: str = Field(min_length=1)
    n_layers: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_heads: int = Field(ge=1)
    n_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    ffn_dim: int = Field(ge=1)
    vocab_size: int = Field(ge=1)
    tied_embeddings: bool


class PrefillFit(_Strict):
    """Seconds to prefill ``T`` tokens: ``c0 + c1*T + c2*T**2``."""

    c0: NonNegativeFinite
    c1: NonNegativeFinite
    c2: NonNegativeFinite

    def __call__(self, tokens: float) -> float:
        return self.c0 + self.c1 * tokens + self.c2 * tokens * tokens


class DecodeFit(_Strict):
    """Seconds to decode one new token at context ``ctx``: ``c0 + c1*ctx``."""

    c0: NonNegativeFinite
    c1: NonNegativeFinite

    def __call__(self, context: float) -> float:
        return self.c0 + self.c1 * context


class LayerCost(_Strict):
    """Costs of one layer (embedding, one decoder layer, or the LM head).

    A decoder layer with a sliding ``window`` attends to at most ``window`` positions (itself
    included) and keeps at most that many tokens' KV: beyond it, each prefill token costs what
    the ``window``-th did, and decode costs what it did at context ``window - 1``. Files without
    the key (all older ones) are full attention; the key is only written when set.

    ``matmul_params`` (decoder layers of analytical profiles) is how many weights one token
    multiplies (active experts only): with ``weight_bytes`` and the shape it is all a batched
    roofline needs, so the cell prices its edge from the file without reading the model's
    config through transformers. Older files lack it (``None``); it is only written when set.
    """

    name: str
    kind: Literal["embedding", "decoder", "head"]
    prefill: PrefillFit
    decode: DecodeFit
    weight_bytes: int = Field(ge=0)
    kv_bytes_per_token: int = Field(ge=0)
    samples: dict[str, list[tuple[NonNegativeFinite, NonNegativeFinite]]] | None = None
    window: int | None = Field(None, ge=1)
    matmul_params: int | None = Field(None, ge=0)

    @model_serializer(mode="wrap")
    def _omit_unset_optionals(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("window", "matmul_params"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _kv_only_in_decoder(self) -> LayerCost:
        if self.kind != "decoder" and self.kv_bytes_per_token != 0:
            raise ValueError(f"a {self.kind} layer keeps no KV cache: kv_bytes_per_token must be 0")
        if self.kind != "decoder" and self.window is not None:
            raise ValueError(f"a {self.kind} layer has no attention: it takes no window")
        if self.kind != "decoder" and self.matmul_params is not None:
            raise ValueError(f"matmul_params is counted for decoder layers, not a {self.kind}")
        return self

    def prefill_s(self, tokens: float) -> float:
        """Seconds to prefill ``tokens`` tokens through this layer."""
        w = self.window
        if w is None or tokens <= w:
            return self.prefill(tokens)
        return self.prefill(w) + (tokens - w) * (self.prefill(w) - self.prefill(w - 1))

    def decode_s(self, context: float) -> float:
        """Seconds to decode one token at ``context`` tokens already in the cache."""
        return self.decode(context if self.window is None else min(context, self.window - 1))

    def kv_bytes(self, context: float) -> float:
        """KV bytes this layer holds for ``context`` tokens (at most ``window`` of them)."""
        held = context if self.window is None else min(context, self.window)
        return self.kv_bytes_per_token * held


class Provenance(_Strict):
    """Where the numbers come from: measured, or a roofline with stated peaks and efficiency."""

    kind: Literal["measured", "analytical"]
    hardware: str
    description: str
    date: str
    dtype: str
    threads: int | None
    library_versions: dict[str, str]
    method: str
    peak_flops: NonNegativeFinite | None
    mem_bw_bytes_s: NonNegativeFinite | None
    eff_prefill: NonNegativeFinite | None
    eff_decode: NonNegativeFinite | None
    calibration: str | None

    @property
    def shape_source(self) -> str | None:
        """Where the model's shape came from, as ``method`` records it after ``Shape:``."""
        if "Shape: " not in self.method:
            return None
        return self.method.split("Shape: ", 1)[1].split(". Hardware: ", 1)[0]


class BatchedPoint(_Strict):
    """One timed batch: ``sequences`` as ``(new_tokens, context)`` pairs, and its seconds.

    ``part`` says what was timed: one decoder layer (``decoder``), the final norm + LM head
    (``head``, ``samples`` sequences computing logits), or the embedding (``embedding``).
    ``source`` is ``batched`` for a point of the batched run and ``single`` for a batch-1 point
    taken from the single-request samples (so that the fit stays consistent with them).
    """

    part: Literal["decoder", "head", "embedding"]
    source: Literal["batched", "single"]
    sequences: list[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]] = Field(
        min_length=1
    )
    samples: int = Field(ge=0)
    seconds: NonNegativeFinite


class BatchedCoefficients(_Strict):
    """The coefficients of :class:`~offload_rl.cell.batch_roofline.BatchRoofline`, measured."""

    layer_fixed_s: NonNegativeFinite
    kv_s_per_token: NonNegativeFinite
    linear_s_per_token: NonNegativeFinite
    attn_s_unit: NonNegativeFinite
    embed_fixed_s: NonNegativeFinite
    embed_s_per_token: NonNegativeFinite
    head_fixed_s: NonNegativeFinite
    head_s_per_sample: NonNegativeFinite
    head_s_per_token: NonNegativeFinite


class BatchedFitError(_Strict):
    """How far the fit is from the points of one part, in absolute percent."""

    median_abs_pct: NonNegativeFinite
    p90_abs_pct: NonNegativeFinite
    max_abs_pct: NonNegativeFinite
    points: int = Field(ge=1)


class StepTable(_Strict):
    """Seconds at measured counts ``x`` (strictly increasing, >= 1), linear between them; beyond
    the last, ``tail_s_per_x`` more per unit (the slope fitted there); below the first, the first.
    """

    x: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    seconds: list[NonNegativeFinite]
    tail_s_per_x: NonNegativeFinite

    @model_validator(mode="after")
    def _increasing(self) -> StepTable:
        if len(self.seconds) != len(self.x):
            raise ValueError(f"x has {len(self.x)} entries, seconds has {len(self.seconds)}")
        if any(b <= a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError(f"x must be strictly increasing, got {self.x}")
        return self


class BatchedStepPoint(_Strict):
    """One iteration part timed in-stack: ``layers`` (all the model's distinct decoder layers in
    a row over the packed ``sequences``, then the final norm) or ``head`` (the LM head on
    ``samples`` rows)."""

    part: Literal["layers", "head"]
    sequences: list[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]] = Field(
        min_length=1
    )
    samples: int = Field(ge=0)
    seconds: NonNegativeFinite


class BatchedSteps(_Strict):
    """Measured iteration costs that need not be linear in the packed tokens (a CPU's small
    matmuls are not): read by :class:`~offload_rl.cell.batch_steps.StepCost`.

    ``layer``: one decoder layer (stack time / n_layers) over ``T`` packed tokens at context 0;
    ``kv_s_per_token`` and ``attn_s_unit``: per layer and sequence, its KV (``c + n``) and its
    attention (``n (2c + n + 1)``), as :mod:`offload_rl.cell.batch_roofline` counts them;
    ``head``: the LM head over ``s`` sampling rows.
    """

    method: str
    layer: StepTable
    head: StepTable
    kv_s_per_token: NonNegativeFinite
    attn_s_unit: NonNegativeFinite
    points: list[BatchedStepPoint]
    fit_error: BatchedFitError


class BatchedProfile(_Strict):
    """Measured batched costs: the timed points and the batched roofline fitted to them.

    Written by ``offload-rl profile`` (``--batch-sizes``); read by
    :func:`offload_rl.cell.batch_roofline.for_profile`. ``fit_error`` has one entry per part
    (``decoder``, ``head``, ``embedding``). ``steps`` (``--in-stack``) adds iterations timed
    through the whole stack of layers; files without it load as before and it is only written
    when set.
    """

    method: str
    points: list[BatchedPoint]
    coefficients: BatchedCoefficients
    fit_error: dict[str, BatchedFitError]
    steps: BatchedSteps | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_steps(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("steps") is None:
            data.pop("steps", None)
        return data


class Profile(_Strict):
    """One model on one piece of hardware; see the module docstring.

    ``batched`` (measured profiles made with batch sizes) holds measured batched costs; files
    without it (every older one, every analytical one) load as before and it is only written
    when set.
    """

    schema_version: int
    model: ModelShape
    hardware: str
    dtype_bytes: int = Field(ge=1, le=8)
    provenance: Provenance
    embedding: LayerCost
    layers: list[LayerCost]
    head: LayerCost
    activation_bytes_per_token: list[Annotated[int, Field(ge=0)]]
    batched: BatchedProfile | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_batched(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("batched") is None:
            data.pop("batched", None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is not supported (this is {SCHEMA_VERSION})"
            )
        n = self.model.n_layers
        if len(self.layers) != n:
            raise ValueError(f"layers has {len(self.layers)} entries, model.n_layers is {n}")
        if len(self.activation_bytes_per_token) != n + 1:
            raise ValueError(
                f"activation_bytes_per_token has {len(self.activation_bytes_per_token)} entries, "
                f"expected n_layers + 1 = {n + 1}"
            )
        if self.embedding.kind != "embedding":
            raise ValueError(f"embedding.kind is {self.embedding.kind!r}, expected 'embedding'")
        if self.head.kind != "head":
            raise ValueError(f"head.kind is {self.head.kind!r}, expected 'head'")
        for i, layer in enumerate(self.layers):
            if layer.kind != "decoder":
                raise ValueError(f"layers.{i}.kind is {layer.kind!r}, expected 'decoder'")
        return self

    @property
    def n_layers(self) -> int:
        return self.model.n_layers

    def _check_range(self, k0: int, k1: int) -> None:
        if not 0 <= k0 <= k1 <= self.n_layers:
            raise ValueError(f"layer range [{k0}, {k1}) is outside [0, {self.n_layers}]")

    def prefill_s(self, k0: int, k1: int, tokens: int) -> float:
        """Seconds to prefill ``tokens`` tokens through decoder layers ``[k0, k1)``.

        Embedding and head are not included: read ``embedding`` / ``head`` for those.
        """
        self._check_range(k0, k1)
        return float(sum(layer.prefill_s(tokens) for layer in self.layers[k0:k1]))

    def decode_s(self, k0: int, k1: int, context: int) -> float:
        """Seconds to decode one token at ``context`` through decoder layers ``[k0, k1)``."""
        self._check_range(k0, k1)
        return float(sum(layer.decode_s(context) for layer in self.layers[k0:k1]))

    def kv_bytes_per_token(self, k0: int, k1: int) -> int:
        """KV-cache bytes per token held by decoder layers ``[k0, k1)``."""
        self._check_range(k0, k1)
        return sum(layer.kv_bytes_per_token for layer in self.layers[k0:k1])

    def kv_bytes(self, k0: int, k1: int, context: float) -> float:
        """KV-cache bytes held by decoder layers ``[k0, k1)`` for ``context`` tokens."""
        self._check_range(k0, k1)
        return float(sum(layer.kv_bytes(context) for layer in self.layers[k0:k1]))

    def weight_bytes(self, k0: int, k1: int) -> int:
        """Weight bytes of decoder layers ``[k0, k1)`` (embedding and head not included)."""
        self._check_range(k0, k1)
        return sum(layer.weight_bytes for layer in self.layers[k0:k1])

    def to_json(self) -> str:
        """The JSON text written by :meth:`save` (NaN/inf are refused, never written)."""
        return json.dumps(self.model_dump(mode="json"), indent=1, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the profile as JSON; a write failure is a :class:`DataFileError`."""
        target = Path(path)
        try:
            target.write_text(self.to_json(), encoding="utf-8")
        except OSError as err:
            raise DataFileError(target, f"cannot write profile: {err.strerror or err}") from err

    @classmethod
    def from_json(cls, text: str, source: str | Path) -> Profile:
        """Parse and validate profile JSON; errors name ``source`` and the offending field."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFileError(source, f"not valid JSON: {err.msg}", line=err.lineno) from err
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise DataFileError(source, _describe_validation_error(err)) from err

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a profile file; a missing or invalid file is a :class:`DataFileError`."""
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise DataFileError(source, "no such profile file") from err
        except (OSError, UnicodeDecodeError) as err:
            raise DataFileError(source, f"cannot read profile: {err}") from err
        return cls.from_json(text, source)


def _describe_validation_error(err: ValidationError) -> str:
    """One line: the first error's dotted field path and message, and how many more there are."""
    errors = err.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"]
    if first["type"] in {"greater_than_equal", "finite_number"} and "input" in first:
        message = f"{message} (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return f"field {field}: {message}{more}"


def _shipped_dir() -> Traversable:
    folder = resources.files("offload_rl")
    for part in PROFILE_DATA_DIR:
        folder = folder / part
    return folder


def shipped_profiles() -> list[str]:
    """Names (``<model>@<hardware>``) of the profiles shipped with the package, sorted."""
    folder = _shipped_dir()
    if not folder.is_dir():
        return []
    return sorted(
        entry.name.removesuffix(".json")
        for entry in folder.iterdir()
        if entry.name.endswith(".json") and entry.is_file()
    )


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a profile from a file path, or by the name of a shipped profile (``gpt2@l4``)."""
    text_form = str(name_or_path)
    candidate = Path(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, Path)
        or text_form.endswith(".json")
        or "/" in text_form
        or "\\" in text_form
    )
    if candidate.is_file() or looks_like_path:
        return Profile.load(candidate)
    names = shipped_profiles()
    if text_form not in names:
        listing = ", ".join(names) if names else "(none shipped)"
        raise ConfigError(f"unknown profile {text_form!r}; shipped profiles: {listing}")
    entry = _shipped_dir() / f"{text_form}.json"
    return Profile.from_json(entry.read_text(encoding="utf-8"), f"shipped profile {text_form}")


def kv_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> int:
    """KV bytes per token of one decoder layer: keys and values for every KV head."""
    return 2 * shape.n_kv_heads * shape.head_dim * dtype_bytes


def activation_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> list[int]:
    """Bytes per token crossing each split point ``k = 0..n_layers``.

    ``k = 0`` sends token ids (int32, 4 bytes); after ``k >= 1`` layers the hidden state is sent.
    """
    return [4] + [shape.d_model * dtype_bytes] * shape.n_layers
