"""Analytical profiles: parameter counts, monotonicity, hardware ordering, calibration helpers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.errors import ConfigError
from offload_rl.model_shapes import (
    ARCHITECTURES,
    arch_for_shape,
    decoder_params,
    decoder_prefill_flops,
    get_arch,
    get_shape,
    total_params,
)
from offload_rl.profiles import ModelShape
from offload_rl.roofline import (
    HARDWARE,
    Hardware,
    achieved_efficiency,
    analytical_profile,
    get_hardware,
    summarize_efficiency,
)

MODELS = list(ARCHITECTURES)


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("gpt2", 124_439_808),  # GPT2LMHeadModel, tied head
        ("qwen2.5-0.5b", 494_032_768),  # Qwen2ForCausalLM, tied
        ("llama-3.2-1b", 1_235_814_400),  # LlamaForCausalLM, tied
        ("qwen2.5-7b", 7_615_616_512),  # Qwen2ForCausalLM, untied (the model card's "7.61B")
    ],
)
def test_parameter_counts_match_the_published_models(model, params):
    assert total_params(get_arch(model)) == params


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="known models: gpt2"):
        get_arch("gpt5")
    with pytest.raises(ConfigError, match="known hardware: sd8gen3-phone"):
        get_hardware("toaster")


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    hw=st.sampled_from(list(HARDWARE)),
    a=st.integers(1, 32_768),
    b=st.integers(1, 32_768),
)
def test_costs_grow_with_tokens_and_context(model, hw, a, b):
    lo, hi = sorted((a, b))
    profile = analytical_profile(get_shape(model), HARDWARE[hw])
    layer = profile.layers[0]
    assert 0 < layer.prefill_s(lo) <= layer.prefill_s(hi)
    assert 0 < layer.decode_s(lo) <= layer.decode_s(hi)
    if hi > lo:
        assert layer.prefill_s(lo) < layer.prefill_s(hi)
        assert layer.decode_s(lo) < layer.decode_s(hi)
    assert profile.head.prefill_s(lo) <= profile.head.prefill_s(hi)


@pytest.mark.parametrize("model", MODELS)
def test_faster_hardware_is_faster(model):
    shape = get_shape(model)
    order = ["sd8gen3-phone", "jetson-orin-nano", "l4", "a100", "h100"]
    profiles = [analytical_profile(shape, HARDWARE[name]) for name in order]
    n = shape.n_layers
    for tokens in (1, 16, 256, 4096):
        times = [p.prefill_s(0, n, tokens) for p in profiles]
        assert times == sorted(times, reverse=True), (tokens, times)
    for ctx in (1, 512, 8192):
        times = [p.decode_s(0, n, ctx) for p in profiles]
        assert times == sorted(times, reverse=True), (ctx, times)


def test_decode_is_bandwidth_bound_and_matches_hand_calculation():
    arch = get_arch("qwen2.5-0.5b")
    hw = HARDWARE["l4"]
    layer = analytical_profile(arch.shape, hw).layers[0]
    weights = decoder_params(arch) * 2
    memory_s = (weights + 512) / (hw.mem_bw_bytes_s * hw.eff_decode)
    assert layer.weight_bytes == weights
    assert layer.decode.c0 == pytest.approx(
        hw.per_layer_overhead_s + memory_s + (2 * 14_909_440 + 4 * 14 * 64) / (121e12 * 0.55),
        rel=1e-3,
    )
    # per context token: one more KV entry read (512 B) plus 4*h*d FLOPs
    assert layer.decode.c1 == pytest.approx(
        512 / (300e9 * 0.70) + 4 * 14 * 64 / (121e12 * 0.55), rel=1e-9
    )


def test_prefill_is_compute_bound_for_long_prompts():
    arch = get_arch("llama-3.2-1b")
    hw = HARDWARE["h100"]
    layer = analytical_profile(arch.shape, hw).layers[0]
    tokens = 4096
    compute_s = decoder_prefill_flops(arch, tokens) / (hw.peak_flops * hw.eff_prefill)
    assert compute_s < layer.prefill_s(tokens) < 1.1 * compute_s


def test_profile_fields_and_provenance():
    profile = analytical_profile(get_shape("gpt2"), HARDWARE["sd8gen3-phone"], calibration="x")
    assert profile.provenance.kind == "analytical"
    assert profile.provenance.calibration == "x"
    assert profile.provenance.peak_flops == 5.5e12
    assert profile.dtype_bytes == 2
    assert profile.activation_bytes_per_token == [4] + [768 * 2] * 12
    assert [layer.name for layer in profile.layers][:2] == ["decoder.0", "decoder.1"]
    default = analytical_profile(get_shape("gpt2"), HARDWARE["l4"])
    assert default.provenance.calibration == HARDWARE["l4"].efficiency_basis
    # the head is a d x vocab GEMV: it is far heavier than the embedding gather
    assert default.head.decode_s(0) > 10 * default.embedding.decode_s(0)


def test_unregistered_shape_gets_modern_defaults():
    shape = ModelShape(
        name="custom",
        n_layers=2,
        d_model=64,
        n_heads=4,
        n_kv_heads=2,
        head_dim=16,
        ffn_dim=128,
        vocab_size=100,
        tied_embeddings=False,
    )
    arch = arch_for_shape(shape)
    assert arch.gated_mlp and arch.norm == "rmsnorm"
    profile = analytical_profile(shape, HARDWARE["l4"])
    assert profile.n_layers == 2


def test_calibration_recovers_the_efficiency_of_a_synthetic_measurement():
    arch = get_arch("qwen2.5-0.5b")
    host = Hardware(
        name="host",
        description="test",
        peak_flops=1e11,
        mem_bw_bytes_s=1e10,
        eff_prefill=0.5,
        eff_decode=0.8,
        per_layer_overhead_s=0.0,
        dtype_bytes=4,
        sources="test",
    )
    synthetic = analytical_profile(arch.shape, host)
    layer = synthetic.layers[0]
    samples = {
        "prefill": [(t, layer.prefill_s(t)) for t in (64, 256, 1024)],
        "decode": [(c, layer.decode_s(c)) for c in (16, 512)],
    }
    measured = synthetic.model_copy(
        update={"layers": [layer.model_copy(update={"samples": samples})] * arch.shape.n_layers}
    )
    points = achieved_efficiency(arch, measured, host.peak_flops, host.mem_bw_bytes_s)
    eff_prefill, eff_decode = summarize_efficiency(points)
    # the additive model spends a little time on the other resource, so achieved <= the factor
    assert 0.4 < eff_prefill <= 0.5
    assert 0.7 < eff_decode <= 0.8
    with pytest.raises(ConfigError):
        achieved_efficiency(arch, synthetic, 1e11, 1e10)  # no samples to compare with


def test_the_four_bit_phone_stores_weights_at_4_5_bits_and_keeps_kv_and_rates_fp16():
    """q4f16_1: every weight (embedding and head too) at 4.5 bits; the KV cache, activations
    and FLOP rate are the fp16 phone's, so only the weight reads get cheaper."""
    arch = get_arch("qwen2.5-7b")
    fp16 = analytical_profile(arch, HARDWARE["sd8gen3-phone"])
    q4 = analytical_profile(arch, HARDWARE["sd8gen3-phone-q4"])
    assert q4.layers[0].weight_bytes == round(decoder_params(arch) * 4.5 / 8)
    weights = q4.embedding.weight_bytes + q4.weight_bytes(0, q4.n_layers) + q4.head.weight_bytes
    assert weights == pytest.approx(total_params(arch) * 4.5 / 8, rel=1e-6)  # untied: both tables
    assert q4.kv_bytes_per_token(0, 28) == fp16.kv_bytes_per_token(0, 28) == 28 * 2 * 4 * 128 * 2
    assert q4.activation_bytes_per_token == fp16.activation_bytes_per_token
    assert q4.layers[0].prefill.c2 == fp16.layers[0].prefill.c2
    assert q4.layers[0].decode.c1 == fp16.layers[0].decode.c1
    hw = HARDWARE["sd8gen3-phone-q4"]
    s_byte = 1.0 / (hw.mem_bw_bytes_s * hw.eff_decode)
    saved = fp16.layers[0].weight_bytes - q4.layers[0].weight_bytes
    assert fp16.layers[0].decode.c0 - q4.layers[0].decode.c0 == pytest.approx(saved * s_byte)
    head_saved = (fp16.head.decode.c0 - q4.head.decode.c0) / s_byte
    assert head_saved == pytest.approx(152_064 * 3584 * (2 - 4.5 / 8))
    # the gather reads a 4.5-bit row and writes an fp16 row
    assert q4.embedding.prefill.c1 == pytest.approx(3584 * (4.5 / 8 + 2) * s_byte)
    assert q4.provenance.dtype == "4.5-bit weights, float16 activations and KV cache"
    assert fp16.provenance.dtype == "float16"
