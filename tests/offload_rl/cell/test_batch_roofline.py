"""Batched roofline: batch 1 is the shipped single-request profile; more tokens never cost less."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offload_rl.cell.batch_roofline import BatchRoofline, for_profile
from offload_rl.errors import ConfigError
from offload_rl.model_shapes import attention_prefill_flops, get_arch
from offload_rl.profiles import Profile, load_profile, shipped_profiles
from offload_rl.roofline import get_hardware

ARCH = get_arch("qwen2.5-0.5b")
SHIPPED = load_profile("qwen2.5-0.5b@l4")
COST = BatchRoofline.from_profile(SHIPPED, get_hardware("l4"))  # what the cell builds
L = ARCH.shape.n_layers
# The shipped profile was written by roofline.analytical_profile with the same constants, so the
# two agree to float rounding; 1e-9 relative leaves room for summation order only.
REL = 1e-9


def _profile_prefill(k: int, tokens: int) -> float:
    embed = SHIPPED.embedding.prefill_s(tokens) if k == 0 else 0.0
    return embed + SHIPPED.prefill_s(k, L, tokens) + SHIPPED.head.prefill_s(tokens)


def _profile_decode(k: int, context: int) -> float:
    embed = SHIPPED.embedding.decode_s(context) if k == 0 else 0.0
    return embed + SHIPPED.decode_s(k, L, context) + SHIPPED.head.decode_s(context)


@pytest.mark.parametrize("k", [0, 1, 12, L - 1])
@pytest.mark.parametrize("tokens", [1, 64, 512, 2048])
def test_batch_of_one_prefill_is_the_shipped_profile(k, tokens):
    assert COST.iteration_s([(k, tokens, 0, True)]) == pytest.approx(
        _profile_prefill(k, tokens), rel=REL
    )


@pytest.mark.parametrize("k", [0, 5, L - 1])
@pytest.mark.parametrize("context", [1, 300, 4000])
def test_batch_of_one_decode_is_the_shipped_profile(k, context):
    # the profile's decode at context c is one new token after c cached ones
    assert COST.iteration_s([(k, 1, context, True)]) == pytest.approx(
        _profile_decode(k, context), rel=REL
    )


ANALYTICAL = [n for n in shipped_profiles() if not n.endswith("@cpu-2core")]


@pytest.mark.parametrize("name", ANALYTICAL)
def test_the_file_gives_exactly_the_coefficients_of_the_architecture(name):
    """Read from the profile (no transformers) or counted off the config: the same floats."""
    profile = load_profile(name)
    hw = get_hardware(profile.hardware)
    from_file = BatchRoofline.from_profile(profile, hw)
    assert from_file == BatchRoofline.from_arch(get_arch(profile.model.name), hw)
    assert for_profile(profile) == from_file


def test_a_profile_without_matmul_params_falls_back_to_the_architecture():
    """Files written before the field existed still run the cell (through the config)."""
    old = Profile.model_validate(
        {
            **SHIPPED.model_dump(),
            "layers": [
                {k: v for k, v in layer.model_dump().items() if k != "matmul_params"}
                for layer in SHIPPED.layers
            ],
        }
    )
    assert old.layers[0].matmul_params is None
    with pytest.raises(ConfigError, match="matmul_params"):
        BatchRoofline.from_profile(old, get_hardware("l4"))
    assert for_profile(old) == COST


def test_chunk_attention_is_the_causal_prefill_difference():
    """A chunk of n after c tokens does the attention that prefilling c+n adds to prefilling c."""
    for c, n in [(0, 7), (100, 1), (300, 256)]:
        flops = attention_prefill_flops(ARCH.shape, c + n) - attention_prefill_flops(ARCH.shape, c)
        unit = attention_prefill_flops(ARCH.shape, 1) / 2.0
        assert unit * n * (2 * c + n + 1) == pytest.approx(flops, rel=1e-12)


def test_batching_reads_the_weights_once():
    """32 decodes in one iteration cost far less than 32 iterations (decode is weight-bound)."""
    one = COST.iteration_s([(0, 1, 500, True)])
    batch = COST.iteration_s([(0, 1, 500, True)] * 32)
    assert one < batch < 4 * one


seq = st.tuples(st.integers(0, L - 1), st.integers(1, 3000), st.integers(0, 8000), st.booleans())


@given(st.lists(seq, min_size=1, max_size=12), st.data())
def test_iteration_time_is_monotone_in_batch_tokens(batch, data):
    base = COST.iteration_s(batch)
    i = data.draw(st.integers(0, len(batch) - 1))
    k, n, c, smp = batch[i]
    more_tokens = [*batch[:i], (k, n + data.draw(st.integers(1, 500)), c, smp), *batch[i + 1 :]]
    more_context = [*batch[:i], (k, n, c + data.draw(st.integers(1, 500)), smp), *batch[i + 1 :]]
    more_seqs = [*batch, data.draw(seq)]
    assert COST.iteration_s(more_tokens) >= base
    assert COST.iteration_s(more_context) >= base
    assert COST.iteration_s(more_seqs) >= base
