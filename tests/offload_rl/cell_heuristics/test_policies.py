"""How each cell heuristic turns the forecast into a choice (forecasts built by hand)."""

from __future__ import annotations

import pytest

from offload_rl.cell_heuristics.cache_rules import LRUKeep
from offload_rl.cell_heuristics.policies import GreedyExternality, LyapunovPolicy, ThermalMPC
from offload_rl.cell_heuristics.predictor import CellForecaster, TierForecast
from offload_rl.cell_heuristics.tuned import (
    ExternalityParams,
    LyapunovParams,
    PredictorParams,
    ThermalMPCParams,
)
from offload_rl.features import CellDecisionState
from offload_rl.scenario import load_scenario


def _forecaster() -> CellForecaster:
    return CellForecaster(load_scenario("cell"), PredictorParams())


def _state(level: int = 0) -> CellDecisionState:
    return CellDecisionState(
        throughput_mbps=[5.0], rtt_ms=20.0, new_tokens=200, context_tokens=0, turn=0,
        private=False, slo_ttft_s=1.0, slo_tpot_s=0.1, cached_split=None, cached_tokens=0,
        edge_kv_occupancy=0.0, edge_load=0.0, device_memory_layers=28, thermal_level=level,
    )  # fmt: skip


def _fc(tier: int, reward: float, energy: float = 0.0, violated: bool = False, work: float = 0.0,
        ext: float = 0.0) -> TierForecast:  # fmt: skip
    return TierForecast(tier, reward, 1.0, 0.1, energy, violated, work, ext, 100)


def test_the_externality_is_charged_at_the_price_of_a_second_in_the_system():
    f = _forecaster()
    policy = GreedyExternality("x", f, LRUKeep(f.L), ExternalityParams(price=2.0))
    scores = policy.objective(_state(), [_fc(0, -1.0, ext=3.0), _fc(f.L + 1, -1.1)])
    assert scores[0] == pytest.approx(-1.0 - 2.0 * policy.second_price * 3.0)
    assert scores[1] == pytest.approx(-1.1)
    assert policy.second_price > 0


def test_lyapunov_queues_grow_past_their_budget_and_price_what_they_count():
    f = _forecaster()
    params = LyapunovParams(v=1.0, energy_budget_j=10.0, slo_budget=0.25)
    policy = LyapunovPolicy("x", f, LRUKeep(f.L), params)
    policy.chosen(_state(), _fc(0, -1.0, energy=30.0, violated=True))
    assert (policy.q_energy, policy.q_slo) == (pytest.approx(20.0), pytest.approx(0.75))
    policy.chosen(_state(), _fc(0, -1.0, energy=5.0))
    assert (policy.q_energy, policy.q_slo) == (pytest.approx(15.0), pytest.approx(0.5))
    scores = policy.objective(_state(), [_fc(0, -1.0, energy=2.0), _fc(1, -1.0, violated=True)])
    assert scores[0] == pytest.approx(-1.0 - 15.0 * 2.0)
    assert scores[1] == pytest.approx(-1.0 - 0.5)
    policy.reset()
    assert policy.q_energy == policy.q_slo == 0.0


def test_thermal_mpc_charges_local_heat_and_credits_an_offload_for_the_radio_it_leaves_up():
    f = _forecaster()
    params = ThermalMPCParams(horizon=2, heat_price=1.0, radio_price=1.0)
    policy = ThermalMPC("x", f, LRUKeep(f.L), params)
    hot = _state(level=1)
    local, edge = _fc(f.L, -1.0, work=60.0), _fc(0, -1.0)
    scores = policy.objective(hot, [local, edge])
    assert scores[0] < -1.0  # 60 s of work now makes the next local runs slower
    assert scores[1] == pytest.approx(-1.0 + policy.radio_credit)
    assert policy.radio_credit > 0
    no_heat = ThermalMPC("x", f, LRUKeep(f.L), params.model_copy(update={"heat_price": 0.0}))
    assert no_heat.objective(hot, [local, edge])[0] == pytest.approx(-1.0)
