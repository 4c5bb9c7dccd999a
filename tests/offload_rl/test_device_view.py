"""The device's view: its throughput samples, what a kept KV holds, its session memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.device_view import (
    SessionMemory,
    decision_state,
    kept_kv_tokens,
    latest_period,
    measured_throughput,
)
from offload_rl.traces import Trace
from offload_rl.workloads import Request

TRACE = Trace.from_steps([4.0, 0.0, 12.0, 2.5, 7.0], step_s=0.5, name="steps")


@settings(max_examples=60, deadline=None)
@given(
    origin=st.floats(0.0, 50.0),
    first=st.integers(-10, 40),
    n=st.integers(1, 12),
    period=st.sampled_from([0.25, 1.0, 1.7]),
)
def test_samples_are_the_mean_capacity_of_each_period(origin, first, n, period):
    got = measured_throughput(TRACE, origin, first, n, period)
    want = [
        TRACE.mean_mbps(origin + (first + j) * period, origin + (first + j + 1) * period)
        for j in range(n)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_noise_is_lognormal_and_needs_an_rng():
    clean = measured_throughput(TRACE, 0.0, 0, 2000, 1.0)
    noisy = measured_throughput(TRACE, 0.0, 0, 2000, 1.0, 0.1, np.random.default_rng(0))
    ratio = np.log(noisy[clean > 0] / clean[clean > 0])
    assert np.std(ratio) == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ValueError, match="rng"):
        measured_throughput(TRACE, 0.0, 0, 3, 1.0, 0.1)


def test_latest_period_counts_complete_periods():
    assert latest_period(0.0, 1.0) == 0
    assert latest_period(2.999, 1.0) == 2
    assert latest_period(3.0, 1.5) == 2


def test_a_kept_kv_holds_every_position_but_the_last_output_token():
    # 100 context + 20 prompt + 5 output tokens: the 5th output token never runs through
    assert kept_kv_tokens(100, 20, 5) == 124
    assert kept_kv_tokens(0, 20, 1) == 20
    assert kept_kv_tokens(0, 20, 0) == 20


def test_decision_state_remembers_the_previous_turn_and_clips_the_cache():
    memory = SessionMemory()
    first = Request(10.0, 7, 0, 50, 0, 30, 20.0)
    second = Request(42.5, 7, 1, 10, 80, 8, None)  # context: 50 prompt + 30 output
    common = dict(
        throughput_mbps=[1.0, 2.0],
        rtt_ms=20.0,
        private=True,
        slo=(1.0, 0.1),
        edge_kv_occupancy=0.3,
        edge_load=0.5,
        device_memory_layers=6,
        memory=memory,
    )
    s0 = decision_state(first, cached=(None, 0), **common)
    assert (s0.prev_output_tokens, s0.since_last_turn_s, s0.cached_split) == (0, 0.0, None)
    memory.remember(first)
    s1 = decision_state(second, cached=(3, kept_kv_tokens(0, 50, 30)), **common)
    assert s1.prev_output_tokens == 30
    assert s1.since_last_turn_s == pytest.approx(32.5)
    assert (s1.cached_split, s1.cached_tokens) == (3, 79)  # the last output token re-runs
    assert (s1.private, s1.slo_ttft_s, s1.slo_tpot_s, s1.device_memory_layers) == (
        True,
        1.0,
        0.1,
        6,
    )
    memory.clear()
    assert decision_state(second, cached=(None, 0), **common).prev_output_tokens == 0


def test_the_time_grid_is_built_once_per_trace_and_never_another_traces():
    """measured_throughput's time grid is cached per trace object; a new trace (which may
    reuse a freed one's id) gets its own."""
    from offload_rl.device_view import _time_grid

    kept = Trace.constant(10.0, duration_s=30.0, step_s=1.0)
    assert _time_grid(kept) is _time_grid(kept)
    assert np.array_equal(_time_grid(kept), np.arange(len(kept.cum_bytes)) * kept.step_s)
    for step in (0.5, 0.25, 2.0, 0.5, 1.5) * 4:  # 2.0: as many points as ``kept``, wider
        trace = Trace.constant(10.0, duration_s=30.0 * step, step_s=step)
        assert np.array_equal(_time_grid(trace), np.arange(len(trace.cum_bytes)) * step)
        del trace
