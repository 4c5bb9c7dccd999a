"""Heuristic baselines: valid actions always, estimators by hand, greedy in clear-cut cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload_rl.actions import DROP, KEEP, ActionLayout
from offload_rl.errors import ConfigError
from offload_rl.features import DecisionState, FeatureSpec, action_mask
from offload_rl.heuristics import (
    DEFAULT_CACHE_RULE,
    HEURISTIC_NAMES,
    CacheRule,
    GreedyPolicy,
    Policy,
    estimate_throughput,
    make_heuristic,
    parse_heuristic_name,
)
from offload_rl.scenario import ProfilesConfig, Scenario, load_scenario
from offload_rl.scenario_facts import continuation_probability, scenario_facts
from offload_rl.workloads import GeometricMixtureTurns, PmfTurns, default_workload_params
from tests.profiles_for_tests import simple_profile

N_LAYERS = 4
FIXTURES_OK = [HealthCheck.function_scoped_fixture]  # module-scoped fixtures, read-only


@pytest.fixture(scope="module")
def toy_scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The default scenario with round-number profiles: a slow device (1 ms per token and
    layer), a fast edge and cloud (10 us), 1000 bytes of hidden state per token."""
    folder = tmp_path_factory.mktemp("profiles")
    paths = {}
    for tier, per_token in (("device", 1e-3), ("edge", 1e-5), ("cloud", 1e-5)):
        profile = simple_profile(
            n_layers=N_LAYERS,
            prefill_per_token_s=per_token,
            decode_per_token_s=per_token,
            hidden_bytes=1000,
            hardware=tier,
        )
        paths[tier] = folder / f"toy@{tier}.json"
        profile.save(paths[tier])
    profiles = ProfilesConfig(**{k: str(v) for k, v in paths.items()})
    return load_scenario("default").model_copy(update={"profiles": profiles})


@pytest.fixture(scope="module")
def spec(toy_scenario: Scenario) -> FeatureSpec:
    return scenario_facts(toy_scenario).spec


def make_state(**overrides: object) -> DecisionState:
    fields: dict[str, object] = dict(
        throughput_mbps=[10.0] * 8,
        rtt_ms=20.0,
        new_tokens=500,
        context_tokens=0,
        turn=0,
        private=False,
        slo_ttft_s=1.0,
        slo_tpot_s=0.1,
        cached_split=None,
        cached_tokens=0,
        edge_kv_occupancy=0.2,
        edge_load=0.3,
        device_memory_layers=N_LAYERS,
        prev_output_tokens=100,
        since_last_turn_s=0.0,
    )
    fields.update(overrides)
    return DecisionState(**fields)  # type: ignore[arg-type]


# -- import hygiene --------------------------------------------------------------------------


def test_module_imports_no_torch_gymnasium_or_sb3():
    code = (
        "import sys, offload_rl.heuristics\n"
        "heavy = [m for m in ('torch', 'gymnasium', 'stable_baselines3', 'sb3_contrib') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == ""


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, parsed",
    [
        ("greedy", ("greedy", None, None)),
        ("greedy-hmean", ("greedy", "hmean", None)),
        ("greedy-ewma-always", ("greedy", "ewma", "always")),
        ("greedy-last-likely", ("greedy", "last", "likely")),
        ("local-always", ("local", None, "always")),
        ("edge-likely", ("edge", None, "likely")),
        ("random", ("random", None, None)),
    ],
)
def test_names_parse(name, parsed):
    assert parse_heuristic_name(name) == parsed
    assert name in HEURISTIC_NAMES


@pytest.mark.parametrize(
    "name", ["greedy-fast", "local-hmean", "cloud-always", "random-never", "greedy-always-ewma", ""]
)
def test_bad_names_are_config_errors(name, toy_scenario):
    with pytest.raises(ConfigError):
        make_heuristic(name, toy_scenario)


def test_every_listed_name_builds_a_policy(toy_scenario):
    for name in HEURISTIC_NAMES:
        policy = make_heuristic(name, toy_scenario, seed=1)
        assert isinstance(policy, Policy)
        assert policy.name == name


# -- masks -----------------------------------------------------------------------------------

POLICIES_UNDER_TEST = (
    "local",
    "edge",
    "cloud",
    "random",
    "greedy",
    "greedy-last-never",
    "greedy-hmean-likely",
    "edge-likely",
)

