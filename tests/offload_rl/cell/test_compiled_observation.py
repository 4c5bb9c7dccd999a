"""The compiled cell observation is, bit for bit, the Python encoder's.

:func:`offload_rl.cell.compiled_observation.encode` writes the ``EdgeCell-v0`` vector in one
numba call; :func:`offload_rl.features.encode_observation` is the reference. Random decision
states (samples none to many, tiny, zero, NaN; cached split or none; the cell's fields) must give
identical float32 bytes, and the environment in compiled mode must hand out those bytes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.features import CellDecisionState, FeatureSpec, encode_observation

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

reals = st.floats(-10.0, 1e6, allow_nan=False) | st.sampled_from([0.0, 1e-4, 1e-3, math.nan])
counts = st.integers(-3, 2**21) | st.sampled_from([0, 1, 255, 256])
mbps = st.floats(0.0, 5000.0) | st.sampled_from([0.0, 1e-4, 0.05, 0.1, math.nan])


@st.composite
def cell_states(draw: st.DrawFn) -> tuple[CellDecisionState, FeatureSpec]:
    """A spec (layers, history, outage floor) and a decision state within its ranges."""
    n_layers = draw(st.integers(1, 40))
    spec = FeatureSpec(
        n_layers=n_layers,
        history=draw(st.integers(1, 12)),
        outage_mbps=draw(st.sampled_from([0.1, 0.0, 1.0])),
        cell=True,
    )
    state = CellDecisionState(
        throughput_mbps=draw(st.lists(mbps, max_size=20)),
        rtt_ms=draw(reals),
        new_tokens=draw(counts),
        context_tokens=draw(counts),
        turn=draw(st.integers(0, 40)),
        private=draw(st.booleans()),
        slo_ttft_s=draw(reals),
        slo_tpot_s=draw(reals),
        cached_split=draw(st.none() | st.integers(0, n_layers)),
        cached_tokens=draw(counts),
        edge_kv_occupancy=draw(st.floats(0.0, 1.5) | st.just(math.nan)),
        edge_load=draw(st.floats(0.0, 1.0)),
        device_memory_layers=draw(st.integers(0, n_layers + 2)),
        prev_output_tokens=draw(counts),
        since_last_turn_s=draw(reals),
        throughput_age_s=draw(reals),
        device_class=draw(st.integers(0, 2)),
        thermal_level=draw(st.integers(0, 3)),
        radio_state=draw(st.integers(0, 3)),
        edge_waiting=draw(counts),
        edge_waiting_tokens=draw(counts),
        edge_running=draw(counts),
        edge_running_tokens=draw(counts),
        entry_bytes_share=draw(st.floats(0.0, 1.0)),
        entry_recency_rank=draw(st.integers(-1, 300)),
    )
    return state, spec


@settings(max_examples=300, deadline=None)
@given(cell_states())
def test_compiled_observation_is_the_python_encoders_bit_for_bit(
    case: tuple[CellDecisionState, FeatureSpec],
) -> None:
    state, spec = case
    expected = encode_observation(state, spec)
    got = cd.observation().encode(state, spec)
    assert got.dtype == expected.dtype == np.float32
    assert got.tobytes() == expected.tobytes()


def test_compiled_cell_hands_out_the_python_encoders_observations() -> None:
    """In compiled mode the environment's vectors come from the compiled writer, equal to the
    Python encoder's vector of the same state at every step."""
    from envs.edge_cell import EdgeCellEnv

    env = EdgeCellEnv(n_devices=8, episode_requests=120)
    obs, _ = env.reset(seed=3)
    assert env._encode is not None  # compiled mode: the writer is in use
    rng = np.random.default_rng(0)
    for _ in range(120):
        assert obs.tobytes() == encode_observation(env.state, env.feature_spec).tobytes()
        valid = np.flatnonzero(env.action_masks())
        obs, _, _, truncated, _ = env.step(int(valid[rng.integers(valid.size)]))
        if truncated:
            break


def test_queue_view_is_the_edge_states_fields() -> None:
    """``EdgeServer.queue_view`` (what a decision reads, without an ``EdgeState``) holds the
    fields of ``state()``, compiled server or not, at every decision."""
    from envs.edge_cell import EdgeCellEnv

    env = EdgeCellEnv(n_devices=8, episode_requests=80)
    env.reset(seed=5)
    rng = np.random.default_rng(1)
    for _ in range(80):
        es = env.sim.edge.state()
        assert env.sim.edge.queue_view() == (
            es.pool_used_bytes, es.pool_capacity_bytes, es.n_waiting, es.waiting_tokens,
            es.n_running, es.running_tokens,
        )  # fmt: skip
        valid = np.flatnonzero(env.action_masks())
        if env.step(int(valid[rng.integers(valid.size)]))[3]:
            break


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 12),
    st.lists(st.lists(mbps, max_size=14), min_size=1, max_size=8),
    st.integers(0, 3),
)
def test_history_memo_gives_the_features_without_it(
    history: int, windows: list[list[float]], shift: int
) -> None:
    """``_history`` with a device's memo (the decision kernel's) writes the same float32
    features and returns the same sums as without one, over a run of windows that repeat and
    shift each other's samples (the memo's hits) or bring new ones (its misses)."""
    co = cd.observation()
    log_mbps = float(co.SCALES[0])
    memo = np.zeros(2 + 3 * history)
    pool = [s for w in windows for s in w]
    for k, window in enumerate(windows):
        raw = np.array(window + pool[k * shift : k * shift + shift], dtype=np.float64)
        got, expected = np.zeros(history, np.float32), np.zeros(history, np.float32)
        sums = co._history(got, raw, raw.shape[0], history, log_mbps, memo, 2)
        reference = co._history(expected, raw, raw.shape[0], history, log_mbps, co.NO_MEMO, -1)
        assert np.array(sums).tobytes() == np.array(reference).tobytes()  # NaN newest too
        assert got.tobytes() == expected.tobytes()
