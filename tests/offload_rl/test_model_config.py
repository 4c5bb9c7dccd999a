"""Shapes read from transformers configs: eight architectures checked against hand counts.

Every expected number below is computed by hand from the model's published config.json (the
values the test writes, copied from the hub page's config.json as noted) with the layer layout
of its paper / model card; KV bytes are for fp16 (2 bytes): 2 (K and V) * kv_heads * head_dim * 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from offload_rl.errors import ConfigError
from offload_rl.model_config import load_arch
from offload_rl.model_shapes import (
    active_params,
    decoder_matmul_params,
    get_arch,
    total_params,
)
from offload_rl.roofline import HARDWARE, analytical_profile

# meta-llama/Llama-3.1-8B config.json
LLAMA31_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
}
# mistralai/Mistral-7B-v0.1 config.json (sliding_window 4096 on every layer, Mistral 7B paper)
MISTRAL_7B = {
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "sliding_window": 4096,
    "rope_theta": 10000.0,
}
# microsoft/Phi-3-mini-4k-instruct config.json (fused qkv and gate_up projections)
PHI3_MINI = {
    "model_type": "phi3",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32064,
    "max_position_embeddings": 4096,
    "sliding_window": 2047,
    "_name_or_path": "microsoft/Phi-3-mini-4k-instruct",
}
# google/gemma-2-2b config.json (Gemma 2 report: local 4096-token windows on alternate layers)
GEMMA2_2B = {
    "model_type": "gemma2",
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_attention_heads": 8,
    "num_hidden_layers": 26,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "vocab_size": 256000,
    "sliding_window": 4096,
}
# mistralai/Mixtral-8x7B-v0.1 config.json (8 experts, 2 per token; 46.7B total, 12.9B active)
MIXTRAL_8X7B = {
    "model_type": "mixtral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "vocab_size": 32000,
}


def _write(tmp_path: Path, name: str, config: dict[str, object]) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


# (reference, per-layer params, per-layer KV bytes fp16, windows of layers 0 and 1)
CASES = {
    # q,o 4096^2 each; k,v 4096*1024 each; SwiGLU 3*4096*14336; 2 RMSNorms of 4096
    "llama-3.1-8b": (LLAMA31_8B, 218_112_000, 4096, (None, None)),
    "mistral-7b": (MISTRAL_7B, 218_112_000, 4096, (4096, 4096)),
    # qkv 3072*9216 + o 3072^2 + gate_up 3072*16384 + down 8192*3072 + 2 norms
    "phi-3-mini": (PHI3_MINI, 113_252_352, 12_288, (2047, 2047)),
    # q,o 2304*2048; k,v 2304*1024; 3*2304*9216; four RMSNorms of 2304 per layer
    "gemma-2-2b": (GEMMA2_2B, 77_865_984, 4096, (4096, None)),
    # attention as Llama 8B + router 4096*8 + 8 experts of 3*4096*14336 + 2 norms
    "mixtral-8x7b": (MIXTRAL_8X7B, 1_451_270_144, 4096, (None, None)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_configs_give_hand_counted_layers(tmp_path: Path, name: str) -> None:
    config, params, kv, windows = CASES[name]
    profile = analytical_profile(load_arch(_write(tmp_path, name, config)), HARDWARE["l4"])
    assert profile.n_layers == config["num_hidden_layers"]
    for i in (0, 1):
        assert profile.layers[i].weight_bytes == params * 2
        assert profile.layers[i].kv_bytes_per_token == kv
        assert profile.layers[i].window == windows[i]
    assert profile.activation_bytes_per_token[1] == config["hidden_size"] * 2


@pytest.mark.parametrize(
    ("model", "params", "kv"),
    [
        # openai-community/gpt2: c_attn 768*2304+2304, c_proj 768^2+768, MLP 2*768*3072+3072+768,
        # two LayerNorms of 2*768
        ("gpt2", 7_087_872, 3072),
        # Qwen/Qwen2.5-0.5B: q,o 896^2, k,v 896*128, qkv biases 1152, 3*896*4864, 2 norms of 896
        ("qwen2.5-0.5b", 14_912_384, 512),
        # meta-llama/Llama-3.2-1B: q,o 2048^2, k,v 2048*512, 3*2048*8192, 2 norms of 2048
        ("llama-3.2-1b", 60_821_504, 2048),
        # Qwen/Qwen2.5-7B: q,o 3584^2, k,v 3584*512, qkv biases 4608, 3*3584*18944, 2 norms
        ("qwen2.5-7b", 233_057_792, 2048),
    ],
)
def test_shipped_configs_read_like_any_other(model: str, params: int, kv: int) -> None:
    profile = analytical_profile(get_arch(model), HARDWARE["h100"])
    assert profile.layers[0].weight_bytes == params * 2
    assert profile.layers[0].kv_bytes_per_token == kv


def test_moe_compute_uses_active_and_memory_total_parameters(tmp_path: Path) -> None:
    arch = load_arch(_write(tmp_path, "mixtral", MIXTRAL_8X7B))
    # Mixtral paper: 46.7B parameters, 12.9B used per token
    assert total_params(arch) == 46_702_792_704
    assert active_params(arch) == 12_879_925_248
    # a token multiplies attention 41,943,040 + router 32,768 + 2 experts of 3*4096*14336
    assert decoder_matmul_params(arch) == 41_943_040 + 32_768 + 2 * 176_160_768
    dense = load_arch(_write(tmp_path, "dense", {**MIXTRAL_8X7B, "model_type": "mistral"}))
    moe_layer = analytical_profile(arch, HARDWARE["l4"]).layers[0]
    dense_layer = analytical_profile(dense, HARDWARE["l4"]).layers[0]
    assert moe_layer.weight_bytes > 6 * dense_layer.weight_bytes  # 8 experts held
    # prefill slope ~ FLOPs: 2 active experts + router vs 1 dense MLP, under 2x
    assert 1.5 < moe_layer.prefill.c2 / dense_layer.prefill.c2 + 1.0 < 2.5


def test_qwen_moe_model_type_defaults(tmp_path: Path) -> None:
    # Qwen2MoeConfig defaults are Qwen1.5-MoE-A2.7B: 60 experts of 3*2048*1408, 4 per token, a
    # shared expert of 3*2048*5632 with a 2048-wide gate, router 2048*60, q/k/v/o 2048^2 with
    # q/k/v biases, 2 norms; 14.3B total, 2.7B active (the model card's "A2.7B")
    arch = load_arch("qwen2_moe")
    profile = analytical_profile(arch, HARDWARE["l4"])
    assert profile.layers[0].weight_bytes == 570_560_512 * 2
    assert profile.layers[0].kv_bytes_per_token == 2 * 16 * 128 * 2
    assert round(active_params(arch) / 1e9, 1) == 2.7
    assert round(total_params(arch) / 1e9, 1) == 14.3


def test_sliding_windows_bound_kv_and_attention(tmp_path: Path) -> None:
    profile = analytical_profile(load_arch(_write(tmp_path, "g", GEMMA2_2B)), HARDWARE["l4"])
    local, full = profile.layers[0], profile.layers[1]
    assert local.kv_bytes(10_000) == 4096 * 4096
    assert full.kv_bytes(10_000) == 4096 * 10_000
    assert local.decode_s(8000) == local.decode_s(4095) < full.decode_s(8000)
    # past the window each prefill token costs the same
    step = local.prefill_s(9000) - local.prefill_s(8999)
    assert step == pytest.approx(local.prefill_s(5000) - local.prefill_s(4999))
    assert profile.kv_bytes(0, 26, 10_000) == 13 * 4096 * 4096 + 13 * 4096 * 10_000


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        ("t5", "is_encoder_decoder"),
        ("bart", "is_encoder_decoder"),
        ("vit", "model_type"),
        ("deepseek_v3", "kv_lora_rank"),
    ],
)
def test_what_cannot_be_costed_is_one_line_naming_the_key(ref: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_arch(ref)
    assert f": {key}:" in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_config_files_are_one_line(tmp_path: Path) -> None:
    missing = _write(tmp_path, "nomodeltype", {"hidden_size": 8})
    with pytest.raises(ConfigError, match="model_type: missing"):
        load_arch(missing)
    unknown = _write(tmp_path, "unknown", {"model_type": "no-such-model"})
    with pytest.raises(ConfigError, match="'no-such-model' is not known to transformers"):
        load_arch(unknown)
    linear = _write(tmp_path, "lin", {**LLAMA31_8B, "layer_types": ["linear_attention"] * 32})
    with pytest.raises(ConfigError, match="layer_types: linear_attention"):
        load_arch(linear)
    with pytest.raises(ConfigError, match=r"no config\.json in this folder"):
        load_arch(str(tmp_path))
