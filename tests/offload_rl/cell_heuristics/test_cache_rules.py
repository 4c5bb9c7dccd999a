"""The cache rules: GDSF's ordering, and when the value-per-byte rule keeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offload_rl.actions import DROP, KEEP
from offload_rl.cell_heuristics.cache_rules import GDSFKeep, LRUKeep, gdsf_priority
from offload_rl.cell_heuristics.predictor import CellForecaster, TierForecast
from offload_rl.cell_heuristics.return_model import MAX_TURN, fit_return_model
from offload_rl.cell_heuristics.tuned import GDSFParams, PredictorParams, ReturnModelParams
from offload_rl.features import CellDecisionState
from offload_rl.scenario import load_scenario
from offload_rl.workloads import Request

prob = st.floats(0.01, 1.0)
seconds = st.floats(1e-3, 10.0)
nbytes = st.floats(1e3, 1e10)


@given(prob, prob, seconds, nbytes)
def test_a_likelier_return_ranks_higher(p1, p2, saved, size):
    lo, hi = sorted((p1, p2))
    assert gdsf_priority(lo, saved, size) <= gdsf_priority(hi, saved, size)


@given(prob, seconds, seconds, nbytes)
def test_more_prefill_saved_ranks_higher(p, s1, s2, size):
    lo, hi = sorted((s1, s2))
    assert gdsf_priority(p, lo, size) <= gdsf_priority(p, hi, size)


@given(prob, seconds, nbytes, nbytes)
def test_more_bytes_rank_lower(p, saved, b1, b2):
    small, big = sorted((b1, b2))
    assert gdsf_priority(p, saved, small) >= gdsf_priority(p, saved, big)


def test_ordering_of_a_few_entries():
    """Value per byte, not value: a small likely entry beats a big one that saves more."""
    entries = {
        "small-likely": (0.9, 0.1, 1e6),
        "big-saves-more": (0.9, 0.5, 1e8),
        "small-unlikely": (0.1, 0.1, 1e6),
    }
    ranked = sorted(entries, key=lambda k: -gdsf_priority(*entries[k]))
    assert ranked == ["small-likely", "small-unlikely", "big-saves-more"]


def _state(turn: int, occupancy: float, context: int = 1000) -> CellDecisionState:
    return CellDecisionState(
        throughput_mbps=[5.0], rtt_ms=20.0, new_tokens=200, context_tokens=context, turn=turn,
        private=False, slo_ttft_s=1.0, slo_tpot_s=0.1, cached_split=None, cached_tokens=0,
        edge_kv_occupancy=occupancy, edge_load=0.0, device_memory_layers=28,
    )  # fmt: skip


def _forecast(tier: int) -> TierForecast:
    return TierForecast(tier, -1.0, 1.0, 0.1, 1.0, False, 0.0, 0.0, 100)


def test_gdsf_keeps_when_the_pool_is_empty_and_drops_big_unlikely_entries_when_it_is_full():
    forecaster = CellForecaster(load_scenario("cell"), PredictorParams())
    L = forecaster.L
    returns = ReturnModelParams(p_return=[0.9, 0.05])
    rule = GDSFKeep(forecaster, GDSFParams(threshold=10.0), returns)
    assert rule.keep(_state(0, 0.0), _forecast(0)) == KEEP
    assert rule.keep(_state(1, 0.0), _forecast(0)) == KEEP  # an empty pool takes anything
    assert rule.keep(_state(0, 0.95), _forecast(0)) == KEEP  # likely to return
    assert rule.keep(_state(1, 0.95, context=3000), _forecast(0)) == DROP  # unlikely, big
    assert rule.keep(_state(1, 0.95), _forecast(L)) == KEEP  # the device's own memory
    assert rule.keep(_state(0, 0.0), _forecast(L + 1)) == DROP  # the cloud keeps nothing
    lru = LRUKeep(L)
    assert lru.keep(_state(1, 0.95), _forecast(0)) == KEEP
    assert lru.keep(_state(1, 0.95), _forecast(L + 1)) == DROP


def test_the_return_model_counts_which_turns_came_back():
    """Two streams; turn 0 returns 2 of 3 times, turn 1 never (+ the 1/2 pseudo-count)."""
    stream_a = [Request(0.0, 0, 0, 10, 0, 5, 3.0), Request(3.0, 0, 1, 10, 15, 5, None)]
    stream_b = [Request(0.0, 0, 0, 10, 0, 5, 2.0), Request(1.0, 1, 0, 10, 0, 5, None)]
    p, sessions = fit_return_model([stream_a, stream_b])
    assert sessions == 3
    assert len(p) == MAX_TURN + 1
    assert p[0] == pytest.approx((2 + 0.5) / (3 + 1))
    assert p[1] == pytest.approx(0.5 / 2)
    assert p[5] == pytest.approx(0.5)  # never seen: the prior
