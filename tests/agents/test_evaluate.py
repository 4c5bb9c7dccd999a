"""``offload-rl evaluate``: files, identical TensorBoard tags, contract keys, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.evaluate import build_episodes, mean_ci95, t_quantile_975
from agents.oracle import OraclePolicy
from agents.policies import (
    is_deployable,
    register_policy_loader,
    resolve_policy,
    valid_policy_names,
)
from offload_rl.cli import main
from offload_rl.errors import ConfigError
from offload_rl.heuristics import Policy, make_heuristic
from offload_rl.model_shapes import get_shape
from offload_rl.roofline import analytical_profile, get_hardware
from offload_rl.scenario import Scenario, load_scenario
from offload_rl.scenario_facts import resolve_scenario

POLICIES = "local,edge,greedy,oracle,random"
SMALL = ["--episodes", "2", "--requests", "24", "--seed", "5", "--no-progress"]


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small scenario: Qwen2.5-0.5B roofline profiles, two synthetic families, 2 traces each."""
    folder = tmp_path_factory.mktemp("scenario")
    shape = get_shape("qwen2.5-0.5b")
    profiles = {}
    for tier, hw in (("device", "sd8gen3-phone"), ("edge", "l4"), ("cloud", "h100")):
        path = folder / f"{tier}.json"
        analytical_profile(shape, get_hardware(hw), date="2026-01-01").save(path)
        profiles[tier] = path.name
    data = {
        "name": "eval-test",
        "profiles": profiles,
        "network": {
            "traces": [
                {"source": "synthetic:wifi", "direction": "downlink", "uplink_scale": 0.5},
                {"source": "synthetic:norway-hsdpa-3g", "uplink_scale": 0.46},
            ],
            "synthetic_traces": 2,
            "synthetic_duration_s": 300,
        },
        "episode": {"requests": 24},
    }
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def scenario(scenario_file: Path) -> Scenario:
    return load_scenario(scenario_file)


