"""A model's shape from its Hugging Face config: a ``config.json``, a shipped one, or a model type.

The facts that costs depend on (layers, hidden size, query and KV heads, head dim, FFN size,
vocabulary, tied embeddings, sliding windows per layer, experts) are read by ``transformers``
itself (``AutoConfig`` / ``CONFIG_MAPPING``), so a new architecture or a fine-tune's config needs
nothing added here; the weights each layer holds are counted off the model built on the meta
device (:mod:`offload_rl.layer_counts`). Nothing is downloaded.

What cannot be costed is refused in one line that names the key: encoder-decoder models, models
without a causal-LM head, attention that is neither full nor a sliding window (latent, chunked,
linear, state-space layers). A profile from a silently wrong shape would be worse than none.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from offload_rl.errors import ConfigError, DataFileError
from offload_rl.model_shapes import ArchSpec, family_traits
from offload_rl.profiles import ModelShape

# Shipped configs: offload_rl/data/models/<name>.json, copies of the published config.json files
# with one key of ours, the note that says where the numbers were copied from.
MODELS_DATA_DIR = ("data", "models")
NOTE_KEY = "offload_rl_note"

FULL_ATTENTION = "full_attention"
SLIDING_ATTENTION = "sliding_attention"

# Config keys of attention or layer kinds whose KV bytes and FLOPs the roofline cannot state.
UNSUPPORTED_KEYS: dict[str, str] = {
    "kv_lora_rank": "multi-head latent attention (compressed KV cache)",
    "attention_chunk_size": "chunked local attention",
    "linear_attn_config": "linear attention layers",
    "mamba_d_state": "state-space (Mamba) layers",
    "ssm_state_size": "state-space layers",
    "attn_layer_period": "hybrid attention / state-space layers",
    "cross_attention_layers": "cross-attention layers",
    "altup_num_inputs": "AltUp layers with per-layer inputs",
}


def shipped_model_names() -> list[str]:
    """Names of the shipped configs (``gpt2``, ``qwen2.5-0.5b``, ...), sorted."""
    folder = _models_dir()
    return sorted(
        e.name.removesuffix(".json") for e in folder.iterdir() if e.name.endswith(".json")
    )


def _models_dir() -> Any:
    folder = resources.files("offload_rl")
    for part in MODELS_DATA_DIR:
        folder = folder / part
    return folder


def read_config_source(ref: str) -> tuple[dict[str, Any] | None, str, str, str]:
    """Find what ``ref`` names: ``(config.json contents or None, model_type, name, source)``.

    ``ref`` is a path to a config.json or to a folder holding one, a shipped config's name, or a
    transformers model type (then the contents are None: the config class defaults are used).
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"{path.parent}: no config.json in this folder")
    if path.is_file() or ref.endswith(".json"):
        data = _read_json(path)
        name = _name_from_path(path, data)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        source = f"config.json {path.resolve()} (sha256 {digest})"
        return data, _model_type(data, path), name, source
    if ref in shipped_model_names():
        text = (_models_dir() / f"{ref}.json").read_text(encoding="utf-8")
        data = json.loads(text)
        return data, _model_type(data, ref), ref, str(data.pop(NOTE_KEY))
    from transformers import CONFIG_MAPPING

    if ref in CONFIG_MAPPING:
        return None, ref, ref, f"transformers {CONFIG_MAPPING[ref].__name__} defaults"
    known = ", ".join(shipped_model_names())
    raise ConfigError(
        f"unknown model {ref!r}: give a config.json (or a folder holding one), a shipped model "
        f"({known}) or a transformers model type (llama, mistral, phi3, gemma2, mixtral, ...)"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(path, "no such config file") from None
    except json.JSONDecodeError as err:
        raise DataFileError(path, f"not valid JSON: {err.msg}", line=err.lineno) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataFileError(path, f"cannot read config: {err}") from None
    if not isinstance(data, dict):
        raise DataFileError(path, "a config.json must hold a JSON object")
    return data


def _model_type(data: dict[str, Any], where: object) -> str:
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ConfigError(f"{where}: model_type: missing; transformers needs it to read the config")
    return model_type


def _name_from_path(path: Path, data: dict[str, Any]) -> str:
    """``_name_or_path``'s last part, else the folder of a config.json, else the file's stem."""
    written = data.get("_name_or_path")
    if isinstance(written, str) and written.strip("/"):
        return written.rstrip("/").rsplit("/", 1)[-1]
    folder = path.resolve().parent.name
    return folder if path.name == "config.json" and folder else path.stem


def transformers_config(data: dict[str, Any] | None, model_type: str, where: str) -> Any:
    """The transformers config object: the class of ``model_type`` with ``data`` (or defaults)."""
    from transformers import CONFIG_MAPPING, __version__
    from transformers.utils import logging

    if model_type not in CONFIG_MAPPING:
        raise ConfigError(
            f"{where}: model_type: {model_type!r} is not known to transformers {__version__}"
        )
    config_class = CONFIG_MAPPING[model_type]
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # value warnings of published configs are not the user's fault
    try:
        config = config_class.from_dict(data) if data is not None else config_class()
    except (ValueError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{where}: transformers rejects this config: {first}") from None
    finally:
        logging.set_verbosity(verbosity)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return text


def check_costable(config: Any, where: str) -> None:
    """Refuse, in one line naming the key, what the roofline cannot cost."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(
            f"{where}: is_encoder_decoder: {config.model_type} is an encoder-decoder model; only "
            "decoder-only causal LMs can be split and costed"
        )
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            f"{where}: model_type: {config.model_type!r} has no causal-LM head in transformers; "
            "only decoder-only causal LMs can be costed"
        )
    for key, what in UNSUPPORTED_KEYS.items():
        if getattr(config, key, None):
            raise ConfigError(f"{where}: {key}: {what} cannot be costed")


def layer_windows(config: Any, where: str) -> tuple[int | None, ...]:
    """The sliding window of each layer (None = full attention), from ``layer_types`` if given.

    Without ``layer_types`` a non-zero ``sliding_window`` applies to every layer (Mistral,
    Phi-3); with it, only the ``sliding_attention`` layers are windowed (Gemma 2 alternates).
    """
    n = int(config.num_hidden_layers)
    window: int | None = getattr(config, "sliding_window", None) or None
    types = getattr(config, "layer_types", None)
    if types is None:
        return (int(window) if window else None,) * n
    if len(types) != n:
        raise ConfigError(f"{where}: layer_types: {len(types)} entries for {n} layers")
    unknown = sorted({t for t in types if t not in (FULL_ATTENTION, SLIDING_ATTENTION)})
    if unknown:
        raise ConfigError(f"{where}: layer_types: {', '.join(unknown)} layers cannot be costed")
    if SLIDING_ATTENTION in types and not window:
        raise ConfigError(f"{where}: sliding_window: sliding_attention layers need a window size")
    return tuple(window if t == SLIDING_ATTENTION else None for t in types)


def _first(config: Any, keys: tuple[str, ...], default: Any = None) -> Any:
    for key in keys:
        value = getattr(config, key, None)
        if value is not None:
            return value
    return default


def _shape(config: Any, name: str, where: str) -> ModelShape:
    """The :class:`ModelShape` of a transformers config (its attribute map names the keys)."""
    try:
        d_model = int(config.hidden_size)
        n_heads = int(config.num_attention_heads)
        n_layers = int(config.num_hidden_layers)
        vocab = int(config.vocab_size)
    except (AttributeError, TypeError) as err:
        raise ConfigError(f"{where}: {err}; the shape of this config cannot be read") from None
    multi_query = bool(getattr(config, "multi_query", False))
    kv_heads = _first(
        config, ("num_key_value_heads", "num_kv_heads"), 1 if multi_query else n_heads
    )
    head_dim = _first(config, ("head_dim",), d_model // n_heads)
    ffn = _first(config, ("intermediate_size", "n_inner", "ffn_dim"), 4 * d_model)
    return ModelShape(
        name=name,
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        ffn_dim=int(ffn),
        vocab_size=vocab,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
    )


def load_arch(ref: str, name: str | None = None) -> ArchSpec:
    """The :class:`ArchSpec` of ``ref`` (a config.json, a folder, a shipped name, a model type).

    ``name`` replaces the model name written into profiles (default: from the config's
    ``_name_or_path``, its folder, the shipped name or the model type).
    """
    from offload_rl.layer_counts import count_model

    data, model_type, found_name, source = read_config_source(ref)
    where = source.split(" (sha256")[0] if data is not None and NOTE_KEY not in source else ref
    config = transformers_config(data, model_type, where)
    check_costable(config, where)
    layer_windows(config, where)
    shape = _shape(config, name or found_name, where)
    as_dict = config.to_dict()
    counts = count_model(as_dict)
    family: Literal["gpt2", "qwen2", "llama", "transformers"] = "transformers"
    if config.model_type in ("gpt2", "qwen2", "llama"):
        family = config.model_type
    traits = family_traits(family)
    traits["learned_positions"] = counts.embedding_tables > 1
    rope = getattr(config, "rope_parameters", None)
    return ArchSpec(
        shape=shape,
        family=family,
        max_positions=int(_first(config, ("max_position_embeddings", "n_positions"), 131072)),
        norm_eps=float(
            _first(config, ("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"), 1e-5)
        ),
        rope=dict(rope) if isinstance(rope, dict) else None,
        source=source,
        config=as_dict,
        **traits,
    )
