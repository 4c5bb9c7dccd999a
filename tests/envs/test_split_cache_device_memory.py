"""SplitCache-v0 on a phone that cannot hold the model: no full-local run, in an outage too."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.split_cache import SplitCacheEnv
from offload_rl.workloads import Request
from tests.envs.test_split_cache import FixedWorkload

OUTAGE = (20.0, 80.0)  # seconds of the trace with no capacity at all


def _scenario(tmp_path: Path, memory_layers: int | None) -> Path:
    trace = tmp_path / "outage"
    # cooked: the rate on a line holds from the line before it to its own time
    trace.write_text(f"0 5\n{OUTAGE[0]:g} 5\n{OUTAGE[1]:g} 0\n600 5\n")
    memory = "" if memory_layers is None else f", memory_layers: {memory_layers}"
    path = tmp_path / f"small-memory-{memory_layers}.yaml"
    path.write_text(f"""
name: small-memory
profiles: {{device: qwen2.5-0.5b@sd8gen3-phone, edge: qwen2.5-0.5b@l4, cloud: qwen2.5-0.5b@h100}}
network:
  traces: [{trace.name}]
  throughput_noise: 0.0
workload: {{private_share: 0.0}}
device: {{memory_pressure_share: 0.0{memory}}}
edge:
  load: {{kind: constant, calm_util: 0.0}}
episode: {{requests: 2}}
""")
    return path


def _env_at_outage(tmp_path: Path, memory_layers: int | None) -> SplitCacheEnv:
    env = SplitCacheEnv(str(_scenario(tmp_path, memory_layers)))
    arrival = OUTAGE[0] + 10.0  # ten seconds into the outage: the device has seen it
    env.workload = FixedWorkload([Request(arrival, 0, 0, 200, 0, 50, None)])
    env.reset(seed=0, options={"trace": 0, "offset_s": 0.0, "workload_seed": 0})
    assert env.state.throughput_mbps[-1] == 0.0
    return env


def _offered(env: SplitCacheEnv) -> set[int]:
    return {env.layout.decode(int(a))[0] for a in np.flatnonzero(env.action_masks())}


def test_a_phone_holding_8_layers_gets_its_deepest_split_in_an_outage_and_waits_for_the_link(
    tmp_path,
):
    env = _env_at_outage(tmp_path, memory_layers=8)
    assert _offered(env) == {8}  # not full local: the phone cannot hold the model
    arrival = env.current_request.arrival_s
    _, _, _, _, info = env.step(env.layout.encode(8, 0))
    assert not info["invalid_action"] and info["split"] == 8
    assert info["ttft_s"] > OUTAGE[1] - arrival  # the activations wait for the link
    # full local sent anyway is invalid: replaced by the split, with the penalty
    env = _env_at_outage(tmp_path, memory_layers=8)
    _, _, _, _, info = env.step(env.layout.encode(env.feature_spec.n_layers, 0))
    assert info["invalid_action"] and info["split"] == 8


def test_a_phone_holding_the_model_still_runs_it_locally_in_an_outage(tmp_path):
    env = _env_at_outage(tmp_path, memory_layers=None)
    assert _offered(env) == {env.feature_spec.n_layers}
