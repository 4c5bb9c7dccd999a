"""Published architecture shapes, and the FLOPs and bytes of each layer that the roofline uses.

The numbers are those of the models' public ``config.json`` files (Hugging Face hub), written here
so that nothing is downloaded: profiles are built from these shapes with random weights.
FLOPs count one multiply-add as 2; attention FLOPs are for a causal mask (the masked half skipped).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from offload_rl.errors import ConfigError
from offload_rl.layer_counts import LayerFacts
from offload_rl.profiles import ModelShape


@dataclass(frozen=True)
class ArchSpec:
    """A :class:`ModelShape` plus the details that change the parameter count and the code path.

    Read from a transformers config (:func:`offload_rl.model_config.load_arch`), ``config`` holds
    that config as a dict and the parameter counts come from the model transformers builds from
    it (per layer: sliding windows, experts); built by hand (``config`` None), the formulas below
    price a GPT-2, Qwen2 or Llama layout.
    """

    shape: ModelShape
    family: Literal["gpt2", "qwen2", "llama", "transformers"]
    gated_mlp: bool  # SwiGLU (gate, up, down) instead of two matrices
    qkv_bias: bool
    norm: Literal["layernorm", "rmsnorm"]
    learned_positions: bool  # GPT-2 style position-embedding table (else rotary)
    max_positions: int
    norm_eps: float
    rope: dict[str, float | str] | None
    source: str
    config: dict[str, Any] | None = None  # the transformers config (to_dict) it was read from

    @property
    def name(self) -> str:
        return self.shape.name


def family_traits(family: str) -> dict[str, Any]:
    """The layout the formulas assume for a family: GPT-2, or Qwen2/Llama (and any other)."""
    gpt2 = family == "gpt2"
    return {
        "gated_mlp": not gpt2,
        "qkv_bias": family in ("gpt2", "qwen2"),
        "norm": "layernorm" if gpt2 else "rmsnorm",
        "learned_positions": gpt2,
    }


class _ShippedArchitectures(Mapping[str, "ArchSpec"]):
    """The shipped configs (``offload_rl/data/models``), each read through transformers once.

    A mapping, as it always was, but lazy: listing the names needs no transformers, looking one
    up reads its config.json like any user's.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, ArchSpec] = {}

    def _names(self) -> list[str]:
        from offload_rl.model_config import shipped_model_names

        return shipped_model_names()

    def __getitem__(self, name: str) -> ArchSpec:
        if name not in self._loaded:
            if name not in self._names():
                raise KeyError(name)
            from offload_rl.model_config import load_arch

            self._loaded[name] = load_arch(name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


ARCHITECTURES: Mapping[str, ArchSpec] = _ShippedArchitectures()


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


def layer_facts(arch: ArchSpec) -> tuple[LayerFacts, ...]:
    """Weights held, weights multiplied and window of every decoder layer of ``arch``.

    Counted off the transformers model when ``arch`` came from a config (layers may differ:
    windows, experts); otherwise every layer is the formula's.
    """
    if arch.config is not None:
        from offload_rl.layer_counts import count_model

        return count_model(arch.config).layers
    s = arch.shape
    q_out = s.n_heads * s.head_dim
    kv_out = s.n_kv_heads * s.head_dim
    matmul = s.d_model * (q_out + 2 * kv_out) + q_out * s.d_model
    matmul += (3 if arch.gated_mlp else 2) * s.d_model * s.ffn_dim
    biases = q_out + 2 * kv_out if arch.qkv_bias else 0
    if arch.family == "gpt2":  # GPT-2 also has biases on the output projection and both MLP layers
        biases += s.d_model + s.ffn_dim + s.d_model
    norms = 2 * s.d_model * (2 if arch.norm == "layernorm" else 1)
    return (LayerFacts(params=matmul + biases + norms, matmul_params=matmul),) * s.n_layers


def is_uniform(arch: ArchSpec) -> bool:
    """Whether every decoder layer costs the same (no per-layer windows or expert layouts)."""
    facts = layer_facts(arch)
    return all(f == facts[0] for f in facts)


def decoder_matmul_params(arch: ArchSpec, layer: int = 0) -> int:
    """Weights of decoder layer ``layer`` a token multiplies (active experts only, no biases)."""
    return layer_facts(arch)[layer].matmul_params


def decoder_params(arch: ArchSpec, layer: int = 0) -> int:
    """All parameters of decoder layer ``layer`` (every expert, biases, norms)."""
    return layer_facts(arch)[layer].params


def embedding_params(arch: ArchSpec) -> int:
    """Token-embedding table (plus the position table for learned positions)."""
    if arch.config is not None:
        from offload_rl.layer_counts import count_model

        return count_model(arch.config).embedding_params
    s = arch.shape
    positions = arch.max_positions * s.d_model if arch.learned_positions else 0
    return s.vocab_size * s.d_model + positions


def head_params(arch: ArchSpec) -> int:
    """Final norm plus the vocabulary projection.

    Counted in full even when tied to the embedding: with a split, the head runs on another tier
    than the embedding and needs its own copy.
    """
    if arch.config is not None:
        from offload_rl.layer_counts import count_model

        return count_model(arch.config).head_params
    s = arch.shape
    norm = s.d_model * (2 if arch.norm == "layernorm" else 1)
    return norm + s.vocab_size * s.d_model


def total_params(arch: ArchSpec) -> int:
    """Parameters of the whole model (a tied head counted once, every expert counted)."""
    s = arch.shape
    head = head_params(arch) - (s.vocab_size * s.d_model if s.tied_embeddings else 0)
    return embedding_params(arch) + sum(f.params for f in layer_facts(arch)) + head


def active_params(arch: ArchSpec) -> int:
    """Parameters one token goes through (routed experts: only the active ones)."""
    return total_params(arch) - sum(f.idle_params for f in layer_facts(arch))


# --- FLOPs and bytes per layer ---------------------------------------------------------------


def attended_pairs(tokens: int, window: int | None = None) -> int:
    """(query, key) pairs of a causal prefill: T(T+1)/2, or each query sees at most ``window``."""
    if window is None or tokens <= window:
        return tokens * (tokens + 1) // 2
    return window * (window + 1) // 2 + (tokens - window) * window


def attention_prefill_flops(shape: ModelShape, tokens: int, window: int | None = None) -> float:
    """QK^T and AV of a causal prefill of ``tokens`` tokens: 2 * 2 * heads * dim * pairs."""
    return 4.0 * shape.n_heads * shape.head_dim * attended_pairs(tokens, window)


def attention_decode_flops(shape: ModelShape, context: int, window: int | None = None) -> float:
    """QK^T and AV of one new token against ``context`` cached tokens plus itself.

    With a sliding window the token sees at most ``window`` positions, itself included.
    """
    seen = context + 1 if window is None else min(context + 1, window)
    return 4.0 * shape.n_heads * shape.head_dim * seen


def decoder_prefill_flops(arch: ArchSpec, tokens: int, layer: int = 0) -> float:
    """FLOPs of decoder layer ``layer`` prefilling ``tokens`` tokens (matmuls and attention)."""
    facts = layer_facts(arch)[layer]
    attention = attention_prefill_flops(arch.shape, tokens, facts.window)
    return 2.0 * tokens * facts.matmul_params + attention


def decoder_decode_flops(arch: ArchSpec, context: int, layer: int = 0) -> float:
    """FLOPs of decoder layer ``layer`` decoding one token at ``context``."""
    facts = layer_facts(arch)[layer]
    return 2.0 * facts.matmul_params + attention_decode_flops(arch.shape, context, facts.window)


def head_flops(shape: ModelShape) -> float:
    """Logits for one token (generation only needs the last position's logits)."""
    return 2.0 * shape.d_model * shape.vocab_size
