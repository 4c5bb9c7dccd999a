"""One batched forward over many sequences, each with its own KV: the cell edge's model step.

A continuous-batching engine (vLLM) does not pad a batch: it packs every scheduled token of every
sequence into one ``[T, d]`` matrix, runs the projections and the MLP of each layer once over all
``T`` tokens (a layer's weights are read once per iteration, whatever the batch), and runs
attention per sequence against that sequence's own KV. :class:`PackedModel` does exactly that with
the modules of a :class:`~validation.runtime.model.SplitModel` (the same weights the single-device
runtime and :mod:`offload_rl.profiler` run), so the cell's edge executes real transformer layers.

Only the GPT-2 family is packed here (learned positions, fused QKV, multi-head attention): the
validation's model. Other families raise :class:`~offload_rl.errors.ConfigError` up front.

A sequence's KV (:class:`SequenceKV`) lives in per-layer buffers that grow by doubling, so a
decode step appends one position without copying the whole cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offload_rl.errors import ConfigError
from offload_rl.profiler import require_torch
from validation.runtime.model import SplitModel

INITIAL_KV_CAPACITY = 64


@dataclass
class SequenceKV:
    """Keys and values of one sequence, every layer: ``[heads, capacity, head_dim]`` buffers."""

    length: int = 0
    keys: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def append(self, layer: int, k: Any, v: Any) -> tuple[Any, Any]:
        """Write ``k``/``v`` (``[heads, n, head_dim]``) after position ``length`` of ``layer``;
        the layer's keys and values up to the new end. :meth:`advance` moves ``length``."""
        torch, _ = require_torch()
        n = int(k.shape[1])
        end = self.length + n
        if layer == len(self.keys):
            cap = max(INITIAL_KV_CAPACITY, end)
            shape = (k.shape[0], cap, k.shape[2])
            self.keys.append(torch.empty(shape, dtype=k.dtype))
            self.values.append(torch.empty(shape, dtype=v.dtype))
        elif end > self.keys[layer].shape[1]:
            cap = max(2 * self.keys[layer].shape[1], end)
            for store in (self.keys, self.values):
                old = store[layer]
                grown = torch.empty((old.shape[0], cap, old.shape[2]), dtype=old.dtype)
                grown[:, : self.length] = old[:, : self.length]
                store[layer] = grown
        self.keys[layer][:, self.length : end] = k
        self.values[layer][:, self.length : end] = v
        return self.keys[layer][:, :end], self.values[layer][:, :end]

    def advance(self, n: int) -> None:
        self.length += n


@dataclass
class Chunk:
    """One sequence's part of an iteration: ``ids`` at positions ``kv.length..``.

    A split sequence (``first_layer = k > 0``: the device ran the embedding and layers
    ``< k``) gives ``hidden`` instead, the ``[n, d]`` inputs of layer ``k`` its device sent;
    its ``kv`` then holds layers ``[k, L)`` only (index 0 = layer ``k``).
    """

    ids: list[int]
    kv: SequenceKV
    samples: bool  # the chunk ends the known tokens: sample the next one
    first_layer: int = 0
    hidden: Any = None

    def __len__(self) -> int:
        return len(self.ids) if self.hidden is None else int(self.hidden.shape[0])


