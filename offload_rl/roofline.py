"""Analytical (roofline) profiles for hardware that is not at hand.

Each layer's time is an **additive** roofline: a fixed per-layer overhead, plus the bytes it must
move at the achieved memory bandwidth, plus the FLOPs it must do at the achieved compute rate::

    t = overhead + bytes / (mem_bw * eff_decode) + flops / (peak_flops * eff_prefill)

Summing the memory and compute terms (instead of taking their max) keeps the result a polynomial in
the token count, so it maps exactly onto the profile's ``c0 + c1*T + c2*T^2`` (prefill) and
``c0 + c1*ctx`` (decode); it overestimates the classic max-roofline by at most 2x, where the two
terms are equal, and matches it wherever one term dominates (decode: bytes; long prefill: FLOPs).
The efficiency factors carry everything the peaks do not (kernels, attention, framework); where
they come from is written in each profile's ``provenance.calibration``.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from offload_rl import __version__
from offload_rl.errors import ConfigError
from offload_rl.layer_counts import LayerFacts
from offload_rl.model_shapes import (
    ArchSpec,
    active_params,
    arch_for_shape,
    attention_decode_flops,
    attention_prefill_flops,
    decoder_params,
    decoder_prefill_flops,
    embedding_params,
    head_flops,
    head_params,
    is_uniform,
    layer_facts,
    total_params,
)
from offload_rl.profiles import (
    SCHEMA_VERSION,
    DecodeFit,
    LayerCost,
    ModelShape,
    PrefillFit,
    Profile,
    Provenance,
    activation_bytes_per_token,
    kv_bytes_per_token,
)

ROOFLINE_METHOD = (
    "additive roofline per layer: t = overhead + bytes/(mem_bw*eff_decode) + "
    "flops/(peak_flops*eff_prefill), written as c0 + c1*T + c2*T^2 (prefill: weights read once, "
    "KV written per token, causal attention ~T^2) and c0 + c1*ctx (decode: weights + KV of ctx "
    "tokens read); embedding = row gather, head = final norm over T tokens + logits of the last "
    "token only (as generation does); every decoder layer identical"
)

DTYPE_NAMES = {1: "int8", 2: "float16", 4: "float32"}


class Hardware(BaseModel):
    """Peaks and achieved-efficiency factors of one accelerator (see PARAMETERS.md for tags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    peak_flops: float = Field(gt=0, allow_inf_nan=False)  # dense, in the dtype below
    mem_bw_bytes_s: float = Field(gt=0, allow_inf_nan=False)
    eff_prefill: float = Field(gt=0, le=1)  # achieved fraction of peak_flops
    eff_decode: float = Field(gt=0, le=1)  # achieved fraction of mem_bw_bytes_s
    per_layer_overhead_s: float = Field(ge=0, allow_inf_nan=False)
    dtype_bytes: int = Field(ge=1, le=8)  # activations, KV cache, and weights unless below
    sources: str
    efficiency_basis: str = ""
    # Weights stored quantised (a phone's 4-bit model): bits per stored weight, scales included;
    # None: weights are stored like the activations, ``dtype_bytes`` each.
    weight_bits: float | None = Field(None, gt=0, le=64, allow_inf_nan=False)
    weight_format: str = ""  # what weight_bits describes, e.g. "q4f16_1", with its source

    @property
    def weight_bytes_per_param(self) -> float:
        """Bytes of one stored weight: ``weight_bits / 8`` when quantised, else ``dtype_bytes``."""
        return self.dtype_bytes if self.weight_bits is None else self.weight_bits / 8.0

    def weight_bytes(self, params: int) -> int:
        """Bytes that ``params`` stored weights occupy (exact for unquantised weights)."""
        if self.weight_bits is None:
            return params * self.dtype_bytes
        return round(params * self.weight_bits / 8.0)


HARDWARE: dict[str, Hardware] = {
    hw.name: hw
    for hw in (
        Hardware(
            name="sd8gen3-phone",
            description="flagship Android phone, Snapdragon 8 Gen 3 (Adreno 750 GPU, FP16)",
            peak_flops=5.5e12,
            mem_bw_bytes_s=76.8e9,
            eff_prefill=0.25,
            eff_decode=0.50,
            per_layer_overhead_s=100e-6,
            dtype_bytes=2,
            sources=(
                "PARAMETERS.md: Adreno 750 FP16 ~5.5 TFLOPS [R]; LPDDR5X 4800 MHz x 64 bit = "
                "76.8 GB/s [D from V2]; per-layer dispatch overhead 100 us [R, assumed: ~10 "
                "GPU kernels per layer at ~10 us each]"
            ),
            efficiency_basis=(
                "eff_prefill 0.25 (range 0.1-0.4) [R, most uncertain] and eff_decode 0.50 (range "
                "0.35-0.7) [D: Pi 5 54-57%, M4 69%] from PARAMETERS.md section 2; thermal "
                "throttling can cut sustained values by up to ~45%, not modelled"
            ),
        ),
        Hardware(
            name="jetson-orin-nano",
            description="NVIDIA Jetson Orin Nano 8GB, Super mode (1020 MHz GPU, FP16 tensor cores)",
            peak_flops=16.7e12,
            mem_bw_bytes_s=102e9,
            eff_prefill=0.40,
            eff_decode=0.75,
            per_layer_overhead_s=50e-6,
            dtype_bytes=2,
            sources=(
                "PARAMETERS.md: FP16 dense 16.7 TFLOPS [D = 67 sparse INT8 TOPS / 4]; 102 GB/s "
                "LPDDR5 [V]; per-layer overhead 50 us [R, assumed: ~10 kernels without CUDA "
                "graphs on a small GPU]"
            ),
            efficiency_basis=(
                "eff_prefill 0.40 [R] and eff_decode 0.75 (range 0.65-0.87) [D: MLC INT4 on Orin "
                "Nano, jetson-ai-lab benchmarks] from PARAMETERS.md section 2"
            ),
        ),
        Hardware(
            name="l4",
            description="NVIDIA L4 24GB edge server GPU (FP16 tensor, dense)",
            peak_flops=121e12,
            mem_bw_bytes_s=300e9,
            eff_prefill=0.55,
            eff_decode=0.70,
            per_layer_overhead_s=30e-6,
            dtype_bytes=2,
            sources=(
                "PARAMETERS.md: 121 TFLOPS FP16 dense (242 with sparsity) [V2 sp; D]; 300 GB/s "
                "GDDR6 [V2]; per-layer overhead 30 us [R, assumed: ~10 kernels at ~3 us with "
                "CUDA graphs]"
            ),
            efficiency_basis=(
                "eff_prefill 0.55 (range 0.4-0.7) and eff_decode 0.70 (range 0.55-0.8) from "
                "PARAMETERS.md section 2 [R, extrapolated from vidur A100/H100 layer-level 64-68%; "
                "no direct L4 measurement]"
            ),
        ),
        Hardware(
            name="a100",
            description="NVIDIA A100 80GB SXM (FP16 tensor, dense)",
            peak_flops=312e12,
            mem_bw_bytes_s=2039e9,
            eff_prefill=0.60,
            eff_decode=0.65,
            per_layer_overhead_s=30e-6,
            dtype_bytes=2,
            sources=(
                "PARAMETERS.md: 312 TFLOPS FP16 dense [V LLM-Viewer, llm-analysis]; 2039 GB/s "
                "[V]; per-layer overhead 30 us [R, assumed]"
            ),
            efficiency_basis=(
                "eff_prefill 0.60 and eff_decode 0.65 from PARAMETERS.md section 2 [V/D: vidur "
                "layer-level 66% / 68%; llm-analysis 0.64 / 0.59]"
            ),
        ),
        Hardware(
            name="h100",
            description="NVIDIA H100 SXM5 80GB cloud GPU (FP16 tensor, dense)",
            peak_flops=989e12,
            mem_bw_bytes_s=3350e9,
            eff_prefill=0.60,
            eff_decode=0.65,
            per_layer_overhead_s=30e-6,
            dtype_bytes=2,
            sources=(
                "PARAMETERS.md: 989 TFLOPS FP16 dense (1979 with sparsity) [V hpctech, "
                "glennklockwood, llm-analysis]; 3350 GB/s [V]; per-layer overhead 30 us "
                "[R, assumed]"
            ),
            efficiency_basis=(
                "eff_prefill 0.60 (range 0.45-0.75) and eff_decode 0.65 (range 0.5-0.8) from "
                "PARAMETERS.md section 2 [V/D: vidur layer-level 64% / 68%; llm-analysis 0.64 / "
                "0.59; FA2/FA3 50-75%]"
            ),
        ),
    )
}


# The same phone running a 4-bit model: phones hold 7-8B models only at about 4 bits per weight
# ("Llama 2 7B or Llama 3 8B needs at least 4-bit quantization to fit even within some of the
# highend phones", pytorch/executorch examples/models/llama/README.md [V]; Qualcomm AI Hub ships
# Llama-v2-7B-Chat for Snapdragon 8 Gen 3 as "4-bit weights and 16-bit activations", 3.6 GB [V]).
# Activations, the KV cache and the FLOP rate stay FP16 (weights are dequantised in the kernels).
_PHONE = HARDWARE["sd8gen3-phone"]
HARDWARE["sd8gen3-phone-q4"] = Hardware.model_validate(
    {
        **_PHONE.model_dump(),
        "name": "sd8gen3-phone-q4",
        "description": f"{_PHONE.description}; weights 4-bit (q4f16_1, 4.5 bits per weight)",
        "weight_bits": 4.5,
        "weight_format": (
            "q4f16_1: int4 weights in groups of 32 with one fp16 scale (4 + 16/32 = 4.5 bits), "
            "embedding and LM head quantised too (mlc-ai/mlc-llm python/mlc_llm/quantization/"
            "quantization.py [V]); llama.cpp Q4_0 stores the same 18 bytes per 32 weights [R]"
        ),
        "efficiency_basis": (
            f"{_PHONE.efficiency_basis}. eff_decode 0.50 was derived from 4-bit llama.cpp decode "
            "(bytes = the 4-bit file), so it applies to 4-bit weights as is. Check: this roofline "
            "gives Llama-2-7B at 4.5 bits (6.74B weights, 3.8 GB) 8.5-9.1 tokens/s at batch 1; "
            "ExecuTorch measured 10.7-11.3 tokens/s on a Galaxy S24 with 4-bit groups of 128-256 "
            "(fewer scale bytes; pytorch/executorch examples/models/llama2/README.md [V]): the "
            "roofline is ~20% slow there"
        ),
    }
)


def get_hardware(name: str) -> Hardware:
    """The named hardware; an unknown name is a :class:`ConfigError` listing the known ones."""
    try:
        return HARDWARE[name]
    except KeyError:
        known = ", ".join(HARDWARE)
        raise ConfigError(f"unknown hardware {name!r}; known hardware: {known}") from None


# --- per-layer analytical costs --------------------------------------------------------------


def _rates(hw: Hardware) -> tuple[float, float]:
    """Seconds per byte moved and per FLOP done, at the achieved rates."""
    return 1.0 / (hw.mem_bw_bytes_s * hw.eff_decode), 1.0 / (hw.peak_flops * hw.eff_prefill)


def decoder_cost(arch: ArchSpec, hw: Hardware, name: str = "decoder", layer: int = 0) -> LayerCost:
    """Decoder layer ``layer`` on ``hw``; see the module docstring for the model.

    Weights bytes count every expert (memory holds them all); FLOPs count the active ones. A
    sliding window is carried on the :class:`LayerCost`, which bounds attention and KV by it.
    """
    s_byte, s_flop = _rates(hw)
    shape = arch.shape
    b = hw.dtype_bytes
    facts = layer_facts(arch)[layer]
    weights = hw.weight_bytes(facts.params)
    kv = kv_bytes_per_token(shape, b)
    linear_flops_per_token = 2.0 * facts.matmul_params
    # causal attention: 2*h*d*T*(T+1) = 2*h*d*T + 2*h*d*T^2 (the window is applied by LayerCost)
    attn_coef = attention_prefill_flops(shape, 1) / 2.0
    prefill = PrefillFit(
        c0=hw.per_layer_overhead_s + weights * s_byte,
        c1=kv * s_byte + (linear_flops_per_token + attn_coef) * s_flop,
        c2=attn_coef * s_flop,
    )
    attn_per_ctx = attention_decode_flops(shape, 1) - attention_decode_flops(shape, 0)
    decode = DecodeFit(
        c0=hw.per_layer_overhead_s
        + (weights + kv) * s_byte
        + (linear_flops_per_token + attention_decode_flops(shape, 0)) * s_flop,
        c1=kv * s_byte + attn_per_ctx * s_flop,
    )
    return LayerCost(
        name=name,
        kind="decoder",
        prefill=prefill,
        decode=decode,
        weight_bytes=weights,
        kv_bytes_per_token=kv,
        window=facts.window,
        matmul_params=facts.matmul_params,
    )


def embedding_cost(arch: ArchSpec, hw: Hardware) -> LayerCost:
    """Row gather from the embedding table(s): read ``d_model`` stored weights and write
    ``d_model`` activations per token (both at ``dtype_bytes`` unless the weights are quantised).
    """
    s_byte, _ = _rates(hw)
    tables = 2 if arch.learned_positions else 1
    per_token = tables * arch.shape.d_model * (hw.weight_bytes_per_param + hw.dtype_bytes) * s_byte
    return LayerCost(
        name="embedding",
        kind="embedding",
        prefill=PrefillFit(c0=hw.per_layer_overhead_s, c1=per_token, c2=0.0),
        decode=DecodeFit(c0=hw.per_layer_overhead_s + per_token, c1=0.0),
        weight_bytes=hw.weight_bytes(embedding_params(arch)),
        kv_bytes_per_token=0,
    )


def head_cost(arch: ArchSpec, hw: Hardware) -> LayerCost:
    """Final norm over all tokens + logits of the last token (a d_model x vocab GEMV)."""
    s_byte, s_flop = _rates(hw)
    shape = arch.shape
    b = hw.dtype_bytes
    logits = (
        shape.vocab_size * shape.d_model * hw.weight_bytes_per_param * s_byte
        + head_flops(shape) * s_flop
        + shape.vocab_size * 4 * s_byte  # fp32 logits written
    )
    norm_per_token = 2.0 * shape.d_model * b * s_byte
    return LayerCost(
        name="head",
        kind="head",
        prefill=PrefillFit(c0=hw.per_layer_overhead_s + logits, c1=norm_per_token, c2=0.0),
        decode=DecodeFit(c0=hw.per_layer_overhead_s + logits + norm_per_token, c1=0.0),
        weight_bytes=hw.weight_bytes(head_params(arch)),  # the final norm at the same width
        kv_bytes_per_token=0,
    )


def _decoder_layers(arch: ArchSpec, hw: Hardware) -> list[LayerCost]:
    """Every decoder layer; layers with the same facts are costed once and copied."""
    costed: dict[LayerFacts, LayerCost] = {}
    layers = []
    for i, facts in enumerate(layer_facts(arch)):
        if facts not in costed:
            costed[facts] = decoder_cost(arch, hw, layer=i)
        layers.append(costed[facts].model_copy(update={"name": f"decoder.{i}"}))
    return layers


def analytical_profile(
    shape: ModelShape | ArchSpec,
    hw: Hardware,
    *,
    calibration: str | None = None,
    date: str | None = None,
) -> Profile:
    """The roofline profile of ``shape`` (or of an architecture read from a config) on ``hw``.

    ``calibration`` replaces the default note (``hw.efficiency_basis``) on how the efficiency
    factors were chosen; ``date`` pins the provenance date (for reproducible files).
    """
    arch = shape if isinstance(shape, ArchSpec) else arch_for_shape(shape)
    shape = arch.shape
    layers = _decoder_layers(arch, hw)
    versions = {"offload-rl": __version__}
    if arch.config is not None:
        versions["transformers"] = str(arch.config.get("transformers_version", "?"))
    provenance = Provenance(
        kind="analytical",
        hardware=hw.name,
        description=hw.description,
        date=date or datetime.now(UTC).date().isoformat(),
        dtype=_dtype_note(hw),
        threads=None,
        library_versions=versions,
        method=f"{_method(arch)}. Shape: {shape_note(arch)}. Hardware: {hw.sources}"
        + (f". Weights: {hw.weight_format}" if hw.weight_bits is not None else ""),
        peak_flops=hw.peak_flops,
        mem_bw_bytes_s=hw.mem_bw_bytes_s,
        eff_prefill=hw.eff_prefill,
        eff_decode=hw.eff_decode,
        calibration=calibration if calibration is not None else hw.efficiency_basis or None,
    )
    return Profile(
        schema_version=SCHEMA_VERSION,
        model=shape,
        hardware=hw.name,
        dtype_bytes=hw.dtype_bytes,
        provenance=provenance,
        embedding=embedding_cost(arch, hw),
        layers=layers,
        head=head_cost(arch, hw),
        activation_bytes_per_token=activation_bytes_per_token(shape, hw.dtype_bytes),
    )


def _dtype_note(hw: Hardware) -> str:
    """The dtype of the activations, and of the weights where they are stored quantised."""
    dtype = DTYPE_NAMES.get(hw.dtype_bytes, f"{hw.dtype_bytes}-byte")
    if hw.weight_bits is None:
        return dtype
    return f"{hw.weight_bits:g}-bit weights, {dtype} activations and KV cache"


def _method(arch: ArchSpec) -> str:
    """The roofline's description; the last clause says how the layers differ, if they do."""
    if is_uniform(arch):
        return ROOFLINE_METHOD
    return ROOFLINE_METHOD.replace(
        "every decoder layer identical", "each decoder layer costed from its own counts"
    )


def shape_note(arch: ArchSpec) -> str:
    """Where the shape came from, plus the features that change costs per layer."""
    facts = layer_facts(arch)
    notes = [arch.source]
    windowed = [i for i, f in enumerate(facts) if f.window is not None]
    if windowed:
        sizes = sorted({f.window for f in facts if f.window is not None})
        which = "all layers" if len(windowed) == len(facts) else f"layers {_ranges(windowed)}"
        notes.append(f"sliding window {', '.join(map(str, sizes))} tokens on {which}")
    moe = [f for f in facts if f.experts]
    if moe:
        notes.append(
            f"mixture of experts on {len(moe)} of {len(facts)} layers, {moe[0].active_experts} of "
            f"{moe[0].experts} experts per token (FLOPs: active {active_params(arch) / 1e9:.2f}B "
            f"parameters; weights memory: all {total_params(arch) / 1e9:.2f}B)"
        )
    return "; ".join(notes)


def _ranges(indices: list[int]) -> str:
    """0,2,4,...: a step pattern is written as a range, otherwise the list."""
    if len(indices) > 2:
        step = indices[1] - indices[0]
        if all(b - a == step for a, b in itertools.pairwise(indices)):
            return f"{indices[0]}..{indices[-1]} step {step}"
    return ", ".join(map(str, indices))


# --- calibration against a measured profile --------------------------------------------------


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured point of a decoder layer, set against the ideal roofline on the same host.

    ``achieved`` is the fraction of the host's peak reached: for prefill, FLOPs / (peak * t), the
    compute efficiency; for decode, bytes / (bandwidth * t), the bandwidth efficiency.
    """

    model: str
    phase: Literal["prefill", "decode"]
    x: int  # tokens (prefill) or context (decode)
    measured_s: float
    achieved: float
    work: float  # FLOPs (prefill) or bytes moved (decode)


def _measured_points(layer: LayerCost, phase: str) -> list[tuple[int, float]]:
    if layer.samples and layer.samples.get(phase):
        return [(round(x), t) for x, t in layer.samples[phase]]
    raise ConfigError(f"layer {layer.name} has no raw {phase} samples to calibrate against")


def achieved_efficiency(
    arch: ArchSpec, measured: Profile, peak_flops: float, mem_bw_bytes_s: float
) -> list[CalibrationPoint]:
    """Efficiency reached by the measured decoder layer at each measured point.

    Prefill is scored against compute (it is compute-bound beyond a few tokens), decode against
    memory traffic (weights + KV read). Uses the raw samples of the first decoder layer.
    """
    layer = measured.layers[0]
    b = measured.dtype_bytes
    weights = decoder_params(arch) * b
    kv = kv_bytes_per_token(arch.shape, b)
    points = []
    for tokens, t in _measured_points(layer, "prefill"):
        flops = decoder_prefill_flops(arch, tokens)
        points.append(
            CalibrationPoint(arch.name, "prefill", tokens, t, flops / peak_flops / t, flops)
        )
    for ctx, t in _measured_points(layer, "decode"):
        moved = float(weights + kv * (ctx + 1))
        points.append(
            CalibrationPoint(arch.name, "decode", ctx, t, moved / mem_bw_bytes_s / t, moved)
        )
    return points


def summarize_efficiency(
    points: list[CalibrationPoint], min_prefill_tokens: int = 256
) -> tuple[float, float]:
    """Median achieved prefill efficiency (at >= ``min_prefill_tokens``) and decode efficiency."""
    prefill = [p.achieved for p in points if p.phase == "prefill" and p.x >= min_prefill_tokens]
    if not prefill:
        prefill = [p.achieved for p in points if p.phase == "prefill"]
    decode = [p.achieved for p in points if p.phase == "decode"]
    if not prefill or not decode:
        raise ConfigError("calibration needs at least one prefill and one decode point")
    return statistics.median(prefill), statistics.median(decode)


def fit_overhead_and_efficiency(
    points: list[CalibrationPoint], phase: Literal["prefill", "decode"], peak: float
) -> tuple[float, float]:
    """Fit ``t = overhead + work / (peak * eff)`` over the points of one phase.

    Non-negative least squares weighted for relative error, across models of different sizes:
    the intercept is the fixed per-layer cost (dispatch, small ops) that no peak explains, the
    slope the efficiency at which the work itself is done. Returns ``(overhead_s, eff)``.
    """
    from offload_rl.profiler import nnls  # numpy only; kept beside the other fits

    chosen = [p for p in points if p.phase == phase]
    if len(chosen) < 2:
        raise ConfigError(f"fitting an overhead needs at least two {phase} points")
    times = np.array([p.measured_s for p in chosen])
    features = np.array([[1.0, p.work] for p in chosen]) / times[:, None]
    scale = np.linalg.norm(features, axis=0)
    overhead, slope = nnls(features / scale, np.ones(len(chosen))) / scale
    eff = 1.0 / (slope * peak) if slope > 0 else float("inf")
    return float(overhead), float(eff)
