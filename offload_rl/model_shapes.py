"""Published architecture shapes, and the FLOPs and bytes of each layer that the roofline uses.

The numbers are those of the models' public ``config.json`` files (Hugging Face hub), written here
so that nothing is downloaded: profiles are built from these shapes with random weights.
FLOPs count one multiply-add as 2; attention FLOPs are for a causal mask (the masked half skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from offload_rl.errors import ConfigError
from offload_rl.profiles import ModelShape


@dataclass(frozen=True)
class ArchSpec:
    """A :class:`ModelShape` plus the details that change the parameter count and the code path."""

    shape: ModelShape
    family: Literal["gpt2", "qwen2", "llama"]
    gated_mlp: bool  # SwiGLU (gate, up, down) instead of two matrices
    qkv_bias: bool
    norm: Literal["layernorm", "rmsnorm"]
    learned_positions: bool  # GPT-2 style position-embedding table (else rotary)
    max_positions: int
    norm_eps: float
    rope: dict[str, float | str] | None
    source: str

    @property
    def name(self) -> str:
        return self.shape.name


def _spec(
    name: str,
    *,
    n_layers: int,
    d_model: int,
    n_heads: int,
    n_kv_heads: int,
    head_dim: int,
    ffn_dim: int,
    vocab_size: int,
    tied: bool,
    family: Literal["gpt2", "qwen2", "llama"],
    max_positions: int,
    norm_eps: float,
    rope: dict[str, float | str] | None,
    source: str,
) -> ArchSpec:
    shape = ModelShape(
        name=name,
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        ffn_dim=ffn_dim,
        vocab_size=vocab_size,
        tied_embeddings=tied,
    )
    gpt2 = family == "gpt2"
    return ArchSpec(
        shape=shape,
        family=family,
        gated_mlp=not gpt2,
        qkv_bias=family in ("gpt2", "qwen2"),
        norm="layernorm" if gpt2 else "rmsnorm",
        learned_positions=gpt2,
        max_positions=max_positions,
        norm_eps=norm_eps,
        rope=rope,
        source=source,
    )


_QWEN_ROPE: dict[str, float | str] = {"rope_type": "default", "rope_theta": 1_000_000.0}
_LLAMA32_ROPE: dict[str, float | str] = {
    "rope_type": "llama3",
    "rope_theta": 500_000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}

ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "gpt2",
            n_layers=12,
            d_model=768,
            n_heads=12,
            n_kv_heads=12,
            head_dim=64,
            ffn_dim=3072,
            vocab_size=50257,
            tied=True,
            family="gpt2",
            max_positions=1024,
            norm_eps=1e-5,
            rope=None,
            source="openai-community/gpt2 config.json (n_layer 12, n_embd 768, n_head 12)",
        ),
        _spec(
            "qwen2.5-0.5b",
            n_layers=24,
            d_model=896,
            n_heads=14,
            n_kv_heads=2,
            head_dim=64,
            ffn_dim=4864,
            vocab_size=151936,
            tied=True,
            family="qwen2",
            max_positions=32768,
            norm_eps=1e-6,
            rope=_QWEN_ROPE,
            source="Qwen/Qwen2.5-0.5B config.json",
        ),
        _spec(
            "qwen2.5-1.5b",
            n_layers=28,
            d_model=1536,
            n_heads=12,
            n_kv_heads=2,
            head_dim=128,
            ffn_dim=8960,
            vocab_size=151936,
            tied=True,
            family="qwen2",
            max_positions=32768,
            norm_eps=1e-6,
            rope=_QWEN_ROPE,
            source="Qwen/Qwen2.5-1.5B config.json",
        ),
        _spec(
            "llama-3.2-1b",
            n_layers=16,
            d_model=2048,
            n_heads=32,
            n_kv_heads=8,
            head_dim=64,
            ffn_dim=8192,
            vocab_size=128256,
            tied=True,
            family="llama",
            max_positions=131072,
            norm_eps=1e-5,
            rope=_LLAMA32_ROPE,
            source="meta-llama/Llama-3.2-1B config.json",
        ),
        _spec(
            "llama-3.2-3b",
            n_layers=28,
            d_model=3072,
            n_heads=24,
            n_kv_heads=8,
            head_dim=128,
            ffn_dim=8192,
            vocab_size=128256,
            tied=True,
            family="llama",
            max_positions=131072,
            norm_eps=1e-5,
            rope=_LLAMA32_ROPE,
            source="meta-llama/Llama-3.2-3B config.json",
        ),
    )
}


def get_arch(name: str) -> ArchSpec:
    """The architecture called ``name``; an unknown name is a :class:`ConfigError` listing them."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise ConfigError(f"unknown model {name!r}; known models: {known}") from None


