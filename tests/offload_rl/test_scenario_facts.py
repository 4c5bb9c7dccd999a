"""A scenario's derived facts: computed once, from the scenario's own keys, errors by key."""

from __future__ import annotations

import pytest

from offload_rl.errors import ConfigError
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import resolve_scenario, scenario_facts


def test_facts_follow_the_scenario_keys():
    base = load_scenario("default")
    sc = base.model_copy(
        update={
            "network": base.network.model_copy(
                update={"rtt_edge_ms": 35.0, "throughput_history": 5, "backhaul_gbps": 1.0}
            ),
            "workload": base.workload.model_copy(
                update={"token_scale": 0.5, "max_output_tokens": 64, "k_priv": 3}
            ),
            "device": base.device.model_copy(update={"memory_layers": 7, "compute_w": 3.0}),
            "edge": base.edge.model_copy(update={"usd_per_hour": 7.2}),
        }
    )
    f = scenario_facts(sc)
    assert (f.spec.history, f.spec.k_priv, f.spec.n_layers) == (5, 3, f.tiers.n_layers)
    assert f.rtt_edge_s == pytest.approx(0.035)
    assert f.backhaul_bytes_per_s == pytest.approx(1.25e8)
    assert (f.token_scaling.scale, f.token_scaling.max_output_tokens) == (0.5, 64)
    assert f.device_memory_layers == 7
    assert f.energy.compute_w == 3.0
    assert f.reward_rule.usd_per_edge_s == pytest.approx(0.002)
    assert 1.0 <= f.mean_output_tokens <= 64.0
    assert f.slo_targets == tuple((c.ttft_s, c.tpot_s) for c in sc.workload.slo_classes)
    # the default has no memory limit: the device holds every layer
    assert scenario_facts(base).device_memory_layers == scenario_facts(base).n_layers


def test_facts_are_resolved_once_per_scenario():
    sc = load_scenario("default")
    assert scenario_facts(sc) is scenario_facts(load_scenario("default"))
    other = sc.model_copy(update={"reward": sc.reward.model_copy(update={"w_energy": 0.5})})
    assert scenario_facts(other) is not scenario_facts(sc)
    assert resolve_scenario(sc).facts is scenario_facts(sc)


def test_errors_name_the_key():
    sc = load_scenario("default")
    bad = sc.model_copy(update={"profiles": sc.profiles.model_copy(update={"edge": "nope@l4"})})
    with pytest.raises(ConfigError, match=r"^profiles\.edge: "):
        scenario_facts(bad)
    deep = sc.model_copy(update={"workload": sc.workload.model_copy(update={"k_priv": 99})})
    with pytest.raises(ConfigError, match=r"^workload\.k_priv: 99 exceeds"):
        scenario_facts(deep)


def test_a_scenario_can_name_the_correlated_default_workload():
    """``default-correlated`` is a name like ``default``, not a path next to the scenario."""
    sc = load_scenario("default")
    named = sc.model_copy(
        update={"workload": sc.workload.model_copy(update={"source": "default-correlated"})}
    )
    facts = scenario_facts(named)
    assert facts.workload_params.correlation is not None
    assert facts.workload().name == "default-correlated"
    assert scenario_facts(sc).workload_params.correlation is None
