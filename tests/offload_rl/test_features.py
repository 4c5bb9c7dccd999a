"""The shared observation encoder and the action masks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.actions import ActionLayout
from offload_rl.features import DecisionState, FeatureSpec, action_mask, encode_observation

L = 24
SPEC = FeatureSpec(n_layers=L, history=8, k_priv=2, outage_mbps=0.1)
LAYOUT = ActionLayout(L)


def state(**kw) -> DecisionState:
    base = dict(
        throughput_mbps=[2.0] * 8,
        rtt_ms=20.0,
        new_tokens=100,
        context_tokens=0,
        turn=0,
        private=False,
        slo_ttft_s=1.0,
        slo_tpot_s=0.1,
        cached_split=None,
        cached_tokens=0,
        edge_kv_occupancy=0.0,
        edge_load=0.3,
        device_memory_layers=L,
    )
    base.update(kw)
    return DecisionState(**base)


def tiers_allowed(mask: np.ndarray) -> set[int]:
    return {int(t) for t in np.flatnonzero(mask[0::2] | mask[1::2])}


def test_unconstrained_mask_allows_every_placement_but_cloud_keep():
    mask = action_mask(state(), SPEC)
    assert mask.shape == (LAYOUT.n_actions,) and mask.dtype == bool
    assert tiers_allowed(mask) == set(range(L + 2))
    assert not mask[LAYOUT.encode(L + 1, 1)] and mask[LAYOUT.encode(L + 1, 0)]


def test_privacy_keeps_k_priv_layers_on_the_device():
    mask = action_mask(state(private=True), SPEC)
    assert tiers_allowed(mask) == set(range(2, L + 1))  # no edge-only, no cloud


def test_device_memory_limits_layers_on_the_device():
    mask = action_mask(state(device_memory_layers=8), SPEC)
    assert tiers_allowed(mask) == set(range(0, 9)) | {L + 1}


def test_outage_allows_only_fully_local():
    mask = action_mask(state(throughput_mbps=[5.0] * 7 + [0.05]), SPEC)
    assert tiers_allowed(mask) == {L}
    assert mask[LAYOUT.encode(L, 0)] and mask[LAYOUT.encode(L, 1)]


def test_outage_without_memory_for_the_model_still_leaves_local():
    mask = action_mask(state(throughput_mbps=[0.0], device_memory_layers=4), SPEC)
    assert tiers_allowed(mask) == {L}


@given(
    private=st.booleans(),
    k_mem=st.integers(0, L),
    samples=st.lists(st.floats(0.0, 2000.0), min_size=0, max_size=12),
)
@settings(max_examples=200, deadline=None)
def test_every_mask_has_a_valid_action_and_nearest_valid_is_valid(private, k_mem, samples):
    mask = action_mask(
        state(private=private, device_memory_layers=k_mem, throughput_mbps=samples), SPEC
    )
    assert mask.any()
    for a in (0, 1, LAYOUT.n_actions - 1, 17):
        assert mask[LAYOUT.nearest_valid(a, mask)]


@given(
    samples=st.lists(st.floats(0.0, 1e6), min_size=0, max_size=20),
    new=st.integers(1, 10**6),
    ctx=st.integers(0, 10**6),
    turn=st.integers(0, 1000),
    cached=st.integers(0, 10**6),
    split=st.none() | st.integers(0, L),
    load=st.floats(-1.0, 2.0),
    rtt=st.floats(0.0, 1e5),
)
@settings(max_examples=200, deadline=None)
def test_observation_is_finite_fixed_length_and_in_the_box(
    samples, new, ctx, turn, cached, split, load, rtt
):
    obs = encode_observation(
        state(
            throughput_mbps=samples,
            new_tokens=new,
            context_tokens=ctx,
            turn=turn,
            cached_split=split,
            cached_tokens=cached,
            edge_load=load,
            rtt_ms=rtt,
        ),
        SPEC,
    )
    assert obs.shape == (SPEC.obs_dim,) and obs.dtype == np.float32
    assert np.all(np.isfinite(obs)) and obs.min() >= 0.0 and obs.max() <= 1.0


def test_feature_names_match_the_vector():
    assert len(SPEC.feature_names()) == SPEC.obs_dim
    obs = encode_observation(state(private=True), SPEC)
    assert obs[SPEC.feature_names().index("private")] == 1.0


def test_short_history_is_front_padded_with_the_oldest_sample():
    a = encode_observation(state(throughput_mbps=[3.0, 4.0]), SPEC)
    b = encode_observation(state(throughput_mbps=[3.0] * 7 + [4.0]), SPEC)
    np.testing.assert_array_equal(a, b)


def test_action_layout_round_trip_and_meanings():
    for a in range(LAYOUT.n_actions):
        t, z = LAYOUT.decode(a)
        assert LAYOUT.encode(t, z) == a
    assert LAYOUT.meaning(LAYOUT.encode(3, 1)) == "split k=3, keep"
    assert LAYOUT.meaning(LAYOUT.encode(L + 1, 0)) == "cloud, drop"
    assert LAYOUT.meaning(LAYOUT.encode(0, 0)) == "edge, drop"
    assert LAYOUT.meaning(LAYOUT.encode(L, 1)) == "device, keep"
