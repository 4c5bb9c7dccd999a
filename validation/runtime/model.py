"""The transformer both sides of a split run: a published shape, random weights, one seed.

Both processes build the whole causal LM from the same architecture and seed, so their weights
agree bit for bit without shipping them; for a given split each runs only its part (device:
embedding + layers ``< k``; edge: layers ``>= k``, final norm and LM head, plus the embedding
when ``k = 0``). Holding every layer on both sides lets the split change per request, as the
controller's action does. The modules are those :mod:`offload_rl.profiler` times (built from
the same transformers config), so the runtime executes what the profile measured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from offload_rl.errors import ConfigError
from offload_rl.model_shapes import ArchSpec, get_arch
from offload_rl.profiler import hf_config, require_torch
from offload_rl.profiles import ModelShape

DEFAULT_SEED = 0


def arch_to_json(arch: ArchSpec) -> dict[str, Any]:
    """A JSON-able description of ``arch`` (sent to the edge, which builds the same model)."""
    fields = {f.name: getattr(arch, f.name) for f in dataclasses.fields(arch) if f.name != "shape"}
    return {"shape": arch.shape.model_dump(), **fields}


def arch_from_json(data: dict[str, Any]) -> ArchSpec:
    """Inverse of :func:`arch_to_json`."""
    fields = dict(data)
    shape = ModelShape.model_validate(fields.pop("shape"))
    return ArchSpec(shape=shape, **fields)


def small_arch(
    base: str = "gpt2",
    *,
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    ffn_dim: int = 128,
    vocab_size: int = 512,
    max_positions: int = 256,
) -> ArchSpec:
    """``base``'s architecture with a smaller shape (tests: same code path, milliseconds)."""
    arch = get_arch(base)
    if d_model % n_heads:
        raise ConfigError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
    kv_heads = n_heads if arch.shape.n_kv_heads == arch.shape.n_heads else 1
    shape = arch.shape.model_copy(
        update={
            "name": f"{arch.name}-small",
            "n_layers": n_layers,
            "d_model": d_model,
            "n_heads": n_heads,
            "n_kv_heads": kv_heads,
            "head_dim": d_model // n_heads,
            "ffn_dim": ffn_dim,
            "vocab_size": vocab_size,
        }
    )
    return dataclasses.replace(arch, shape=shape, max_positions=max_positions, config=None)


def resolve_arch(model: str | ArchSpec) -> ArchSpec:
    """An architecture by registry name, or the given one."""
    return get_arch(model) if isinstance(model, str) else model


