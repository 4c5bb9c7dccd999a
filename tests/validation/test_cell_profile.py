"""The simulator's batched edge cost from a single-request profile: the same batch-1 costs."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest

from offload_rl.profiles import Profile
from validation.cell_profile import from_single_request_profile


def _profile() -> Profile:
    resource = importlib.resources.files("offload_rl") / "data" / "profiles" / "gpt2@cpu-2core.json"
    assert isinstance(resource, Path)
    return Profile.load(resource)


@pytest.mark.parametrize("context", [0, 100, 700])
def test_batch_of_one_decode_is_the_profiles_decode(context: int) -> None:
    profile = _profile()
    cost = from_single_request_profile(profile)
    layers = cost.sequence_s(0, 1, context, False) - cost.head_s_per_token - cost.embed_s_per_token
    layers += cost.n_layers * cost.layer_fixed_s
    expected = sum(layer.decode(context) for layer in profile.layers)
    assert layers == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("tokens", [1, 64, 512])
def test_batch_of_one_prefill_keeps_the_profiles_token_terms(tokens: int) -> None:
    profile = _profile()
    cost = from_single_request_profile(profile)
    layer = profile.layers[0]
    per_layer = (cost.sequence_s(0, tokens, 0, False) - cost.head_s_per_token * tokens) / 12
    per_layer -= cost.embed_s_per_token * tokens / 12
    # the token terms are the prefill fit's; the constant is the decode fit's fixed part
    assert per_layer == pytest.approx(layer.prefill(tokens) - layer.prefill.c0, rel=1e-9)


def test_one_sequence_more_in_a_decode_batch_costs_less_than_a_second_batch() -> None:
    cost = from_single_request_profile(_profile())
    one = cost.iteration_s([(0, 1, 200, True)])
    two = cost.iteration_s([(0, 1, 200, True), (0, 1, 300, True)])
    assert one < two < 2 * one  # weights and overheads are paid once per iteration
