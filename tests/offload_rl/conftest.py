"""Fixtures of the profiler's tests: a tiny architecture to time in seconds."""

from __future__ import annotations

import json

import pytest

from offload_rl.model_shapes import ArchSpec
from tests.offload_rl.profile_cli import HAS_TORCH

TINY_QWEN2 = {  # a two-layer qwen2 of the published layout, small enough to time in seconds
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 512,
}


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory: pytest.TempPathFactory) -> ArchSpec:
    if not HAS_TORCH:
        pytest.skip("needs the 'profile' extra")
    from offload_rl.model_config import load_arch

    config = tmp_path_factory.mktemp("tiny") / "config.json"
    config.write_text(json.dumps(TINY_QWEN2))
    return load_arch(str(config), name="tiny-qwen2")
