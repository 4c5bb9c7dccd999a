"""A scenario whose workload names a field mapping: loaded by its facts, replayed by the env."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from envs.split_cache import SplitCacheEnv
from offload_rl.errors import ConfigError
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import scenario_facts
from offload_rl.workloads import RecordedWorkload, load_field_mapping

LOG = "when,prompt,completion,conv\n" + "".join(
    f"2024-03-01T10:00:{i:02d}Z,{100 + 10 * i},{20 + i},c{i % 3}\n" for i in range(12)
)
MAPPING = (
    "time: {field: when, unit: iso8601}\ninput_tokens: prompt\noutput_tokens: completion\n"
    "session_id: conv\ninput_includes_history: false\n"
)


def _scenario(tmp_path: Path, workload: dict[str, object]) -> Path:
    text = (importlib.resources.files("offload_rl") / "data/scenarios/default.yaml").read_text()
    data = yaml.safe_load(text)
    data["workload"] = {**data.get("workload", {}), **workload}
    (tmp_path / "gateway.csv").write_text(LOG)
    (tmp_path / "gateway.yaml").write_text(MAPPING)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mapping", ["gateway.yaml", yaml.safe_load(MAPPING)])
def test_scenario_mapping_from_a_file_or_inline(tmp_path: Path, mapping: object) -> None:
    path = _scenario(tmp_path, {"source": "gateway.csv", "mapping": mapping})
    workload = scenario_facts(load_scenario(path)).workload()
    assert isinstance(workload, RecordedWorkload) and workload.kind == "mapped"
    requests = workload.all_requests()
    assert [r.session_id for r in requests[:4]] == [0, 1, 2, 0]
    assert requests[3].context_tokens == 100 + 20  # the input holds no history: all is new


def test_environment_replays_the_mapped_log(tmp_path: Path) -> None:
    path = _scenario(tmp_path, {"source": "gateway.csv", "mapping": "gateway.yaml"})
    env = SplitCacheEnv(load_scenario(path), episode_requests=6)
    env.reset(seed=0, options={"workload_seed": 3})
    seen = [env.current_request]
    for _ in range(5):
        env.step(0)
        seen.append(env.current_request)
    mapping = load_field_mapping(tmp_path / "gateway.yaml")
    log = RecordedWorkload.from_mapping(tmp_path / "gateway.csv", mapping, env.facts.token_scaling)
    assert seen == log.sample(np.random.default_rng(3), 7)[:6]
    assert {r.output_tokens for r in seen} <= {20 + i for i in range(12)}


def test_scenario_mapping_errors_name_the_key(tmp_path: Path) -> None:
    path = _scenario(tmp_path, {"mapping": "gateway.yaml"})
    with pytest.raises(ConfigError, match=r"workload: .*mapping: reads a recorded request log"):
        load_scenario(path)
    path = _scenario(tmp_path, {"source": "gateway.csv", "mapping": "absent.yaml"})
    with pytest.raises(ConfigError, match=r"workload.mapping: .*absent.yaml: .*not found"):
        scenario_facts(load_scenario(path)).workload()
