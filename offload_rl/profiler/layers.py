"""Real ``transformers`` layers of a published architecture: one decoder layer, embedding, head.

Built from the shape alone with random weights: timing does not depend on weight values, and
nothing is downloaded. Identical decoder layers cost the same, so one is enough to time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from offload_rl.model_shapes import ArchSpec
from offload_rl.profiler.torch_extra import require_torch, torch_dtype


def hf_config(arch: ArchSpec, transformers: Any) -> Any:
    """A transformers config of the published shape, with sdpa attention.

    An architecture read from a config is rebuilt from that config, every key of it kept.
    """
    s = arch.shape
    if arch.config is not None:
        data = dict(arch.config)
        return transformers.AutoConfig.for_model(
            data.pop("model_type"), **data, attn_implementation="sdpa"
        )
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


def build_parts(arch: ArchSpec, dtype: str = "float32", layer: int = 0) -> LayerParts:
    """Build decoder layer ``layer``, the embedding(s) and the head of ``arch``, random weights."""
    torch, transformers = require_torch()
    dtype_class = torch_dtype(torch, dtype)
    config = hf_config(arch, transformers)
    s = arch.shape
    nn = torch.nn
    decoder, rotary, final_norm, names = _decoder_parts(torch, arch, config, layer)
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


def build_decoder(arch: ArchSpec, dtype: str = "float32", layer: int = 0) -> Any:
    """Decoder layer ``layer`` of ``arch`` alone, random weights (a stack builds one per index:
    each its own weights, as a real model's layers)."""
    torch, transformers = require_torch()
    decoder = _decoder_parts(torch, arch, hf_config(arch, transformers), layer)[0]
    decoder.to(torch_dtype(torch, dtype))
    decoder.eval()
    return decoder


def _decoder_parts(
    torch: Any, arch: ArchSpec, config: Any, layer: int
) -> tuple[Any, Any, Any, str]:
    """Decoder layer ``layer``, rotary embedding (or None), final norm and the class names."""
    s = arch.shape
    nn = torch.nn
    if arch.family == "transformers":
        return _any_causal_lm_parts(torch, config, layer)
    if arch.family == "gpt2":
        from transformers.models.gpt2.modeling_gpt2 import GPT2Block

        final_norm = nn.LayerNorm(s.d_model, eps=arch.norm_eps)
        return GPT2Block(config, layer_idx=layer), None, final_norm, "GPT2Block"
    # qwen2 and llama: the same three classes under the family's prefix
    module, prefix = ("qwen2", "Qwen2") if arch.family == "qwen2" else ("llama", "Llama")
    classes = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    names = [f"{prefix}{kind}" for kind in ("DecoderLayer", "RotaryEmbedding", "RMSNorm")]
    layer_class, rotary_class, norm_class = (getattr(classes, name) for name in names)
    return (
        layer_class(config, layer_idx=layer),
        rotary_class(config),
        norm_class(s.d_model, eps=arch.norm_eps),
        ", ".join(names),
    )


def _any_causal_lm_parts(torch: Any, config: Any, layer: int) -> tuple[Any, Any, Any, str]:
    """Decoder layer ``layer``, rotary embedding and final norm of any transformers causal LM.

    The model is laid out on the meta device (no memory) to find its classes; the decoder layer
    and the rotary embedding are then built for real from the config, the final norm is moved
    to the CPU and given weights of one (its values do not change its time).
    """
    from transformers import AutoModelForCausalLM

    from offload_rl.layer_counts import _layer_list

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    prefix, layers = _layer_list(skeleton, config.num_hidden_layers)
    decoder = type(layers[layer])(config, layer_idx=layer)
    rotary = final_norm = None
    head = skeleton.get_output_embeddings()
    for name, module in skeleton.named_modules():
        inside = name == prefix or name.startswith(prefix + ".") or module is head
        kind = type(module).__name__
        if inside or isinstance(module, torch.nn.Embedding):
            continue
        if kind.endswith("RotaryEmbedding") and rotary is None:
            rotary = type(module)(config=config)
        elif "norm" in kind.lower() and final_norm is None:
            final_norm = module.to_empty(device="cpu")
            with torch.no_grad():
                for param in final_norm.parameters():
                    param.fill_(1.0)
    if final_norm is None:
        final_norm = torch.nn.Identity()
    parts = [
        type(decoder).__name__,
        type(rotary).__name__ if rotary else "",
        type(final_norm).__name__,
    ]
    return decoder, rotary, final_norm, ", ".join(p for p in parts if p)