def get_shape(name: str) -> ModelShape:
    """The published :class:`ModelShape` of ``name``."""
    return get_arch(name).shape


def arch_for_shape(shape: ModelShape) -> ArchSpec:
    """The registered architecture of ``shape``, or a modern default (SwiGLU, RMSNorm, RoPE).

    Lets the roofline price a shape that is not in the registry (e.g. one read from a profile).
    """
    known = ARCHITECTURES.get(shape.name)
    if known is not None and known.shape == shape:
        return known
    return ArchSpec(
        shape=shape,
        family="llama",
        gated_mlp=True,
        qkv_bias=False,
        norm="rmsnorm",
        learned_positions=False,
        max_positions=131072,
        norm_eps=1e-5,
        rope=None,
        source="shape only; assumed SwiGLU MLP, RMSNorm, rotary positions, no biases",
    )


# --- parameter counts ------------------------------------------------------------------------


def decoder_matmul_params(arch: ArchSpec) -> int:
    """Weights of one decoder layer that take part in matmuls (projections and MLP, no biases)."""
    s = arch.shape
    q_out = s.n_heads * s.head_dim
    kv_out = s.n_kv_heads * s.head_dim
    attention = s.d_model * (q_out + 2 * kv_out) + q_out * s.d_model
    mlp = (3 if arch.gated_mlp else 2) * s.d_model * s.ffn_dim
    return attention + mlp


def decoder_params(arch: ArchSpec) -> int:
    """All parameters of one decoder layer (matmul weights, biases, norms)."""
    s = arch.shape
    q_out = s.n_heads * s.head_dim
    kv_out = s.n_kv_heads * s.head_dim
    biases = 0
    if arch.qkv_bias:
        biases += q_out + 2 * kv_out
    if arch.family == "gpt2":  # GPT-2 also has biases on the output projection and both MLP layers
        biases += s.d_model + s.ffn_dim + s.d_model
    norms = 2 * s.d_model * (2 if arch.norm == "layernorm" else 1)
    return decoder_matmul_params(arch) + biases + norms


def embedding_params(arch: ArchSpec) -> int:
    """Token-embedding table (plus the position table for learned positions)."""
    s = arch.shape
    positions = arch.max_positions * s.d_model if arch.learned_positions else 0
    return s.vocab_size * s.d_model + positions


def head_params(arch: ArchSpec) -> int:
    """Final norm plus the vocabulary projection.

    Counted in full even when tied to the embedding: with a split, the head runs on another tier
    than the embedding and needs its own copy.
    """
    s = arch.shape
    norm = s.d_model * (2 if arch.norm == "layernorm" else 1)
    return norm + s.vocab_size * s.d_model


def total_params(arch: ArchSpec) -> int:
    """Parameters of the whole model (a tied head counted once)."""
    s = arch.shape
    head = head_params(arch) - (s.vocab_size * s.d_model if s.tied_embeddings else 0)
    return embedding_params(arch) + s.n_layers * decoder_params(arch) + head


# --- FLOPs and bytes per layer ---------------------------------------------------------------


def attention_prefill_flops(shape: ModelShape, tokens: int) -> float:
    """QK^T and AV of a causal prefill of ``tokens`` tokens: 2 * 2 * heads * dim * T(T+1)/2."""
    return 2.0 * shape.n_heads * shape.head_dim * tokens * (tokens + 1)


def attention_decode_flops(shape: ModelShape, context: int) -> float:
    """QK^T and AV of one new token against ``context`` cached tokens plus itself."""
    return 4.0 * shape.n_heads * shape.head_dim * (context + 1)


def decoder_prefill_flops(arch: ArchSpec, tokens: int) -> float:
    """FLOPs of one decoder layer prefilling ``tokens`` tokens (matmuls and attention)."""
    return 2.0 * tokens * decoder_matmul_params(arch) + attention_prefill_flops(arch.shape, tokens)


def decoder_decode_flops(arch: ArchSpec, context: int) -> float:
    """FLOPs of one decoder layer decoding one token at ``context``."""
    return 2.0 * decoder_matmul_params(arch) + attention_decode_flops(arch.shape, context)


def head_flops(shape: ModelShape) -> float:
    """Logits for one token (generation only needs the last position's logits)."""
    return 2.0 * shape.d_model * shape.vocab_size
