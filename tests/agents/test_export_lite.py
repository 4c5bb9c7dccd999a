"""A policy trained on a scenario with a device-lite model exports with the lite tier in its
spec and mask layout, and the service serves it with the lite tier."""

from __future__ import annotations

import json

import onnx
import pytest

from agents.export import export_policy
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import scenario_facts
from serving.policy_file import read_metadata
from serving.policy_runtime import DecisionRuntime
from tests.decision_states import make_state
from tests.tiny_model import train_tiny_run

pytest.importorskip("sb3_contrib")


def test_exported_lite_policy_carries_the_lite_tier(tmp_path):
    run = train_tiny_run(tmp_path / "run", timesteps=64, scenario_name="lite")
    out = tmp_path / "lite.onnx"
    export_policy(run, out, parity=200)
    spec = scenario_facts(load_scenario("lite")).spec
    meta = read_metadata(onnx.load(str(out)))
    assert int(meta["lite_memory_layers"]) == spec.lite_memory_layers == 8
    layout = json.loads(meta["mask_layout"])
    assert layout["lite_index"] == spec.n_layers + 2 and layout["n_actions"] == 62
    runtime = DecisionRuntime("lite", policy_path=str(out))
    assert runtime.spec == spec
    d = runtime.decide(make_state(0.0, 28))
    assert d.tier in ("device", "lite") and not d.fallback  # the outage mask, lite included
    assert runtime.layout.lite_index == 30
