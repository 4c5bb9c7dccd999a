"""The split is real: a device and an edge over loopback produce the unsplit model's tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from offload_rl.actions import ActionLayout
from offload_rl.traces import Trace
from validation.runtime import protocol as wire
from validation.runtime.device import DeviceRuntime, Turn
from validation.runtime.edge import EdgeServer
from validation.runtime.link import Frame
from validation.runtime.model import SplitModel, reference_generate, small_arch

pytest.importorskip("transformers")

SEED = 3


@pytest.fixture(scope="module")
def gpt2_small() -> SplitModel:
    return SplitModel.build(small_arch("gpt2", n_layers=2), seed=SEED, init_std=0.5)


def _runtime(model: SplitModel, kv_bytes: float = 1e12) -> Iterator[DeviceRuntime]:
    server = EdgeServer(threads=None, kv_capacity_bytes=kv_bytes)
    server.start_thread()
    device = DeviceRuntime(model, "127.0.0.1", server.port, threads=None, seed=11)
    link = Trace.constant(200.0, duration_s=60.0)
    device.set_link(link, link, one_way_s=0.001)
    try:
        yield device
    finally:
        device.close()
        server.close()


@pytest.fixture()
def device(gpt2_small: SplitModel) -> Iterator[DeviceRuntime]:
    yield from _runtime(gpt2_small)


def _turns(device: DeviceRuntime) -> tuple[Turn, Turn]:
    first = Turn(session=0, new_tokens=20, context_tokens=0, output_tokens=6, trace_t=1.0)
    second = Turn(0, new_tokens=7, context_tokens=26, output_tokens=5, trace_t=9.0, request_id=1)
    return first, second


def test_the_model_emits_varied_tokens(gpt2_small: SplitModel) -> None:
    """Otherwise token equality would prove little."""
    tokens = reference_generate(gpt2_small, [(list(range(20)), 8)])[0]
    assert len(set(tokens)) >= 3


@pytest.mark.parametrize("k", [1, 0, 2])
def test_split_run_matches_the_unsplit_model(device: DeviceRuntime, k: int) -> None:
    layout = ActionLayout(2)
    first, _ = _turns(device)
    record = device.run(first, layout.encode(k, 0))
    expected = reference_generate(device.model, [(device.prompt_ids(first), 6)])[0]
    assert record.tokens == expected
    assert record.split == k and record.prefill_positions == 20
    assert 0 < record.ttft_s <= record.latency_s
    if k == 1:
        # the prefill upload is the hidden states of 20 positions, then one per decode step
        assert record.upload_payload_bytes == (20 + 5) * device.model.d_model * 4
        assert record.edge_compute_s > 0 and record.device_compute_s > 0
    elif k == 0:
        assert record.upload_payload_bytes == 20 * 4  # token ids only
    else:
        assert record.upload_payload_bytes == 0 and record.edge_compute_s == 0


def test_split_run_matches_for_a_rotary_model() -> None:
    """Qwen2 shape: rotary positions are computed on both sides, GQA in the edge's layers."""
    model = SplitModel.build(small_arch("qwen2.5-0.5b", n_layers=2), seed=SEED, init_std=0.5)
    for device in _runtime(model):
        first, second = _turns(device)
        layout = ActionLayout(2)
        a = device.run(first, layout.encode(1, 1))
        b = device.run(second, layout.encode(1, 1))
        prompts = [(device.prompt_ids(first), 6), (device.prompt_ids(second), 5)]
        assert [a.tokens, b.tokens] == reference_generate(model, prompts)
        assert b.cached_positions == 25


@pytest.mark.parametrize("k", [1, 0, 2])
def test_a_kept_session_hits_on_the_next_turn(device: DeviceRuntime, k: int) -> None:
    layout = ActionLayout(2)
    first, second = _turns(device)
    a = device.run(first, layout.encode(k, 1))
    assert a.kept and device.cached(0) == (k, 25)  # 20 prompt + 6 outputs - the last one
    b = device.run(second, layout.encode(k, 1))
    # only the new positions are prefilled: the last output token and the 7-token prompt
    assert b.cached_positions == 25 and b.prefill_positions == 8 and not b.edge_miss
    if k == 0:
        assert b.upload_payload_bytes == 8 * 4
    prompts = [(device.prompt_ids(first), 6), (device.prompt_ids(second), 5)]
    assert [a.tokens, b.tokens] == reference_generate(device.model, prompts)


def test_another_split_or_drop_does_not_hit(device: DeviceRuntime) -> None:
    layout = ActionLayout(2)
    first, second = _turns(device)
    device.run(first, layout.encode(1, 1))
    b = device.run(second, layout.encode(0, 0))  # other split: the kept KV is useless
    assert b.cached_positions == 0 and b.prefill_positions == 33
    assert device.cached(0) == (None, 0)


def test_a_kv_the_edge_lost_is_prefilled_again(device: DeviceRuntime) -> None:
    layout = ActionLayout(2)
    first, second = _turns(device)
    device.run(first, layout.encode(1, 1))
    # the edge forgets every session (as after a restart); the device still believes it kept
    device.sender.send(Frame(wire.RESET), paced=False)
    device._expect(wire.RESET_OK)
    assert device.cached(0) == (1, 25)
    b = device.run(second, layout.encode(1, 0))
    assert b.edge_miss and b.cached_positions == 0 and b.prefill_positions == 33
    prompts = [(device.prompt_ids(first), 6), (device.prompt_ids(second), 5)]
    assert b.tokens == reference_generate(device.model, prompts)[1]


def test_evictions_at_the_edge_are_reported_to_the_device(gpt2_small: SplitModel) -> None:
    # room for one 26-position session of the edge's layer [1, 2) only
    per_token = 2 * gpt2_small.arch.shape.n_kv_heads * gpt2_small.arch.shape.head_dim * 4
    for device in _runtime(gpt2_small, kv_bytes=40 * per_token):
        layout = ActionLayout(2)
        device.run(Turn(0, 20, 0, 6, 1.0, 0), layout.encode(1, 1))
        device.run(Turn(1, 20, 0, 6, 2.0, 1), layout.encode(1, 1))
        assert device.cached(0) == (None, 0)  # evicted by session 1
        assert device.cached(1) == (1, 25)
        again = device.run(Turn(0, 7, 26, 5, 3.0, 2), layout.encode(1, 1))
        assert not again.edge_miss and again.cached_positions == 0