states = st.builds(
    make_state,
    throughput_mbps=st.lists(
        st.floats(0.0, 500.0, allow_nan=False) | st.sampled_from([0.0, 0.05, 0.1]),
        min_size=0,
        max_size=10,
    ),
    new_tokens=st.integers(1, 4096),
    context_tokens=st.integers(0, 4096),
    turn=st.integers(0, 80),
    private=st.booleans(),
    slo_ttft_s=st.floats(0.05, 10.0),
    slo_tpot_s=st.floats(0.01, 1.0),
    cached_split=st.none() | st.integers(0, N_LAYERS + 1),
    cached_tokens=st.integers(0, 4096),
    edge_load=st.floats(0.0, 1.0),
    device_memory_layers=st.integers(0, N_LAYERS + 2),
    prev_output_tokens=st.integers(0, 2000),
)


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES_OK)
@given(state=states, policy_index=st.integers(0, len(POLICIES_UNDER_TEST) - 1))
def test_actions_respect_the_environment_mask(toy_scenario, spec, state, policy_index):
    policy = make_heuristic(POLICIES_UNDER_TEST[policy_index], toy_scenario, seed=3)
    policy.reset()
    mask = action_mask(state, spec)
    action = policy.act(state, mask)
    assert isinstance(action, int)
    assert 0 <= action < mask.size and mask[action]


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES_OK)
@given(
    state=states,
    bits=st.lists(st.booleans(), min_size=2 * (N_LAYERS + 2), max_size=2 * (N_LAYERS + 2)),
    policy_index=st.integers(0, len(POLICIES_UNDER_TEST) - 1),
)
def test_actions_respect_any_nonempty_mask(toy_scenario, state, bits, policy_index):
    mask = np.array(bits, dtype=bool)
    if not mask.any():
        mask[len(bits) // 2] = True
    policy = make_heuristic(POLICIES_UNDER_TEST[policy_index], toy_scenario, seed=3)
    action = policy.act(state, mask)
    assert mask[action]


def test_random_is_seeded_and_reset_replays(toy_scenario, spec):
    state = make_state()
    mask = action_mask(state, spec)
    a = make_heuristic("random", toy_scenario, seed=7)
    first = [a.act(state, mask) for _ in range(20)]
    a.reset()
    assert [a.act(state, mask) for _ in range(20)] == first
    b = make_heuristic("random", toy_scenario, seed=7)
    assert [b.act(state, mask) for _ in range(20)] == first
    assert len(set(first)) > 3  # actually random


# -- estimators ------------------------------------------------------------------------------


def test_estimators_by_hand():
    samples = [1.0, 2.0, 4.0]
    assert estimate_throughput(samples, "last") == 4.0
    assert estimate_throughput(samples, "hmean") == pytest.approx(3 / (1 + 0.5 + 0.25))
    # ewma, alpha 0.3 on the newest: 1 -> 0.3*2 + 0.7*1 = 1.3 -> 0.3*4 + 0.7*1.3 = 2.11
    assert estimate_throughput(samples, "ewma") == pytest.approx(2.11)
    assert estimate_throughput([], "hmean") == 0.0
    assert estimate_throughput([5.0], "ewma") == 5.0
    # an outage sample pulls the harmonic mean to (almost) zero, not the arithmetic mean
    assert estimate_throughput([10.0, 0.0], "hmean") < 0.01
    with pytest.raises(ConfigError):
        estimate_throughput(samples, "median")


# -- cache rules -----------------------------------------------------------------------------


def test_continuation_probability_by_hand():
    params = default_workload_params().model_copy(update={"turns": PmfTurns(pmf=[0.5, 0.25, 0.25])})
    # P(N >= 2 | N >= 1) = 0.5, P(N >= 3 | N >= 2) = 0.25 / 0.5, nothing after turn 3
    assert continuation_probability(params)[:3] == pytest.approx([0.5, 0.5, 0.0])
    default = continuation_probability(default_workload_params())
    turns = default_workload_params().turns
    assert isinstance(turns, GeometricMixtureTurns)
    w, m = turns.weights, turns.means
    first = sum(wi * (1 - 1 / mi) for wi, mi in zip(w, m, strict=True)) / sum(w)
    assert default[0] == pytest.approx(first, rel=1e-6)
    assert np.all(np.diff(default[:20]) > 0)  # long chats are more likely to go on


def test_cache_rules(toy_scenario):
    cont = scenario_facts(toy_scenario).continuation
    state = make_state(turn=0)
    assert CacheRule("never", N_LAYERS, cont).keep(state, 0) == DROP
    assert CacheRule("always", N_LAYERS, cont).keep(state, 0) == KEEP
    assert CacheRule("always", N_LAYERS, cont).keep(state, N_LAYERS + 1) == DROP  # cloud
    # default workload: 62% of sessions at their first turn have another one -> keep
    assert CacheRule("likely", N_LAYERS, cont).keep(state, 0) == KEEP
    single_turn = np.array([0.3, 0.6, 0.7])
    assert CacheRule("likely", N_LAYERS, single_turn).keep(make_state(turn=0), 2) == DROP
    assert CacheRule("likely", N_LAYERS, single_turn).keep(make_state(turn=1), 2) == KEEP
    assert CacheRule("likely", N_LAYERS, single_turn).keep(make_state(turn=50), 2) == KEEP


def test_fixed_placements_keep_by_their_rule(toy_scenario, spec):
    state = make_state()
    mask = action_mask(state, spec)
    layout = ActionLayout(N_LAYERS)
    assert layout.decode(make_heuristic("local", toy_scenario).act(state, mask))[0] == N_LAYERS
    assert make_heuristic("edge-never", toy_scenario).act(state, mask) == layout.encode(0, DROP)
    assert make_heuristic("edge-always", toy_scenario).act(state, mask) == layout.encode(0, KEEP)
    cloud = make_heuristic("cloud", toy_scenario).act(state, mask)
    assert cloud == layout.encode(layout.cloud_index, DROP)
    # without a suffix, the default cache rule (the docs say "always"): edge == edge-always
    edge = make_heuristic("edge", toy_scenario)
    assert make_heuristic(f"edge-{DEFAULT_CACHE_RULE}", toy_scenario).name == "edge-always"
    for turn in (0, 1, 5):
        s = make_state(turn=turn, context_tokens=100 * turn)
        assert edge.act(s, action_mask(s, spec)) == layout.encode(0, KEEP)


def test_fixed_placement_falls_back_to_the_nearest_valid(toy_scenario, spec):
    layout = ActionLayout(N_LAYERS)
    private = make_state(private=True)  # no edge, no cloud: k >= k_priv
    action = make_heuristic("edge", toy_scenario).act(private, action_mask(private, spec))
    assert layout.decode(action)[0] == spec.k_priv
    pressure = make_state(device_memory_layers=2)  # k <= 2: the cloud (L + 1) is nearest
    action = make_heuristic("local", toy_scenario).act(pressure, action_mask(pressure, spec))
    assert layout.decode(action)[0] == layout.cloud_index
    outage = make_state(throughput_mbps=[5.0, 0.0])
    action = make_heuristic("cloud", toy_scenario).act(outage, action_mask(outage, spec))
    assert layout.decode(action)[0] == N_LAYERS


# -- greedy ----------------------------------------------------------------------------------


def greedy_tier(policy: GreedyPolicy, state: DecisionState, spec: FeatureSpec) -> int:
    return ActionLayout(N_LAYERS).decode(policy.act(state, action_mask(state, spec)))[0]


@pytest.mark.parametrize("estimator", ["last", "hmean", "ewma"])
def test_greedy_clear_cut_cases(toy_scenario, spec, estimator):
    policy = make_heuristic(f"greedy-{estimator}", toy_scenario)
    assert isinstance(policy, GreedyPolicy)
    # a fast link and a slow device: the edge (token ids up, fast layers) beats running locally
    assert greedy_tier(policy, make_state(throughput_mbps=[100.0] * 8), spec) == 0
    # an outage leaves only the device
    assert greedy_tier(policy, make_state(throughput_mbps=[0.01] * 8), spec) == N_LAYERS
    # a private request must keep k_priv = 2 layers local. 2000 prompt tokens, 10 output tokens:
    # locally 8 s of prefill; split at 2, 4 s + 2 MB of hidden states up, 0.16 s at 100 Mbps
    # but 80 s at 0.2 Mbps, where everything stays local
    private = {"private": True, "new_tokens": 2000, "prev_output_tokens": 10}
    fast = make_state(throughput_mbps=[100.0] * 8, **private)
    slow = make_state(throughput_mbps=[0.2] * 8, **private)
    assert greedy_tier(policy, fast, spec) == spec.k_priv
    assert greedy_tier(policy, slow, spec) == N_LAYERS


def test_greedy_prefers_the_placement_that_holds_the_cache(toy_scenario, spec):
    policy = make_heuristic("greedy", toy_scenario)
    assert isinstance(policy, GreedyPolicy)
    # a private follow-up with a long context cached at k = 3: reusing it beats k = 2
    state = make_state(
        private=True,
        throughput_mbps=[100.0] * 8,
        new_tokens=20,
        context_tokens=3000,
        turn=3,
        cached_split=3,
        cached_tokens=3000,
    )
    rewards = policy.predict_rewards(state, action_mask(state, spec))
    assert np.argmax(rewards) == 3
    assert rewards[0] == -np.inf and rewards[N_LAYERS + 1] == -np.inf  # masked


def test_greedy_output_length_guess(toy_scenario):
    policy = make_heuristic("greedy", toy_scenario)
    assert isinstance(policy, GreedyPolicy)
    assert policy.predicted_output_tokens(make_state(prev_output_tokens=321)) == 321
    mean = policy.predicted_output_tokens(make_state(prev_output_tokens=0))
    assert 150 < mean < 300  # Azure conv outputs: mean 211 tokens
