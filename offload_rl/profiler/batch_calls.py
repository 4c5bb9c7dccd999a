"""The calls that time one batch through a decoder layer, the head and the embedding.

A batch is laid out as a continuous-batching runtime (vLLM, Sarathi-Serve) lays it out: the new
tokens of every sequence packed into one row, so the layer's projections and MLP run once over
all of them and its weights are read once, while each sequence attends only to its own KV (its
context plus its new tokens, causal within the chunk). The layer is the real transformers layer;
only its attention function is swapped, for the duration of the batched timing, for one that
runs transformers' own sdpa attention per sequence on that sequence's cache
(:func:`packed_attention`), so a batch of one runs exactly the computation the single-request
decode and prefill points time. Nothing here pads a sequence to another's length.

The batch plan (:func:`batch_plan`) times decode steps of ``b`` sequences at one context and at
mixed contexts, a prefill chunk alone on top of each context, and a chunk together with
``b - 1`` decodes (the mixed iterations chunked prefill makes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from offload_rl.model_shapes import ArchSpec
from offload_rl.profiler.layer_calls import Point, embedding_call
from offload_rl.profiler.layers import LayerParts
from offload_rl.profiler.torch_extra import torch_dtype

PACKED_ATTENTION = "offload_rl_packed"

# (new_tokens, context) of each sequence of one batch
Batch = list[tuple[int, int]]


@dataclass(frozen=True)
class SequenceKV:
    """One sequence's cache and its mask (None where transformers' own causal flag is right)."""

    new_tokens: int
    keys: Any  # (1, kv_heads, context, head_dim), None at context 0
    values: Any
    mask: Any | None  # (1, 1, new_tokens, context + new_tokens) bool, for a chunk on a context


@dataclass(frozen=True)
class PackedInputs:
    """One packed batch's inputs: hidden states (1, tokens, d_model), caches, rotary kwargs."""

    hidden: Any
    packed: list[SequenceKV]
    kwargs: dict[str, Any]


def batch_plan(batch_sizes: Sequence[int], contexts: Sequence[int], chunk: int) -> list[Batch]:
    """The batches to time (see the module docstring); each one once, in a fixed order."""
    contexts = sorted(set(contexts))
    plan: list[Batch] = []
    for b in sorted(set(batch_sizes)):
        plan.extend([(1, c)] * b for c in contexts)
        if b > 1 and len(contexts) > 1:
            plan.append([(1, contexts[i % len(contexts)]) for i in range(b)])
    for c in (0, *contexts):
        plan.append([(chunk, c)])
    for b in sorted(set(batch_sizes)):
        if b > 1:
            decodes = [(1, contexts[i % len(contexts)]) for i in range(b - 1)]
            plan.append([(chunk, contexts[0]), *decodes])
    unique: list[Batch] = []
    for batch in plan:
        if batch not in unique:
            unique.append(batch)
    return unique


def packed_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    *,
    packed_kv: Sequence[SequenceKV],
    **kwargs: Any,
) -> tuple[Any, None]:
    """Attention of packed sequences, each over its own cache, with transformers' sdpa."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    outputs = []
    start = 0
    for seq in packed_kv:
        end = start + seq.new_tokens
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        if seq.keys is not None:
            k = torch.cat([seq.keys, k], dim=2)
            v = torch.cat([seq.values, v], dim=2)
        out, _ = sdpa_attention_forward(module, q, k, v, seq.mask, **kwargs)
        outputs.append(out)
        start = end
    return torch.cat(outputs, dim=1), None


@contextlib.contextmanager
def packed_attention_in(decoder: Any) -> Iterator[None]:
    """Run ``decoder``'s attention as :func:`packed_attention` inside the block, then restore."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    configs = {id(m.config): m.config for m in decoder.modules() if hasattr(m, "config")}
    before = {key: config._attn_implementation for key, config in configs.items()}
    try:
        for config in configs.values():
            config._attn_implementation = PACKED_ATTENTION
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation = before[key]


class BatchCalls:
    """Builds the call to time for one batch through each part."""

    def __init__(
        self, torch: Any, parts: LayerParts, arch: ArchSpec, dtype: str, generator: Any
    ) -> None:
        self._torch = torch
        self._parts = parts
        self._shape = arch.shape
        self._dtype = torch_dtype(torch, dtype)
        self.generator = generator

    @property
    def decoder_module(self) -> Any:
        """The decoder layer whose attention :func:`packed_attention_in` swaps."""
        return self._parts.decoder

    def _positions(self, batch: Batch) -> Any:
        torch = self._torch
        return torch.cat([torch.arange(c, c + n) for n, c in batch]).unsqueeze(0)

    def _hidden(self, tokens: int) -> Any:
        x = self._torch.randn(1, tokens, self._shape.d_model, generator=self.generator)
        return x.to(self._dtype)

    def _kv(self, n: int, c: int) -> SequenceKV:
        s, torch = self._shape, self._torch
        if c == 0:
            return SequenceKV(n, None, None, None)
        shape = (1, s.n_kv_heads, c, s.head_dim)
        keys = torch.randn(*shape, generator=self.generator).to(self._dtype)
        values = torch.randn(*shape, generator=self.generator).to(self._dtype)
        mask = None
        if n > 1:  # query j sees the context and the chunk's tokens up to itself
            mask = torch.ones(n, c + n, dtype=torch.bool).tril(diagonal=c)[None, None]
        return SequenceKV(n, keys, values, mask)

    def decoder_inputs(self, batch: Batch) -> PackedInputs:
        """Fresh inputs of one decoder layer for ``batch``: hidden states, caches, positions."""
        x = self._hidden(sum(n for n, _ in batch))
        pos = self._positions(batch)
        kw: dict[str, Any] = {}
        if self._parts.rotary is not None:
            kw = {"position_ids": pos, "position_embeddings": self._parts.rotary(x, pos)}
        return PackedInputs(x, [self._kv(n, c) for n, c in batch], kw)

    def decoder(self, batch: Batch) -> Point:
        """One decoder layer over the packed batch (call it inside :func:`packed_attention_in`)."""
        inputs = self.decoder_inputs(batch)
        decoder = self._parts.decoder
        return (lambda: decoder(inputs.hidden, packed_kv=inputs.packed, **inputs.kwargs)), None

    def head(self, tokens: int, samples: int) -> Point:
        """Final norm over ``tokens`` packed tokens, LM head on ``samples`` of them."""
        x = self._hidden(tokens)
        rows = self._torch.linspace(0, tokens - 1, samples).round().long()
        parts = self._parts
        return (lambda: parts.lm_head(parts.final_norm(x)[:, rows, :])), None

    def embedding(self, batch: Batch) -> Point:
        """Token ids of the packed batch to hidden states (and the position encoding)."""
        pos = self._positions(batch)
        ids = self._torch.randint(0, self._shape.vocab_size, pos.shape, generator=self.generator)
        return embedding_call(self._parts, ids, pos), None