@dataclass
class SplitModel:
    """One causal LM (random weights from ``seed``) and the pieces a split runs.

    ``full`` is the untouched transformers model (the unsplit reference); ``layers`` etc. are
    its own modules, so the split and the reference share every weight.
    """

    arch: ArchSpec
    seed: int
    init_std: float | None
    full: Any
    embed_tokens: Any
    positions: Any | None  # learned position table (GPT-2)
    rotary: Any | None  # rotary embedding (Qwen2 / Llama)
    layers: list[Any]
    final_norm: Any
    lm_head: Any

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return self.arch.shape.d_model

    @classmethod
    def build(
        cls, model: str | ArchSpec, seed: int = DEFAULT_SEED, init_std: float | None = None
    ) -> SplitModel:
        """Build the model of ``model`` with weights drawn from ``seed`` (float32, eval).

        ``init_std`` overrides the weights' standard deviation: a small random model with the
        default 0.02 emits one token over and over, which would make a token-equality check
        of the split meaningless; timing does not depend on it.
        """
        torch, transformers = require_torch()
        arch = resolve_arch(model)
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # a small vocab trips GPT-2's token ids
        try:
            config = hf_config(arch, transformers)
        finally:
            transformers.logging.set_verbosity(verbosity)
        if init_std is not None:
            config.initializer_range = init_std
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value >= arch.shape.vocab_size:
                setattr(config, name, None)
        torch.manual_seed(seed)
        if arch.family == "gpt2":
            full = transformers.GPT2LMHeadModel(config)
            body = full.transformer
            parts = (body.wte, body.wpe, None, list(body.h), body.ln_f)
        else:
            model_class = (
                transformers.Qwen2ForCausalLM
                if arch.family == "qwen2"
                else transformers.LlamaForCausalLM
            )
            full = model_class(config)
            body = full.model
            parts = (body.embed_tokens, None, body.rotary_emb, list(body.layers), body.norm)
        full.to(torch.float32)
        full.eval()
        embed, positions, rotary, layers, norm = parts
        return cls(arch, seed, init_std, full, embed, positions, rotary, layers, norm, full.lm_head)

    # -- the pieces -----------------------------------------------------------------------

    def embed(self, ids: Any, start: int) -> Any:
        """Hidden states of token ids ``ids`` (shape ``[1, n]``) at positions ``start..``."""
        torch, _ = require_torch()
        h = self.embed_tokens(ids)
        if self.positions is not None:
            pos = torch.arange(start, start + ids.shape[1]).unsqueeze(0)
            h = h + self.positions(pos)
        return h

    def run_layers(self, hidden: Any, k0: int, k1: int, cache: Any, start: int) -> Any:
        """Run decoder layers ``[k0, k1)`` on ``hidden`` (positions ``start..``), filling ``cache``.

        ``cache`` is a ``DynamicCache`` holding ``start`` positions for these layers. A
        multi-token chunk after cached positions gets an explicit causal mask (sdpa's own
        ``is_causal`` is top-left aligned, wrong when the query is not at the start).
        """
        if k1 <= k0:
            return hidden
        torch, _ = require_torch()
        n = hidden.shape[1]
        kwargs: dict[str, Any] = {}
        if self.rotary is not None:
            pos = torch.arange(start, start + n).unsqueeze(0)
            kwargs["position_ids"] = pos
            kwargs["position_embeddings"] = self.rotary(hidden, pos)
        mask = None
        if start > 0 and n > 1:
            rows = torch.arange(n).unsqueeze(1) + start
            cols = torch.arange(start + n).unsqueeze(0)
            mask = (cols <= rows).view(1, 1, n, start + n)
        for layer in self.layers[k0:k1]:
            hidden = layer(hidden, cache=cache, attention_mask=mask, use_cache=True, **kwargs)
        return hidden

    def device_layers(self, ids: list[int], k: int, cache: Any, start: int) -> Any:
        """The device's part of a split at ``k``: the hidden states ``[1, n, d]`` after layer
        ``k`` of token ids ``ids`` at positions ``start..`` (``cache`` holds ``start``
        positions of layers ``< k``). ``k = L`` runs the whole stack (a local turn)."""
        torch, _ = require_torch()
        return self.run_layers(self.embed(torch.tensor([ids]), start), 0, k, cache, start)

    def next_token(self, hidden: Any) -> int:
        """Greedy next token from the last position (final norm over the chunk, as the
        profiler's head does, then the LM head on the last position)."""
        logits = self.lm_head(self.final_norm(hidden)[:, -1:, :])
        return int(logits[0, -1].argmax())


def new_cache() -> Any:
    """An empty ``DynamicCache`` (layers are added lazily, at their own indices)."""
    require_torch()
    from transformers.cache_utils import DynamicCache

    return DynamicCache()


def reference_generate(
    model: SplitModel, turns: list[tuple[list[int], int]], cache: Any | None = None
) -> list[list[int]]:
    """Greedy tokens of the *unsplit* transformers model over a multi-turn session.

    ``turns``: (new prompt ids, output tokens) per turn; every turn continues the same KV
    cache (the previous turn's last output token is fed first), as a kept session does.
    """
    torch, _ = require_torch()
    cache = cache if cache is not None else new_cache()
    outputs: list[list[int]] = []
    pending: list[int] = []
    with torch.inference_mode():
        for prompt, n_out in turns:
            ids = torch.tensor([pending + list(prompt)], dtype=torch.long)
            tokens: list[int] = []
            for _ in range(n_out):
                logits = model.full(input_ids=ids, cache=cache, use_cache=True).logits
                token = int(logits[0, -1].argmax())
                tokens.append(token)
                ids = torch.tensor([[token]], dtype=torch.long)
            pending = [tokens[-1]]
            outputs.append(tokens)
    return outputs
