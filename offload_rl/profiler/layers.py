"""Real ``transformers`` layers of a published architecture: one decoder layer, embedding, head.

Built from the shape alone with random weights: timing does not depend on weight values, and
nothing is downloaded. Identical decoder layers cost the same, so one is enough to time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from offload_rl.model_shapes import ArchSpec
from offload_rl.profiler.torch_extra import require_torch, torch_dtype


def hf_config(arch: ArchSpec, transformers: Any) -> Any:
    """A transformers config of the published shape, with sdpa attention."""
    s = arch.shape
    if arch.family == "gpt2":
        return transformers.GPT2Config(
            n_embd=s.d_model,
            n_layer=s.n_layers,
            n_head=s.n_heads,
            n_inner=s.ffn_dim,
            vocab_size=s.vocab_size,
            n_positions=arch.max_positions,
            layer_norm_epsilon=arch.norm_eps,
            tie_word_embeddings=s.tied_embeddings,
            attn_implementation="sdpa",
        )
    config_class = transformers.Qwen2Config if arch.family == "qwen2" else transformers.LlamaConfig
    return config_class(
        hidden_size=s.d_model,
        intermediate_size=s.ffn_dim,
        num_hidden_layers=s.n_layers,
        num_attention_heads=s.n_heads,
        num_key_value_heads=s.n_kv_heads,
        head_dim=s.head_dim,
        vocab_size=s.vocab_size,
        max_position_embeddings=arch.max_positions,
        rms_norm_eps=arch.norm_eps,
        tie_word_embeddings=s.tied_embeddings,
        rope_parameters=dict(arch.rope or {"rope_type": "default", "rope_theta": 10000.0}),
        attn_implementation="sdpa",
    )


@dataclass
class LayerParts:
    """The modules one profile run times."""

    decoder: Any
    rotary: Any | None  # computes (cos, sin) once per forward pass; counted with the embedding
    embed: Any
    positions: Any | None  # learned position table (GPT-2)
    final_norm: Any
    lm_head: Any
    class_names: str


def build_parts(arch: ArchSpec, dtype: str = "float32") -> LayerParts:
    """Build one decoder layer, the embedding(s) and the head of ``arch``, random weights, eval."""
    torch, transformers = require_torch()
    dtype_class = torch_dtype(torch, dtype)
    config = hf_config(arch, transformers)
    s = arch.shape
    nn = torch.nn
    decoder: Any
    rotary: Any = None
    if arch.family == "gpt2":
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block

        decoder = GPT2Block(config, layer_idx=0)
        final_norm = nn.LayerNorm(s.d_model, eps=arch.norm_eps)
        names = "GPT2Block"
    elif arch.family == "qwen2":
        from transformers.models.qwen2.modeling_qwen2 import (
            Qwen2DecoderLayer,
            Qwen2RMSNorm,
            Qwen2RotaryEmbedding,
        )

        decoder = Qwen2DecoderLayer(config, layer_idx=0)
        rotary = Qwen2RotaryEmbedding(config)
        final_norm = Qwen2RMSNorm(s.d_model, eps=arch.norm_eps)
        names = "Qwen2DecoderLayer, Qwen2RotaryEmbedding, Qwen2RMSNorm"
    else:
        from transformers.models.llama.modeling_llama import (
            LlamaDecoderLayer,
            LlamaRMSNorm,
            LlamaRotaryEmbedding,
        )

        decoder = LlamaDecoderLayer(config, layer_idx=0)
        rotary = LlamaRotaryEmbedding(config)
        final_norm = LlamaRMSNorm(s.d_model, eps=arch.norm_eps)
        names = "LlamaDecoderLayer, LlamaRotaryEmbedding, LlamaRMSNorm"
    embed = nn.Embedding(s.vocab_size, s.d_model)
    positions = nn.Embedding(arch.max_positions, s.d_model) if arch.learned_positions else None
    lm_head = nn.Linear(s.d_model, s.vocab_size, bias=False, device="meta")
    if s.tied_embeddings:
        lm_head.weight = embed.weight
    else:
        lm_head = nn.Linear(s.d_model, s.vocab_size, bias=False)
    modules = [decoder, embed, final_norm, lm_head, *(m for m in (rotary, positions) if m)]
    for module in modules:
        module.to(dtype_class)
        module.eval()
    return LayerParts(decoder, rotary, embed, positions, final_norm, lm_head, names)
