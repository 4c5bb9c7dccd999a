"""The device-lite tier (scenario ``lite:``): layout, mask, cost, reward, spec, heuristics.

Without a lite model nothing changes (the fingerprints in ``tests/envs/test_lite_envs.py``
and ``test_edge_cell_fingerprint.py`` pin that); with one, the tier is one more placement.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.actions import ActionLayout
from offload_rl.cli import main
from offload_rl.cost_model import EnergyModel, LinkModel, lite_cost, request_cost, tier_of
from offload_rl.errors import ConfigError
from offload_rl.features import DecisionState, FeatureSpec, action_mask, action_masks
from offload_rl.heuristics import (
    HEURISTIC_NAMES,
    LITE_ON_OUTAGE,
    LiteOnOutagePolicy,
    make_heuristic,
)
from offload_rl.reward import score_request
from offload_rl.scenario import load_scenario, scenario_from_dict
from offload_rl.scenario_facts import scenario_facts
from offload_rl.traces import Trace
from tests.decision_states import make_state

LITE = load_scenario("lite")
FACTS = scenario_facts(LITE)
L = FACTS.n_layers


def state(mbps: float, k_mem: int = L, private: bool = False, **kw: object) -> DecisionState:
    return make_state(mbps, k_mem, private=private, **kw)


def test_layout_gains_the_lite_tier_only_when_configured():
    plain, lite = ActionLayout(L), ActionLayout(L, lite=True)
    assert plain.n_actions == 2 * (L + 2) and plain.lite_index is None
    assert lite.n_actions == 2 * (L + 3) and lite.lite_index == L + 2
    assert lite.meanings()[: plain.n_actions] == plain.meanings()
    assert lite.meaning(lite.encode(L + 2, 0)) == "lite, drop"
    assert tier_of(L + 2, L) == "lite"
    assert FACTS.layout == lite and scenario_facts(load_scenario("default")).layout.lite is False


def test_lite_scenario_facts():
    # Qwen2.5-0.5B's decoder weights need 8 of Qwen2.5-1.5B's decoder layers' memory
    lite, main = FACTS.tiers.lite, FACTS.tiers.device
    assert lite is not None
    k = FACTS.spec.lite_memory_layers
    assert main.weight_bytes[k] >= lite.weight_bytes[-1] > main.weight_bytes[k - 1]
    assert FACTS.quality_scores == (0.609, 0.475)
    assert FACTS.quality_of(L + 2) == 0.475 and FACTS.quality_of(L) == 0.609
    assert FACTS.reward_rule.lite_penalty == pytest.approx(5.0 * (0.609 - 0.475))


@settings(max_examples=200, deadline=None)
@given(
    mbps=st.sampled_from([0.0, 0.05, 0.5, 20.0]),
    k_mem=st.integers(0, L),
    private=st.booleans(),
    lite_layers=st.integers(1, L),
)
def test_mask_lite_valid_whenever_the_device_holds_it(mbps, k_mem, private, lite_layers):
    spec = FeatureSpec(n_layers=L, lite_memory_layers=lite_layers)
    plain = FeatureSpec(n_layers=L)
    s = state(mbps, k_mem, private)
    mask, base = action_mask(s, spec), action_mask(s, plain)
    lite_valid = k_mem >= lite_layers
    assert mask[2 * (L + 2)] == lite_valid  # outage or not, private or not
    assert not mask[2 * (L + 2) + 1]  # never lite + keep
    main = mask[: 2 * (L + 2)]
    if not lite_valid:
        assert (main == base).all()  # exactly as without a lite model
    else:  # the same, except that the deepest split held is no longer the forced last resort
        forced = set(base.nonzero()[0].tolist()) == {2 * k_mem, 2 * k_mem + 1} and k_mem < L
        assert (main == base).all() or (forced and not main.any())
    assert mask.any()
    rows = action_masks([s] * 40, spec)  # the vector path gives the same rows
    assert (rows == mask).all()


def test_outage_mask_is_never_left_with_only_full_local():
    spec = FACTS.spec
    m = action_mask(state(0.0), spec)
    assert {a for a in range(len(m)) if m[a]} == {2 * L, 2 * L + 1, 2 * (L + 2)}


def test_spec_round_trip_records_the_lite_tier():
    spec = FACTS.spec
    d = spec.to_dict()
    assert d["lite_memory_layers"] == spec.lite_memory_layers > 0
    assert FeatureSpec.from_dict(d) == spec
    assert FeatureSpec.from_dict({k: str(v) for k, v in d.items()}) == spec  # ONNX strings
    plain = FeatureSpec(n_layers=L)
    assert "lite_memory_layers" not in plain.to_dict()
    assert FeatureSpec.from_dict(plain.to_dict()) == plain
    with pytest.raises(ValueError, match="lite_memory_layers"):
        FeatureSpec.from_dict({**d, "lite_memory_layers": "-1"})


def test_lite_cost_is_the_lite_profile_fully_local():
    tiers, energy = FACTS.tiers, EnergyModel()
    lite = tiers.lite
    assert lite is not None
    link = LinkModel(Trace.constant(1.0), Trace.constant(1.0), 0.02, 0.03, 1e9)
    cost = request_cost(L + 2, 0.0, 100, 300, 300, 50, tiers, link, energy)
    T = 400  # the lite model prefills the whole context: cached tokens do not apply
    ttft = lite.embed_prefill_s(T) + lite.layers_prefill_s(0, lite.n_layers, T, 0)
    ttft += lite.head_first_token_s()
    decode = lite.layers_decode_s(0, lite.n_layers, 49, T) + lite.embed_head_decode_s(49, T)
    assert cost.lite and cost.prefill_tokens == T and cost.upload_bytes == 0.0
    assert cost.ttft_s == pytest.approx(ttft, rel=1e-12)
    assert cost.latency_s == pytest.approx(ttft + decode, rel=1e-12)
    assert cost.energy_j == pytest.approx(energy.compute_w * (ttft + decode), rel=1e-12)
    assert lite_cost(tiers, 100, 300, 50, energy).latency_s == cost.latency_s
    main = request_cost(L, 0.0, 100, 300, 0, 50, tiers, link, energy)
    assert not main.lite and main.latency_s > cost.latency_s  # the small model is faster
    no_lite = scenario_facts(load_scenario("default")).tiers
    with pytest.raises(ValueError, match="lite"):
        lite_cost(no_lite, 100, 300, 50, energy)


def test_quality_term_is_weight_times_score_gap():
    rule = FACTS.reward_rule
    link = LinkModel(Trace.constant(1.0), Trace.constant(1.0), 0.02, 0.03, 1e9)
    cost = request_cost(L + 2, 0.0, 100, 0, 0, 50, FACTS.tiers, link, FACTS.energy)
    with_q = score_request(cost, 50, 1.0, 0.1, rule).reward
    cost.lite = False
    without = score_request(cost, 50, 1.0, 0.1, rule).reward
    assert without - with_q == pytest.approx(5.0 * (0.609 - 0.475), rel=1e-12)
    plain = scenario_facts(load_scenario("default")).reward_rule
    assert plain.w_quality == plain.quality_gap == plain.lite_penalty == 0.0


def test_lite_config_errors_name_the_key():
    data = LITE.model_dump(mode="json", exclude={"base_dir"})
    bad = {**data, "lite": {**data["lite"], "quality": 0.7}}
    with pytest.raises(ConfigError, match="lite"):
        scenario_from_dict(bad, "x.yaml")
    with pytest.raises(ConfigError, match=r"lite\.extra"):
        scenario_from_dict({**data, "lite": {**data["lite"], "extra": 1}}, "x.yaml")
    big = {**data, "lite": {**data["lite"], "profile": "llama-3.2-3b@sd8gen3-phone"}}
    with pytest.raises(ConfigError, match=r"lite.profile: .*exceed"):
        scenario_facts(scenario_from_dict(big, "x.yaml"))


def test_greedy_prices_the_lite_tier():
    greedy = make_heuristic("greedy", LITE)
    s = state(20.0)
    m = action_mask(s, FACTS.spec)
    rewards = greedy.predict_rewards(s, m)  # type: ignore[attr-defined]
    assert rewards.shape == (L + 3,)
    cost = greedy.predict_costs(s, m)[L + 2]  # type: ignore[attr-defined]
    o = greedy.predicted_output_tokens(s)  # type: ignore[attr-defined]
    expected = score_request(cost, o, 1.0, 0.1, FACTS.reward_rule).reward
    assert rewards[L + 2] == expected and cost.lite


def test_lite_on_outage_rule():
    assert LITE_ON_OUTAGE in HEURISTIC_NAMES
    policy = make_heuristic(LITE_ON_OUTAGE, LITE)
    spec = FACTS.spec
    lite_action = 2 * (L + 2)
    out = state(0.0)
    assert policy.act(out, action_mask(out, spec)) == lite_action  # the link is down
    good = state(50.0)
    assert policy.act(good, action_mask(good, spec)) >> 1 <= L + 1  # greedy's main model
    small = state(50.0, k_mem=FACTS.spec.lite_memory_layers - 1)  # cannot hold the lite model
    assert policy.act(small, action_mask(small, spec)) >> 1 != L + 2
    # the outage rule alone (no latency rule): lite on a dead link only
    outage_only = LiteOnOutagePolicy("x", LITE, factor=math.inf)
    assert outage_only.act(out, action_mask(out, spec)) == lite_action
    slow = state(0.2, private=True)  # link up but slow, private: the latency rule decides
    assert policy.act(slow, action_mask(slow, spec)) == lite_action
    assert outage_only.act(slow, action_mask(slow, spec)) != lite_action
    # no lite model: it is greedy
    plain = load_scenario("default")
    pl, gr = make_heuristic(LITE_ON_OUTAGE, plain), make_heuristic("greedy", plain)
    pspec = scenario_facts(plain).spec
    for s in (state(0.0, k_mem=24), state(5.0, k_mem=24)):
        assert pl.act(s, action_mask(s, pspec)) == gr.act(s, action_mask(s, pspec))


def test_scenario_show_names_the_lite_model(capsys):
    assert main(["scenario", "show", "lite", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["lite"]["profile"] == "qwen2.5-0.5b@sd8gen3-phone"
    assert shown["lite"]["memory_layers"] == 8
    assert main(["scenario", "show", "default", "--json"]) == 0
    assert "lite" not in json.loads(capsys.readouterr().out)
