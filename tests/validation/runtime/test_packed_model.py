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


def test_split_rows_run_only_their_layers_and_match_the_single_request_split(
    gpt2_small: SplitModel,
) -> None:
    """Rows at splits 0, 1 and 3 of a 4-layer model packed into the same iterations (chunked
    prefill, then decodes fed back as a device would): each row's tokens are the single-request
    split model's (device: embed + layers < k; edge: layers >= k), and its KV, for its own
    layers only, is numerically that model's."""
    import torch

    from validation.runtime.model import new_cache
    from validation.runtime.packed_model import Chunk, PackedModel, SequenceKV

    model = SplitModel.build(small_arch("gpt2", n_layers=4), seed=3, init_std=0.5)
    packed = PackedModel(model)
    L, steps = model.n_layers, 4
    prompts = {0: [5, 6, 7, 8, 9, 10, 11], 1: [20, 21, 22, 23, 24], 3: [40, 41, 42, 43, 44, 45]}
    with torch.inference_mode():
        ref: dict[int, tuple[list[int], object]] = {}
        for k, prompt in prompts.items():  # the single-request split, token by token
            device, edge = new_cache(), new_cache()
            hidden = model.run_layers(model.embed(torch.tensor([prompt]), 0), 0, k, device, 0)
            tokens = [model.next_token(model.run_layers(hidden, k, L, edge, 0))]
            for i in range(1, steps):
                pos = len(prompt) + i - 1
                h = model.embed(torch.tensor([[tokens[-1]]]), pos)
                h = model.run_layers(h, 0, k, device, pos)
                tokens.append(model.next_token(model.run_layers(h, k, L, edge, pos)))
            ref[k] = (tokens, edge)
        devices = {k: new_cache() for k in prompts}
        kvs = {k: SequenceKV() for k in prompts}

        def chunk(k: int, ids: list[int], start: int, samples: bool) -> Chunk:
            if k == 0:
                return Chunk(ids, kvs[k], samples)
            h = model.run_layers(model.embed(torch.tensor([ids]), start), 0, k, devices[k], start)
            return Chunk([], kvs[k], samples, first_layer=k, hidden=h[0])

        got: dict[int, list[int]] = {k: [] for k in prompts}
        # split 3 prefills in two chunks beside the others' whole prompts; split 0 in the middle
        first = [chunk(3, prompts[3][:2], 0, False), chunk(0, prompts[0], 0, True)]
        first.append(chunk(1, prompts[1], 0, True))
        out = packed.forward(first)
        assert out[0] is None
        got[0].append(out[1])
        got[1].append(out[2])
        got[3].append(packed.forward([chunk(3, prompts[3][2:], 2, True)])[0])
        for _ in range(1, steps):
            rows = [(k, len(prompts[k]) + len(got[k]) - 1) for k in (1, 3, 0)]
            out = packed.forward([chunk(k, [got[k][-1]], pos, True) for k, pos in rows])
            for (k, _), token in zip(rows, out, strict=True):
                got[k].append(token)
    for k, (tokens, edge) in ref.items():
        assert got[k] == tokens, k
        kv = kvs[k]
        assert len(kv.keys) == L - k  # only the edge's layers
        for j in range(L - k):
            want = edge.layers[k + j].keys[0][:, : kv.length]
            assert torch.allclose(kv.keys[j][:, : kv.length], want, rtol=1e-4, atol=1e-4)


def test_other_families_are_refused_with_a_clear_error() -> None:
    from validation.runtime.packed_model import PackedModel

    model = SplitModel.build(small_arch("qwen2.5-0.5b", n_layers=1), seed=0)
    with pytest.raises(ConfigError, match="GPT-2-family"):
        PackedModel(model)
