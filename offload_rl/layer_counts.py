"""Parameter counts of every layer of a transformers model, read off the model itself.

Which weights a layer has (a gated MLP or not, biases, extra norms, fused projections, experts)
is a fact of the architecture's code, not of its config.json, so it is not written in a table
here: the model is built by ``transformers`` on torch's ``meta`` device (shapes only, no memory,
tens of milliseconds) and its parameters are counted. Mixture-of-experts layers count two ways:
``params`` holds every expert (what weight memory holds), ``matmul_params`` only the experts one
token runs through (what compute does). torch and transformers are imported inside the function.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from offload_rl.errors import ConfigError

# Keys of a per-layer expert container: the routed experts, whose parameters are shared out
# ``top_k / n_experts`` per token. Shared experts and routers are always active.
EXPERTS_MODULE = "experts"


@dataclass(frozen=True)
class LayerFacts:
    """What one decoder layer costs: weights held, weights a token multiplies, its window."""

    params: int  # every parameter of the layer (all experts): weight memory
    matmul_params: int  # matrix weights one token goes through (active experts only): FLOPs / 2
    window: int | None = None  # sliding attention window in tokens; None = full causal attention
    experts: int = 0  # routed experts in the layer (0 = dense)
    active_experts: int = 0  # routed experts each token uses
    expert_params: int = 0  # weights of all routed experts together (part of params)

    @property
    def idle_params(self) -> int:
        """Weights held but not used by a given token: the routed experts it is not sent to."""
        if not self.experts:
            return 0
        return self.expert_params - self.expert_params // self.experts * self.active_experts


@dataclass(frozen=True)
class ModelCounts:
    """Counts of a whole model: per decoder layer, embedding side and head side."""

    layers: tuple[LayerFacts, ...]
    embedding_params: int  # token table (+ learned position table)
    embedding_tables: int  # embedding tables a token reads a row of (2 with learned positions)
    head_params: int  # final norm + LM head, the head counted in full even when tied


@functools.lru_cache(maxsize=32)
def _count_cached(config_json: str) -> ModelCounts:
    import torch
    from transformers import AutoModelForCausalLM

    from offload_rl.model_config import layer_windows, transformers_config

    data = json.loads(config_json)
    config = transformers_config(data, data["model_type"], "config")
    windows = layer_windows(config, "config")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    prefix, layer_list = _layer_list(model, config.num_hidden_layers)
    experts, top_k = _expert_counts(config)
    layers = tuple(
        _layer_facts(layer, window, experts, top_k)
        for layer, window in zip(layer_list, windows, strict=True)
    )
    head_module = model.get_output_embeddings()
    head_params = sum(p.numel() for p in head_module.parameters())
    embedding = norm = tables = 0
    for name, module in model.named_modules():
        if name == prefix or name.startswith(prefix + ".") or module is head_module:
            continue
        direct = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, torch.nn.Embedding):
            embedding += direct
            tables += 1
        else:
            norm += direct
    return ModelCounts(layers, embedding, tables, head_params + norm)


def count_model(config: dict[str, Any]) -> ModelCounts:
    """Counts of the model ``config`` describes (a transformers ``to_dict()`` with model_type).

    Cached: a profile asks for the same model's counts once per layer.
    """
    text = json.dumps(config, sort_keys=True)
    try:
        return _count_cached(text)
    except ImportError as err:
        raise ConfigError(
            f"counting a model's parameters needs torch and transformers ({err.name} is missing): "
            "pip install -e '.[profile]'"
        ) from None


def _layer_list(model: Any, n_layers: int) -> tuple[str, Any]:
    """The ModuleList that holds the decoder layers, and its dotted name."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return name, module
    raise ConfigError(
        f"num_hidden_layers: no list of {n_layers} decoder layers in "
        f"{type(model).__name__}; this architecture cannot be costed"
    )


def _expert_counts(config: Any) -> tuple[int, int]:
    """(routed experts, experts per token), or (0, 0) for a dense model."""
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    if not experts:
        return 0, 0
    top_k = getattr(config, "num_experts_per_tok", None)
    if not top_k:
        raise ConfigError(
            f"num_experts_per_tok: the config has {experts} experts but does not say how many "
            "each token uses"
        )
    return int(experts), int(top_k)


def _layer_facts(layer: Any, window: int | None, experts: int, top_k: int) -> LayerFacts:
    """Count one layer; routed-expert weights count ``top_k / experts`` towards compute."""
    params = matmul = routed = 0
    for name, p in layer.named_parameters():
        n = p.numel()
        params += n
        if p.dim() < 2:  # biases and norm scales: no matmul
            continue
        if EXPERTS_MODULE in name.split("."):
            routed += n
        else:
            matmul += n
    if routed and not experts:
        raise ConfigError(
            "num_experts: the layers have routed experts but the config names no expert count"
        )
    if not routed:
        return LayerFacts(params, matmul, window)
    if routed % experts:
        raise ConfigError(
            f"num_experts: {routed} expert weights do not split into {experts} equal experts"
        )
    active = matmul + routed // experts * top_k
    return LayerFacts(params, active, window, experts, top_k, routed)
