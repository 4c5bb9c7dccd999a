"""The cost model against values computed by hand on round-number profiles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.compiled_profile import CompiledProfile
from offload_rl.cost_model import EnergyModel, LinkModel, Tiers, request_cost, tier_of
from offload_rl.traces import Trace
from tests.profiles_for_tests import simple_profile

L = 4
RTT = 0.02
CLOUD_EXTRA = 0.03
ENERGY = EnergyModel(
    compute_w=5.0, radio_tx_w=1.0, radio_tx_w_per_mbps=0.0, radio_rx_w=0.5, radio_tail_s=0.0
)


def tiers() -> Tiers:
    return Tiers(
        device=CompiledProfile.from_profile(simple_profile(L, 1e-3, 1e-3)),
        edge=CompiledProfile.from_profile(simple_profile(L, 1e-4, 1e-4)),
        cloud=CompiledProfile.from_profile(simple_profile(L, 1e-5, 1e-5)),
    )


def link(mbps: float) -> LinkModel:
    trace = Trace.constant(mbps, duration_s=600.0)
    return LinkModel(
        uplink=trace,
        downlink=trace,
        rtt_edge_s=RTT,
        rtt_cloud_extra_s=CLOUD_EXTRA,
        backhaul_bytes_per_s=1.25e9,
    )


def cost(tier_index, mbps=1.0, new=100, context=0, cached=0, output=11, queue=0.0, slow=1.0):
    return request_cost(
        tier_index, 0.0, new, context, cached, output, tiers(), link(mbps), ENERGY, queue, slow
    )


def test_tier_names():
    assert [tier_of(i, L) for i in (0, 1, 3, L, L + 1)] == [
        "edge",
        "split",
        "split",
        "device",
        "cloud",
    ]


def test_fully_local_by_hand():
    c = cost(L)
    # 4 layers x 1 ms/token x 100 tokens; then 10 decode steps x 4 layers x 1 ms
    assert c.ttft_s == pytest.approx(0.4)
    assert c.latency_s == pytest.approx(0.44)
    assert c.energy_j == pytest.approx(5.0 * 0.44)
    assert c.upload_bytes == 0


def test_full_offload_by_hand():
    c = cost(0, mbps=1.0)
    up = 100 * 4 * 8 / 1e6  # token ids at 1 Mbps
    ttft = up + RTT + 4 * 1e-4 * 100
    assert c.ttft_s == pytest.approx(ttft)
    assert c.latency_s == pytest.approx(ttft + 10 * 4 * 1e-4)
    # radio: transmit while uploading, connected while the edge works
    assert c.energy_j == pytest.approx(1.0 * up + 0.5 * (c.latency_s - up))
    assert c.edge_gpu_s == pytest.approx(4 * 1e-4 * 100 + 10 * 4 * 1e-4)


def test_middle_split_by_hand():
    c = cost(2, mbps=1.0)
    dev_prefill = 2 * 1e-3 * 100
    up = 100 * 1000 * 8 / 1e6  # hidden states of 100 tokens at 1 Mbps = 0.8 s
    ttft = dev_prefill + up + RTT + 2 * 1e-4 * 100
    assert c.ttft_s == pytest.approx(ttft)
    decode = 10 * (2 * 1e-3 + 1000 * 8 / 1e6 + 2 * 1e-4 + RTT)
    assert c.latency_s == pytest.approx(ttft + decode)
    assert c.device_busy_s == pytest.approx(dev_prefill + 10 * 2 * 1e-3)


def test_cloud_by_hand():
    c = cost(L + 1, mbps=1.0)
    up = 100 * 4 * 8 / 1e6
    ttft = up + 400 / 1.25e9 + RTT + CLOUD_EXTRA + 4 * 1e-5 * 100
    assert c.ttft_s == pytest.approx(ttft)
    assert c.latency_s == pytest.approx(ttft + 10 * 4 * 1e-5)
    assert c.cloud_gpu_s > 0 and c.edge_gpu_s == 0


def test_queue_and_slowdown_only_hit_the_edge():
    base, busy = cost(0), cost(0, queue=0.5, slow=2.0)
    assert busy.ttft_s == pytest.approx(base.ttft_s + 0.5 + 4 * 1e-4 * 100)
    assert cost(L, queue=0.5, slow=2.0).latency_s == pytest.approx(cost(L).latency_s)
    assert cost(L + 1, queue=0.5, slow=2.0).latency_s == pytest.approx(cost(L + 1).latency_s)


def test_local_is_independent_of_the_link_and_offload_is_faster_on_a_fast_link():
    assert cost(L, mbps=1.0).latency_s == pytest.approx(cost(L, mbps=100.0).latency_s)
    assert cost(0, mbps=100.0).latency_s < cost(0, mbps=1.0).latency_s
    assert cost(2, mbps=100.0).latency_s < cost(2, mbps=1.0).latency_s


@given(
    k=st.integers(1, L - 1),
    output=st.integers(1, 300),
    mbps=st.floats(0.2, 500.0),
)
@settings(max_examples=60, deadline=None)
def test_split_decoding_costs_at_least_one_rtt_per_output_token(k, output, mbps):
    assert cost(k, mbps=mbps, output=output).latency_s >= output * RTT - 1e-12


def test_transfer_across_a_capacity_change_is_integrated():
    # 1 Mbps for 1 s, then 10 Mbps: 250 kB = 125 kB in the first second + 125 kB in 0.1 s
    trace = Trace.from_steps([1.0, 10.0], step_s=1.0)
    lk = LinkModel(trace, trace, rtt_edge_s=0.0, rtt_cloud_extra_s=0.0, backhaul_bytes_per_s=1e9)
    c = request_cost(2, 0.0, 250, 0, 0, 1, tiers(), lk, ENERGY)
    dev_prefill = 2 * 1e-3 * 250  # 0.5 s on the device first: the upload starts at t = 0.5
    up_end = 1.0 + (250_000 - 62_500) / 1.25e6  # 62.5 kB at 1 Mbps in [0.5, 1), rest at 10
    assert c.ttft_s == pytest.approx(up_end + 2 * 1e-4 * 250)
    assert c.upload_s == pytest.approx(up_end - dev_prefill)


def test_a_kv_hit_removes_the_context_from_prefill():
    miss = cost(0, new=100, context=900, cached=0)
    hit = cost(0, new=100, context=900, cached=900)
    fresh = cost(0, new=100, context=0)
    assert miss.prefill_tokens == 1000 and hit.prefill_tokens == 100
    assert hit.ttft_s == pytest.approx(fresh.ttft_s)
    assert miss.ttft_s > hit.ttft_s
    # a cache never holds more than the context
    assert cost(0, new=100, context=50, cached=900).prefill_tokens == 100


@given(
    tier_index=st.integers(0, L + 1),
    new=st.integers(1, 4000),
    context=st.integers(0, 4000),
    output=st.integers(1, 1000),
    mbps=st.floats(0.05, 1000.0),
)
@settings(max_examples=100, deadline=None)
def test_costs_are_finite_and_ordered(tier_index, new, context, output, mbps):
    c = cost(tier_index, mbps=mbps, new=new, context=context, output=output)
    assert 0 < c.ttft_s <= c.latency_s < float("inf")
    assert c.energy_j >= 0 and c.upload_s >= 0 and c.device_busy_s <= c.latency_s + 1e-9
