"""The shared observation encoder and the action masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import offload_rl.features as features_module
from offload_rl.actions import ActionLayout
from offload_rl.features import (
    VECTOR_MIN_BATCH,
    DecisionState,
    FeatureSpec,
    action_mask,
    action_masks,
    encode_observation,
    encode_observations,
)

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


def test_outage_without_memory_for_the_model_leaves_the_deepest_split_it_holds():
    # not full local: the simulators would run it at full speed from memory the phone lacks
    mask = action_mask(state(throughput_mbps=[0.0], device_memory_layers=4), SPEC)
    assert tiers_allowed(mask) == {4}


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


# --------------------------------------------------------------------------------------------
# Batch forms: exactly the rows of the single-state functions
# --------------------------------------------------------------------------------------------

number = st.one_of(
    st.floats(-1e6, 1e6),
    st.integers(-(10**6), 10**6),
    st.sampled_from([0, 0.0, -0.0, 1e-300, 5e-324, 1e308, float("nan"), float("inf")]),
)
batch_state = st.builds(
    DecisionState,
    throughput_mbps=st.lists(
        st.one_of(st.floats(0.0, 1e6), st.floats(-10.0, 2000.0), st.just(float("nan"))),
        max_size=20,
    ),
    rtt_ms=number,
    new_tokens=st.integers(-10, 2**60),
    context_tokens=st.one_of(st.integers(-10, 10**6), st.integers(2**53 - 2, 2**64)),
    turn=st.integers(0, 10**7),
    private=st.booleans(),
    slo_ttft_s=number,
    slo_tpot_s=number,
    cached_split=st.none() | st.integers(-2, 2 * L),
    cached_tokens=st.integers(-10, 10**7),
    edge_kv_occupancy=number,
    edge_load=number,
    device_memory_layers=st.integers(-5, 3 * L),
    prev_output_tokens=st.integers(-10, 10**6),
    since_last_turn_s=number,
)


# small batches go row by row, larger ones column by column: both must give the single rows
batch_sizes = st.sampled_from([(0, 5), (VECTOR_MIN_BATCH, VECTOR_MIN_BATCH + 40)])


@given(data=st.data(), sizes=batch_sizes)
@settings(max_examples=150, deadline=None)
def test_batch_encoder_gives_exactly_the_single_rows(data, sizes):
    states = data.draw(st.lists(batch_state, min_size=sizes[0], max_size=sizes[1]))
    obs = encode_observations(states, SPEC)
    assert obs.shape == (len(states), SPEC.obs_dim) and obs.dtype == np.float32
    for row, s in zip(obs, states, strict=True):
        np.testing.assert_array_equal(row, encode_observation(s, SPEC))
        assert row.tobytes() == encode_observation(s, SPEC).tobytes()  # -0.0 vs 0.0 too


@given(data=st.data(), sizes=batch_sizes)
@settings(max_examples=150, deadline=None)
def test_batch_masks_give_exactly_the_single_rows(data, sizes):
    states = data.draw(st.lists(batch_state, min_size=sizes[0], max_size=sizes[1]))
    masks = action_masks(states, SPEC)
    assert masks.shape == (len(states), LAYOUT.n_actions) and masks.dtype == bool
    for row, s in zip(masks, states, strict=True):
        np.testing.assert_array_equal(row, action_mask(s, SPEC))


def test_batch_encoder_on_large_batches_of_environment_like_states():
    """The vectorised path (batches from VECTOR_MIN_BATCH on), on realistic values."""
    rng = np.random.default_rng(0)
    states = [
        state(
            throughput_mbps=list(rng.gamma(2.0, 5.0, size=int(rng.integers(0, 12)))),
            rtt_ms=float(rng.uniform(1, 200)),
            new_tokens=int(rng.integers(1, 4000)),
            context_tokens=int(rng.integers(0, 30000)),
            turn=int(rng.integers(0, 30)),
            private=bool(rng.random() < 0.3),
            cached_split=None if rng.random() < 0.4 else int(rng.integers(0, L + 1)),
            cached_tokens=int(rng.integers(0, 30000)),
            edge_kv_occupancy=float(rng.random()),
            edge_load=float(rng.random()),
            device_memory_layers=int(rng.integers(0, L + 1)),
            prev_output_tokens=int(rng.integers(0, 2000)),
            since_last_turn_s=float(rng.exponential(60.0)),
        )
        for _ in range(3 * VECTOR_MIN_BATCH)
    ]
    single = np.stack([encode_observation(s, SPEC) for s in states])
    assert encode_observations(states, SPEC).tobytes() == single.tobytes()
    single_masks = np.stack([action_mask(s, SPEC) for s in states])
    np.testing.assert_array_equal(action_masks(states, SPEC), single_masks)


def test_batch_encoder_rows_that_raise_raise_in_the_batch_too():
    """All-infinite samples make the harmonic mean divide by zero in the single encoder."""
    bad = state(throughput_mbps=[float("inf")] * 8)
    with pytest.raises(ZeroDivisionError):
        encode_observation(bad, SPEC)
    with pytest.raises(ZeroDivisionError):
        encode_observations([state()] * VECTOR_MIN_BATCH + [bad], SPEC)


# --------------------------------------------------------------------------------------------
# The encoder against its plain version (feature schema 1): the fast one must not drift
# --------------------------------------------------------------------------------------------


def reference_observation(state: DecisionState, spec: FeatureSpec) -> np.ndarray:
    """The encoder as first written (schema version 1), kept as the definition."""
    H = spec.history
    raw = state.throughput_mbps
    n = len(raw)
    if n >= H:
        samples = [float(x) for x in raw[n - H :]]
    elif n:
        samples = [float(raw[0])] * (H - n) + [float(x) for x in raw]
    else:
        samples = [0.0] * H
    log1p = math.log1p
    inv_sum = 0.0
    values = []
    for s in samples:
        s = s if s > 0.0 else 0.0
        inv_sum += 1.0 / (s if s > 1e-3 else 1e-3)
        values.append(log1p(s) / features_module._LOG_MBPS)
    L = spec.n_layers
    cached = state.cached_split is not None and state.cached_tokens > 0
    ctx = state.context_tokens
    f = features_module
    values += (
        log1p(max(state.rtt_ms, 0.0)) / f._LOG_MS,
        log1p(max(state.new_tokens, 0)) / f._LOG_TOKENS,
        log1p(max(ctx, 0)) / f._LOG_TOKENS,
        state.turn / f._MAX_TURN,
        1.0 if state.private else 0.0,
        log1p(max(state.slo_ttft_s, 0.0)) / f._LOG_SLO,
        state.slo_tpot_s,
        1.0 if cached else 0.0,
        (state.cached_split or 0) / L if cached else 0.0,
        state.cached_tokens / ctx if cached and ctx > 0 else 0.0,
        state.edge_kv_occupancy,
        state.edge_load,
        state.device_memory_layers / L,
        log1p(max(state.prev_output_tokens, 0)) / f._LOG_TOKENS,
        log1p(max(state.since_last_turn_s, 0.0)) / f._LOG_GAP,
        1.0 if samples[-1] < spec.outage_mbps else 0.0,
        log1p(H / inv_sum) / f._LOG_MBPS,
    )
    return np.asarray(
        [0.0 if not v > 0.0 else (v if v < 1.0 else 1.0) for v in values], dtype=np.float32
    )


@given(s=batch_state)
@settings(max_examples=500, deadline=None)
def test_encoder_equals_its_plain_version_bit_for_bit(s):
    try:
        expected = reference_observation(s, SPEC)
    except (ZeroDivisionError, OverflowError) as err:
        with pytest.raises(type(err)):
            encode_observation(s, SPEC)
        return
    assert encode_observation(s, SPEC).tobytes() == expected.tobytes()


@given(
    samples=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=12),
    values=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**9), 10**9)),
        min_size=8,
        max_size=8,
    ),
)
@settings(max_examples=500, deadline=None)
def test_encoder_equals_its_plain_version_on_any_number(samples, values):
    rtt, ttft, tpot, kv, load, gap, new, prev = values
    s = state(
        throughput_mbps=samples,
        rtt_ms=rtt,
        slo_ttft_s=ttft,
        slo_tpot_s=tpot,
        edge_kv_occupancy=kv,
        edge_load=load,
        since_last_turn_s=gap,
        new_tokens=new,
        prev_output_tokens=prev,
    )
    try:
        expected = reference_observation(s, SPEC)
    except (ZeroDivisionError, OverflowError, TypeError) as err:
        with pytest.raises(type(err)):
            encode_observation(s, SPEC)
        return
    assert encode_observation(s, SPEC).tobytes() == expected.tobytes()


def test_feature_docs_cover_the_observation_in_order_and_the_env_page_shows_them():
    from envs.split_cache import SplitCacheEnv
    from offload_rl.features import FEATURE_DOCS, SCALAR_FEATURES, observation_table

    assert list(FEATURE_DOCS) == ["throughput_i", *SCALAR_FEATURES]
    rows = [line.split("|")[1:3] for line in observation_table().splitlines()[2:]]
    assert [name.strip() for _, name in rows] == list(FEATURE_DOCS)
    assert [index.strip() for index, _ in rows[1:]] == [f"H+{i}" for i in range(len(rows) - 1)]
    page = SplitCacheEnv.__doc__ or ""
    assert "{observation_table}" not in page
    for name, doc in FEATURE_DOCS.items():
        assert f"| {name}" in page and doc in page


@settings(max_examples=200, deadline=None)
@given(
    n_layers=st.integers(1, 200),
    history=st.integers(1, 64),
    k_priv=st.integers(0, 200),
    outage_mbps=st.floats(0.0, 1e4, allow_nan=False),
)
def test_feature_spec_dict_round_trips_as_numbers_and_as_strings(
    n_layers, history, k_priv, outage_mbps
):
    """meta.json holds numbers, the ONNX metadata their strings: both read back exactly."""
    spec = FeatureSpec(n_layers=n_layers, history=history, k_priv=k_priv, outage_mbps=outage_mbps)
    numbers = spec.to_dict()
    assert list(numbers) == ["n_layers", "history", "k_priv", "outage_mbps"]
    assert FeatureSpec.from_dict({**numbers, "obs_dim": 99, "scenario": "x"}) == spec
    assert FeatureSpec.from_dict({k: str(v) for k, v in numbers.items()}) == spec


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("history", None, "missing 'history'"),
        ("n_layers", "24.5", "'n_layers' is '24.5', not an integer"),
        ("k_priv", 2.5, "'k_priv' is 2.5, not an integer"),
        ("k_priv", True, "'k_priv' is True, not an integer"),
        ("history", "eight", "'history' is 'eight', not an integer"),
        ("history", 0, "'history' is 0, below 1"),
        ("n_layers", -3, "'n_layers' is -3, below 1"),
        ("outage_mbps", "nan", "'outage_mbps' is 'nan', not a number"),
        ("outage_mbps", [0.1], r"'outage_mbps' is \[0.1\], not a number"),
        ("outage_mbps", -0.5, "'outage_mbps' is -0.5, below 0"),
    ],
)
def test_feature_spec_from_dict_names_the_missing_or_bad_key(key, value, message):
    data: dict[str, object] = dict(SPEC.to_dict())
    if value is None:
        del data[key]
    else:
        data[key] = value
    with pytest.raises(ValueError, match=f"^{message}$"):
        FeatureSpec.from_dict(data)
