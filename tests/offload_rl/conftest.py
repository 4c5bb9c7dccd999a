"""Fixtures of the profiler's tests: a tiny architecture to time in seconds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from offload_rl.model_shapes import ArchSpec
from offload_rl.profiles import Profile
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


def measure_tiny(arch: ArchSpec, **batched: Any) -> Profile:
    """``arch`` measured as fast as a test allows (one repeat, no retries, no host peaks),
    with the batched settings given (``batch_sizes``, ``in_stack``, ...)."""
    from offload_rl.profiler import measure_profile

    return measure_profile(
        arch,
        threads=1,
        lengths=(8, 64),
        contexts=(8, 64),
        repeats=1,
        warmup=1,
        measure_peaks=False,
        retries=0,
        min_point_s=0.0,
        **batched,
    )
