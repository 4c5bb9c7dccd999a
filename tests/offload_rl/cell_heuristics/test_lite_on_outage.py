"""The cell ``lite-on-outage``: lite on an outage or a forecast far over the SLO, else greedy."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.policies import resolve_policy
from offload_rl.actions import DROP
from offload_rl.cell_heuristics.lite_on_outage import CellLiteOnOutage
from offload_rl.cell_heuristics.names import make_cell_heuristic
from offload_rl.cell_heuristics.policies import CellGreedy
from offload_rl.features import CellDecisionState, action_mask
from offload_rl.heuristics import LiteOnOutagePolicy
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import scenario_facts

CELL_LITE = load_scenario("cell_lite")
CELL = load_scenario("cell")
SPEC = replace(scenario_facts(CELL_LITE).spec, cell=True)  # EdgeCell-v0's mask


def _state(mbps: float = 5.0, **kw: object) -> CellDecisionState:
    values: dict[str, object] = dict(
        throughput_mbps=[5.0] * 7 + [mbps], rtt_ms=20.0, new_tokens=200, context_tokens=300,
        turn=1, private=False, slo_ttft_s=1.0, slo_tpot_s=0.1, cached_split=None,
        cached_tokens=0, edge_kv_occupancy=0.1, edge_load=0.2, device_memory_layers=28,
        prev_output_tokens=150,
    )  # fmt: skip
    values.update(kw)
    return CellDecisionState(**values)  # type: ignore[arg-type]


def _policies(factor: float) -> tuple[CellLiteOnOutage, CellGreedy]:
    rule = make_cell_heuristic("lite-on-outage", CELL_LITE)
    assert isinstance(rule, CellLiteOnOutage)
    rule.factor = factor
    return rule, make_cell_heuristic("greedy", CELL_LITE)


def _without_lite(mask: np.ndarray, lite: int) -> np.ndarray:
    main = mask.copy()
    main[2 * lite : 2 * lite + 2] = False
    return main


def test_the_name_is_the_cell_rule_in_a_cell_and_the_single_device_rule_elsewhere():
    assert type(resolve_policy("lite-on-outage", CELL_LITE)) is CellLiteOnOutage
    assert type(resolve_policy("lite-on-outage+gdsf", CELL_LITE)) is CellLiteOnOutage
    assert type(resolve_policy("lite-on-outage", load_scenario("lite"))) is LiteOnOutagePolicy


def test_an_outage_gets_the_lite_model():
    rule, _ = _policies(math.inf)
    lite = rule.layout.lite_index
    assert lite is not None
    for memory in (28, 26, 8):  # flagship, budget (no full-local), memory pressure
        state = _state(mbps=0.0, device_memory_layers=memory)
        mask = action_mask(state, SPEC)
        assert rule.act(state, mask) == rule.layout.encode(lite, DROP)


def test_without_an_outage_it_is_greedys_choice_among_the_main_models_placements():
    rule, greedy = _policies(math.inf)  # no latency rule
    lite = rule.layout.lite_index
    assert lite is not None
    greedy_would_take_lite = 0
    for mbps, ctx, private in ((5.0, 300, False), (0.5, 3000, False), (5.0, 300, True)):
        state = _state(mbps=mbps, context_tokens=ctx, private=private)
        mask = action_mask(state, SPEC)
        main = _without_lite(mask, lite)
        assert rule.act(state, mask) == greedy.act(state, main)
        greedy_would_take_lite += rule.layout.decode(greedy.act(state, mask))[0] == lite
    assert greedy_would_take_lite  # the rule leaves the lite model to outages and slow answers


def test_a_forecast_over_factor_x_slo_gets_the_lite_model_and_one_under_it_does_not():
    rule, greedy = _policies(1.0)
    lite = rule.layout.lite_index
    assert lite is not None
    state = _state()
    mask = action_mask(state, SPEC)
    greedy_action = greedy.act(state, _without_lite(mask, lite))
    tier = rule.layout.decode(greedy_action)[0]
    forecast = rule.forecaster.forecast(state, [tier])[0]
    slo = state.slo_ttft_s + (forecast.output_tokens - 1) * state.slo_tpot_s
    ratio = forecast.latency_s / slo
    rule.factor = ratio * 0.99
    assert rule.act(state, mask) == rule.layout.encode(lite, DROP)
    rule.factor = ratio * 1.01
    assert rule.act(state, mask) == greedy_action


def test_without_a_lite_tier_it_is_the_cell_greedy():
    rule = make_cell_heuristic("lite-on-outage", CELL)
    greedy = make_cell_heuristic("greedy", CELL)
    for mbps in (0.0, 5.0):
        state = _state(mbps=mbps, device_memory_layers=26)
        mask = action_mask(state, replace(scenario_facts(CELL).spec, cell=True))
        assert rule.act(state, mask) == greedy.act(state, mask)


RULE = _policies(1.0)[0]


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(st.sampled_from([0.0, 0.05, 0.3, 2.0, 15.0, 80.0]), min_size=1, max_size=8),
    memory=st.integers(0, 28),
    private=st.booleans(),
    context=st.integers(0, 4000),
    new=st.integers(1, 2000),
    cached_split=st.one_of(st.none(), st.integers(0, 28)),
    thermal=st.integers(0, 3),
    radio=st.integers(0, 2),
    device_class=st.integers(0, 2),
    factor=st.sampled_from([0.3, 1.0, math.inf]),
)
def test_the_action_is_always_valid_under_the_mask(
    samples: list[float],
    memory: int,
    private: bool,
    context: int,
    new: int,
    cached_split: int | None,
    thermal: int,
    radio: int,
    device_class: int,
    factor: float,
) -> None:
    state = _state(
        throughput_mbps=samples, device_memory_layers=memory, private=private,
        context_tokens=context, new_tokens=new, cached_split=cached_split,
        cached_tokens=context if cached_split is not None else 0, thermal_level=thermal,
        radio_state=radio, device_class=device_class,
    )  # fmt: skip
    mask = action_mask(state, SPEC)
    RULE.factor = factor
    action = RULE.act(state, mask)
    assert mask[action]