class PackedModel:
    """Packed batched forward of a GPT-2-family :class:`SplitModel` (see the module docstring)."""

    def __init__(self, model: SplitModel) -> None:
        if model.arch.family != "gpt2" or model.positions is None:
            raise ConfigError(
                f"the cell runtime's batched forward supports GPT-2-family models; "
                f"{model.arch.name} is {model.arch.family}"
            )
        self.model = model
        s = model.arch.shape
        self.n_heads = s.n_heads
        self.head_dim = s.head_dim
        self.d_model = s.d_model

    def forward(self, chunks: list[Chunk]) -> list[int | None]:
        """Run one iteration; the greedy next token of each sampling chunk (None for the others).

        Every chunk's KV grows by its tokens. Split chunks join at their first layer: the rows
        are packed by first layer, so the rows layer ``i`` runs are a prefix of the matrix (all
        of it when every chunk starts at layer 0, the token-id path, unchanged by splits).
        """
        if any(c.first_layer for c in chunks):
            order = sorted(range(len(chunks)), key=lambda i: chunks[i].first_layer)
            packed = self._forward([chunks[i] for i in order])
            out: list[int | None] = [None] * len(chunks)
            for j, i in enumerate(order):
                out[i] = packed[j]
            return out
        return self._forward(chunks)

    def _forward(self, chunks: list[Chunk]) -> list[int | None]:
        """:meth:`forward` over chunks sorted by first layer."""
        torch, _ = require_torch()
        F = torch.nn.functional
        m = self.model
        by_ids = [c for c in chunks if c.first_layer == 0]
        ids = torch.tensor([t for c in by_ids for t in c.ids], dtype=torch.long)
        pos = torch.cat(
            [torch.arange(c.kv.length, c.kv.length + len(c.ids)) for c in by_ids]
            or [torch.zeros(0, dtype=torch.long)]
        )
        positions = m.positions
        assert positions is not None  # GPT-2 family: checked in __init__
        x = m.embed_tokens(ids) + positions(pos)
        if len(by_ids) < len(chunks):
            x = torch.cat([x, *(c.hidden for c in chunks[len(by_ids) :])])
        T = int(x.shape[0])
        H, hd, d = self.n_heads, self.head_dim, self.d_model
        sizes = [len(c) for c in chunks]
        masks = [_causal_mask(torch, c.kv.length, n) for c, n in zip(chunks, sizes, strict=True)]
        for li, block in enumerate(m.layers):
            active = [j for j, c in enumerate(chunks) if c.first_layer <= li]
            if not active:
                continue
            rows = sum(sizes[j] for j in active)  # a prefix: the chunks are sorted
            h = x[:rows]
            q, k, v = block.attn.c_attn(block.ln_1(h)).split(d, dim=-1)
            outs = []
            off = 0
            for j in active:
                c, n = chunks[j], sizes[j]
                qi = q[off : off + n].view(n, H, hd).transpose(0, 1)
                ki = k[off : off + n].view(n, H, hd).transpose(0, 1)
                vi = v[off : off + n].view(n, H, hd).transpose(0, 1)
                keys, values = c.kv.append(li - c.first_layer, ki, vi)
                o = F.scaled_dot_product_attention(
                    qi.unsqueeze(0), keys.unsqueeze(0), values.unsqueeze(0), attn_mask=masks[j]
                )
                outs.append(o[0].transpose(0, 1).reshape(n, d))
                off += n
            h = h + block.attn.c_proj(torch.cat(outs))
            h = h + block.mlp(block.ln_2(h))
            x = h if rows == T else torch.cat([h, x[rows:]])
        for c, n in zip(chunks, sizes, strict=True):
            c.kv.advance(n)
        h = m.final_norm(x)
        last = []
        off = 0
        for c, n in zip(chunks, sizes, strict=True):
            off += n
            if c.samples:
                last.append(off - 1)
        out: list[int | None] = [None] * len(chunks)
        if last:
            tokens = m.lm_head(h[last]).argmax(dim=-1).tolist()
            it = iter(tokens)
            for i, c in enumerate(chunks):
                if c.samples:
                    out[i] = int(next(it))
        return out


def _causal_mask(torch: Any, past: int, n: int) -> Any:
    """Bool mask ``[n, past + n]``: query ``i`` (position ``past + i``) sees keys ``<= past + i``;
    None for one query (it sees everything)."""
    if n == 1:
        return None
    rows = torch.arange(n).unsqueeze(1) + past
    cols = torch.arange(past + n).unsqueeze(0)
    return cols <= rows
