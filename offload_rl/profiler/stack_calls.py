"""Packed iterations through the whole stack of distinct decoder layers, as a real forward runs.

:mod:`offload_rl.profiler.batch_calls` times one decoder layer over and over: on a CPU whose
last-level cache holds most of one layer's weights (GPT-2: 28 MiB of a 32 MiB L3), that layer is
read from the cache on every call, whereas a forward pass streams ``L`` different layers from
DRAM, so a weight-bound decode is measured 15-28% fast. Here every call runs all ``L`` layers,
each with its own random weights, over the packed tokens of the batch (one ``[1, T, d]``
matrix: the projections and the MLP once over every sequence's new tokens), then the final norm.

Each sequence keeps, per layer, one key and one value buffer with room for its context plus its
new tokens, allocated as a growing cache allocates (capacity doubled until it fits,
:func:`kv_capacity`) (:class:`StackKV`); the layer's attention function is swapped
(:func:`stack_attention`, as :func:`~offload_rl.profiler.batch_calls.packed_attention_in` does)
for one that writes the sequence's new keys and values into its buffers in place and runs
transformers' sdpa attention over the filled positions (a strided view, not a copy), causal
within a chunk. That is what a runtime with per-sequence caches that grow in place does (the
cell validation's ``PackedModel``): no copy of the context per step. Every call rewrites the
same positions, so each repeat sees the same context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from offload_rl.model_shapes import ArchSpec
from offload_rl.profiler.batch_calls import Batch
from offload_rl.profiler.layer_calls import Point
from offload_rl.profiler.layers import LayerParts, build_decoder
from offload_rl.profiler.torch_extra import torch_dtype

STACK_ATTENTION = "offload_rl_stack"
MIN_KV_CAPACITY = 64  # a sequence's first cache allocation, in positions


def kv_capacity(tokens: int) -> int:
    """Positions a growing cache has allocated when it holds ``tokens``: doubled from
    :data:`MIN_KV_CAPACITY` until they fit."""
    capacity = MIN_KV_CAPACITY
    while capacity < tokens:
        capacity *= 2
    return capacity


@dataclass(frozen=True)
class StackKV:
    """One sequence's buffers in one layer: ``(1, kv_heads, capacity, head_dim)`` each, of which
    the first ``context + new_tokens`` positions are attended."""

    new_tokens: int
    context: int
    keys: Any
    values: Any
    mask: Any | None  # (1, 1, new, context + new) bool for a chunk; None for one token


@dataclass(frozen=True)
class StackInputs:
    """One packed batch's inputs: hidden states (1, tokens, d_model), per layer each sequence's
    buffers, the rotary kwargs."""

    hidden: Any
    caches: list[list[StackKV]]
    kwargs: dict[str, Any]


def stack_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    *,
    stack_kv: Sequence[StackKV],
    **kwargs: Any,
) -> tuple[Any, None]:
    """Attention of packed sequences, each writing its new keys and values into its own
    buffers and attending over them, with transformers' sdpa."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    outputs = []
    start = 0
    for seq in stack_kv:
        end = start + seq.new_tokens
        filled = seq.context + seq.new_tokens
        seq.keys[:, :, seq.context : filled] = key[:, :, start:end]
        seq.values[:, :, seq.context : filled] = value[:, :, start:end]
        keys, values = seq.keys[:, :, :filled], seq.values[:, :, :filled]
        q = query[:, :, start:end]
        out, _ = sdpa_attention_forward(module, q, keys, values, seq.mask, **kwargs)
        outputs.append(out)
        start = end
    return torch.cat(outputs, dim=1), None


@contextlib.contextmanager
def stack_attention_in(decoders: Sequence[Any]) -> Iterator[None]:
    """Run every decoder's attention as :func:`stack_attention` inside the block, then restore."""
    from transformers import AttentionInterface

    AttentionInterface.register(STACK_ATTENTION, stack_attention)
    configs = {
        id(m.config): m.config for d in decoders for m in d.modules() if hasattr(m, "config")
    }
    before = {key: config._attn_implementation for key, config in configs.items()}
    try:
        for config in configs.values():
            config._attn_implementation = STACK_ATTENTION
        yield
    finally:
        for key, config in configs.items():
            config._attn_implementation = before[key]


def build_stack(arch: ArchSpec, dtype: str, first: Any) -> list[Any]:
    """The ``L`` decoder layers of ``arch``: ``first`` (already built, layer 0) and one new layer
    per further index, each with its own weights."""
    return [first, *(build_decoder(arch, dtype, i) for i in range(1, arch.shape.n_layers))]


class StackCalls:
    """Builds the call to time for one batch through the stack, and for the head."""

    def __init__(
        self,
        torch: Any,
        parts: LayerParts,
        decoders: Sequence[Any],
        arch: ArchSpec,
        dtype: str,
        generator: Any,
    ) -> None:
        self._torch = torch
        self._parts = parts
        self.decoders = list(decoders)
        self._shape = arch.shape
        self._dtype = torch_dtype(torch, dtype)
        self._generator = generator

    def _randn(self, *shape: int) -> Any:
        return self._torch.randn(*shape, generator=self._generator).to(self._dtype)

    def _kv(self, n: int, c: int) -> StackKV:
        s, torch = self._shape, self._torch
        shape = (1, s.n_kv_heads, kv_capacity(c + n), s.head_dim)
        mask = None
        if n > 1:  # query j sees the context and the chunk's tokens up to itself
            mask = torch.ones(n, c + n, dtype=torch.bool).tril(diagonal=c)[None, None]
        return StackKV(n, c, self._randn(*shape), self._randn(*shape), mask)

    def inputs(self, batch: Batch) -> StackInputs:
        """Fresh inputs of the stack for ``batch``: hidden states, every layer's buffers."""
        torch = self._torch
        x = self._randn(1, sum(n for n, _ in batch), self._shape.d_model)
        kw: dict[str, Any] = {}
        if self._parts.rotary is not None:
            pos = torch.cat([torch.arange(c, c + n) for n, c in batch]).unsqueeze(0)
            kw = {"position_ids": pos, "position_embeddings": self._parts.rotary(x, pos)}
        caches = [[self._kv(n, c) for n, c in batch] for _ in self.decoders]
        return StackInputs(x, caches, kw)

    def forward(self, inputs: StackInputs) -> Any:
        """Every decoder layer in turn over the packed tokens, then the final norm (call it
        inside :func:`stack_attention_in`)."""
        h = inputs.hidden
        for decoder, kv in zip(self.decoders, inputs.caches, strict=True):
            out = decoder(h, stack_kv=kv, **inputs.kwargs)
            h = out[0] if isinstance(out, tuple) else out
        return self._parts.final_norm(h)

    def layers(self, batch: Batch) -> Point:
        """The call that runs :meth:`forward` over fresh inputs for ``batch``."""
        inputs = self.inputs(batch)
        return (lambda: self.forward(inputs)), None

    def head(self, samples: int) -> Point:
        """The LM head over ``samples`` rows (the final norm is counted with the layers)."""
        x = self._randn(1, samples, self._shape.d_model)
        lm_head = self._parts.lm_head
        return (lambda: lm_head(x)), None
