"""The cell edge's packed batched forward computes what the unsplit model computes."""

from __future__ import annotations

import pytest

from offload_rl.errors import ConfigError
from validation.runtime.model import SplitModel, reference_generate, small_arch

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def gpt2_small() -> SplitModel:
    return SplitModel.build(small_arch("gpt2", n_layers=2), seed=5, init_std=0.5)


def test_interleaved_batches_give_each_sequence_the_reference_tokens(
    gpt2_small: SplitModel,
) -> None:
    """Sequence A prefilled in two chunks beside B, then both decode in one batch, then A
    continues a second turn on its own KV: A's tokens are the unsplit model's."""
    import torch

    from validation.runtime.packed_model import Chunk, PackedModel, SequenceKV

    packed = PackedModel(gpt2_small)
    prompt, second = [1, 2, 3, 4, 5, 6, 7, 8, 9], [30, 31, 32]
    ref = reference_generate(gpt2_small, [(prompt, 4), (second, 3)])
    ref_b = reference_generate(gpt2_small, [([40, 41, 42], 5)])[0]
    a, b = SequenceKV(), SequenceKV()
    with torch.inference_mode():
        out = packed.forward([Chunk(prompt[:5], a, False), Chunk([40, 41, 42], b, True)])
        assert out[0] is None
        got_b = [out[1]]
        out = packed.forward([Chunk(prompt[5:], a, True), Chunk([got_b[-1]], b, True)])
        got_a = [out[0]]
        got_b.append(out[1])
        for _ in range(3):
            out = packed.forward([Chunk([got_a[-1]], a, True), Chunk([got_b[-1]], b, True)])
            got_a.append(out[0])
            got_b.append(out[1])
        # the second turn: the last generated token (no KV yet) and the new prompt
        out = packed.forward([Chunk([got_a[3], *second], a, True)])
        got_a2 = [out[0]]
        for _ in range(2):
            got_a2.append(packed.forward([Chunk([got_a2[-1]], a, True)])[0])
    assert got_a[:4] == ref[0]
    assert got_a2 == ref[1]
    assert got_b[:5] == ref_b
    assert a.length == len(prompt) + 4 + len(second) + 2


def test_kv_buffers_grow_past_their_first_capacity(gpt2_small: SplitModel) -> None:
    import torch

    from validation.runtime import packed_model
    from validation.runtime.packed_model import Chunk, PackedModel, SequenceKV

    packed = PackedModel(gpt2_small)
    n = packed_model.INITIAL_KV_CAPACITY + 5
    ids = [i % 500 for i in range(n)]
    kv = SequenceKV()
    with torch.inference_mode():
        token = packed.forward([Chunk(ids[:10], kv, False)])
        token = packed.forward([Chunk(ids[10:], kv, True)])
    ref = reference_generate(gpt2_small, [(ids, 1)])[0]
    assert token == ref and kv.length == n


def test_other_families_are_refused_with_a_clear_error() -> None:
    from validation.runtime.packed_model import PackedModel

    model = SplitModel.build(small_arch("qwen2.5-0.5b", n_layers=1), seed=0)
    with pytest.raises(ConfigError, match="GPT-2-family"):
        PackedModel(model)