def run_cli(scenario_file: Path, out: Path, *extra: str, policies: str = POLICIES) -> int:
    args = ["evaluate", "--policies", policies, "--scenario", str(scenario_file)]
    return main([*args, *SMALL, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run_one(scenario_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "one"
    assert run_cli(scenario_file, out) == 0
    return out


def test_writes_every_output(run_one: Path):
    for name in (
        "metrics.json",
        "metrics.csv",
        "run.json",
        "report.md",
        "latency_cdf.png",
        "split_vs_throughput.png",
        "family_reward.png",
    ):
        assert (run_one / name).is_file(), name
        assert (run_one / name).stat().st_size > 0
    for policy in POLICIES.split(","):
        assert list((run_one / "tb" / policy).glob("events.out.tfevents.*")), policy
    report = (run_one / "report.md").read_text()
    assert "![" in report and "latency_cdf.png" in report
    assert "no (hindsight)" in report  # the oracle is labelled not deployable


def test_metrics_contract(run_one: Path):
    metrics = json.loads((run_one / "metrics.json").read_text())
    assert set(metrics["policies"]) == set(POLICIES.split(","))
    for policy, m in metrics["policies"].items():
        assert isinstance(m["mean_reward"], float)
        assert m["mean_latency_s"] > 0
        assert m["n_requests"] == 2 * 2 * 24  # 2 families x 2 episodes x 24 requests
        assert m["deployable"] is (policy != "oracle")
        assert m["mean_reward_ci95_low"] <= m["mean_reward"] <= m["mean_reward_ci95_high"]
        assert m["latency_p50_s"] <= m["latency_p95_s"] <= m["latency_p99_s"]
        assert sum(m["tier_share"].values()) == pytest.approx(1.0)
        assert sum(m["split_share"].values()) == pytest.approx(1.0)
        assert 0.0 <= m["slo_violation_rate"] <= 1.0
    assert set(metrics["families"]) == {"wifi", "norway-hsdpa-3g"}
    for family in metrics["families"].values():
        for policy in POLICIES.split(","):
            assert isinstance(family[policy]["mean_reward"], float)
            assert family[policy]["n_requests"] == 2 * 24
    args = metrics["args"]
    assert args["policies"] == POLICIES.split(",")
    assert args["episodes"] == 2 and args["seed"] == 5 and args["requests"] == 24
    assert metrics["policies"]["local"]["tier_share"]["device"] > 0.5
    best = metrics["best_deployable_policy"]
    assert best in POLICIES.split(",") and best != "oracle"
    assert metrics["policies"][best]["paired_diff"] == 0.0
    assert metrics["policies"]["oracle"]["paired_diff"] >= 0.0
    header = (run_one / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("scope,family,policy,deployable,mean_reward")


def test_oracle_beats_every_policy_on_the_same_episodes(run_one: Path):
    metrics = json.loads((run_one / "metrics.json").read_text())
    scopes = [metrics["policies"], *metrics["families"].values()]
    for scope in scopes:
        oracle = scope["oracle"]["mean_reward"]
        for policy, m in scope.items():
            assert oracle >= m["mean_reward"] - 1e-12, policy


def scalar_tags(run: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_every_tensorboard_run_has_the_same_scalar_tags(run_one: Path):
    runs = {p: scalar_tags(run_one / "tb" / p) for p in POLICIES.split(",")}
    reference = runs["local"]
    assert "eval/mean_reward" in reference
    assert "eval/latency_p95_s" in reference
    assert "family/wifi/mean_reward" in reference
    assert reference["episode/mean_reward"] == [0, 1, 2, 3]  # episode index as step
    for policy, tags in runs.items():
        assert tags == reference, policy


def test_same_command_twice_and_with_two_workers_gives_identical_metrics(
    scenario_file: Path, run_one: Path, tmp_path: Path
):
    assert run_cli(scenario_file, tmp_path / "again") == 0
    assert run_cli(scenario_file, tmp_path / "parallel", "--workers", "2") == 0
    first = (run_one / "metrics.json").read_text()
    assert (tmp_path / "again" / "metrics.json").read_text() == first
    assert (tmp_path / "parallel" / "metrics.json").read_text() == first
    assert json.loads((tmp_path / "parallel" / "run.json").read_text())["workers"] == 2


# -- episodes and statistics -----------------------------------------------------------------


def test_episodes_are_pinned_per_family_and_stable(scenario: Scenario):
    resolved = resolve_scenario(scenario)
    eps = build_episodes(resolved, 3, seed=1)
    assert [e.index for e in eps] == list(range(6))
    assert [e.family for e in eps] == ["norway-hsdpa-3g"] * 3 + ["wifi"] * 3
    assert eps == build_episodes(resolved, 3, seed=1)
    assert eps != build_episodes(resolved, 3, seed=2)
    # more episodes per family keep the first ones of each family
    more = build_episodes(resolved, 4, seed=1)
    assert [e.offset_s for e in more if e.family == "wifi"][:3] == [e.offset_s for e in eps[3:]]
    for e in eps:
        assert resolved.uplinks[e.trace].family == e.family
        assert 0 <= e.offset_s <= resolved.uplinks[e.trace].duration_s


def test_mean_ci95_by_hand():
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 * 1.0 / np.sqrt(3))
    assert np.isnan(mean_ci95([4.0])[1])
    assert t_quantile_975(1000) == pytest.approx(1.962, abs=1e-3)


# -- policy specs ----------------------------------------------------------------------------


def test_policy_specs(scenario: Scenario):
    assert isinstance(resolve_policy("oracle", scenario), OraclePolicy)
    assert not is_deployable(resolve_policy("oracle", scenario))
    assert is_deployable(resolve_policy("greedy-ewma-likely", scenario))
    with pytest.raises(ConfigError, match=r"valid names: .*greedy"):
        resolve_policy("neurosurgeon", scenario)
    with pytest.raises(ConfigError, match=r"no loader for foo: bar\.bin \(known prefixes: "):
        resolve_policy("foo:bar.bin", scenario)
    assert "sb3:PATH" in valid_policy_names() and "onnx:PATH" in valid_policy_names()


def test_known_prefix_without_an_importable_loader(scenario: Scenario, monkeypatch):
    import agents.policies as policies

    monkeypatch.setitem(policies.BUILTIN_LOADERS, "onnx", ("no_such_module_here", "load"))
    monkeypatch.setattr(policies, "_LOADERS", {})
    with pytest.raises(ConfigError, match=r"no loader for onnx: model\.onnx"):
        resolve_policy("onnx:model.onnx", scenario)


def load_edge_policy(path: str, scenario: Scenario) -> Policy:
    """A stand-in for a trained-agent loader (module level: picklable)."""
    policy = make_heuristic("edge", scenario)
    policy.name = f"fake:{path}"
    return policy


def test_registered_loader_is_used(scenario_file: Path, scenario: Scenario, tmp_path: Path):
    register_policy_loader("fake", load_edge_policy)
    assert resolve_policy("fake:agent.zip", scenario).name == "fake:agent.zip"
    assert run_cli(scenario_file, tmp_path / "out", policies="edge,fake:agent.zip") == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    edge, fake = metrics["policies"]["edge"], metrics["policies"]["fake:agent.zip"]
    assert fake["mean_reward"] == edge["mean_reward"]
    assert (tmp_path / "out" / "tb" / "fake_agent.zip").is_dir()


def test_user_errors_exit_2(scenario_file: Path, tmp_path: Path, capsys):
    assert run_cli(scenario_file, tmp_path / "x", policies="local,bogus") == 2
    assert "unknown policy 'bogus'" in capsys.readouterr().err
    assert run_cli(scenario_file, tmp_path / "x", policies="foo:nowhere.onnx") == 2
    assert "no loader for foo: nowhere.onnx" in capsys.readouterr().err
    assert run_cli(scenario_file, tmp_path / "x", "--traces", str(tmp_path / "missing")) == 2
    assert "does not exist" in capsys.readouterr().err
