"""The calls that time one layer kind at one prefill length or decode context.

Each point gets fresh inputs drawn from one seeded generator, in the order the points are timed.
Prefill runs against a fresh cache (causal, as generation's first pass); decode runs one token
against a cache pre-filled to the context, trimmed back after every call so that each run sees
the same context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from offload_rl.model_shapes import ArchSpec, layer_facts
from offload_rl.profiler.layers import LayerParts
from offload_rl.profiler.torch_extra import torch_dtype

# A zero-argument call to time, and what to run after each call outside the timed region.
Point = tuple[Callable[[], object], Callable[[], object] | None]


def embedding_call(parts: LayerParts, ids: Any, pos: Any) -> Callable[[], object]:
    """Token ``ids`` at positions ``pos`` to hidden states, with the position encoding (learned
    table or the rotary cos/sin, computed once per forward pass and counted here)."""

    def run() -> object:
        h = parts.embed(ids)
        if parts.positions is not None:
            h = h + parts.positions(pos)
        if parts.rotary is not None:
            parts.rotary(h, pos)
        return h

    return run


class LayerCalls:
    """Builds the call to time for each (layer kind, phase, length or context)."""

    def __init__(
        self, torch: Any, parts: LayerParts, arch: ArchSpec, dtype: str, layer: int = 0
    ) -> None:
        from transformers.cache_utils import DynamicCache

        # a sliding-window layer never holds more than window - 1 earlier tokens
        self.window = layer_facts(arch)[layer].window
        self._torch = torch
        self._parts = parts
        self._shape = arch.shape
        self._dtype = torch_dtype(torch, dtype)
        self._cache_class = DynamicCache
        self.generator = torch.Generator().manual_seed(0)

    def point(self, kind: str, phase: str, x: int) -> Point:
        """The call for ``kind`` ('embedding', 'decoder', 'head') at prefill T=x or decode ctx=x."""
        prefill = phase == "prefill"
        if kind == "embedding":
            return (self._embed(x, 0) if prefill else self._embed(1, x)), None
        if kind == "head":
            return self._head(x if prefill else 1), None
        if kind == "decoder":
            return (self._prefill(x), None) if prefill else self._decode(x)
        raise ValueError(f"unknown layer kind {kind!r}")

    def _hidden(self, tokens: int) -> Any:
        x = self._torch.randn(1, tokens, self._shape.d_model, generator=self.generator)
        return x.to(self._dtype)

    def _rope_kwargs(self, x: Any, start: int) -> dict[str, Any]:
        pos = self._torch.arange(start, start + x.shape[1]).unsqueeze(0)
        if self._parts.rotary is None:
            return {}
        return {"position_ids": pos, "position_embeddings": self._parts.rotary(x, pos)}

    def _embed(self, tokens: int, start: int) -> Callable[[], object]:
        torch, parts = self._torch, self._parts
        ids = torch.randint(0, self._shape.vocab_size, (1, tokens), generator=self.generator)
        return embedding_call(parts, ids, torch.arange(start, start + tokens).unsqueeze(0))

    def _head(self, tokens: int) -> Callable[[], object]:
        x = self._hidden(tokens)
        parts = self._parts
        return lambda: parts.lm_head(parts.final_norm(x)[:, -1:, :])

    def _prefill(self, tokens: int) -> Callable[[], object]:
        x = self._hidden(tokens)
        kw = self._rope_kwargs(x, 0)
        decoder, cache_class = self._parts.decoder, self._cache_class
        return lambda: decoder(x, cache=cache_class(), use_cache=True, **kw)

    def decode_context(self, ctx: int) -> int:
        """The context a decode at ``ctx`` really attends to (bounded by the window)."""
        return ctx if self.window is None else min(ctx, self.window - 1)

    def _decode(self, ctx: int) -> Point:
        s = self._shape
        ctx = self.decode_context(ctx)
        cache = self._cache_class()
        shape = (1, s.n_kv_heads, ctx, s.head_dim)
        cache.update(
            self._torch.randn(*shape, generator=self.generator).to(self._dtype),
            self._torch.randn(*shape, generator=self.generator).to(self._dtype),
            0,
        )
        x = self._hidden(1)
        kw = self._rope_kwargs(x, ctx)
        decoder = self._parts.decoder
        return (lambda: decoder(x, cache=cache, use_cache=True, **kw)), lambda: cache.crop(-1)
