"""``make demo``'s cell part: the simulated devices it sends to ``/v2/decide`` are valid v2
bodies of distinct devices, and its cell table reads the evaluation's metrics."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from serving.client import DeviceState, device_state_to_json
from serving.schemas_v2 import DeviceDecisionRequest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "demo.py"


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("offload_rl_demo", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_simulated_devices_are_distinct_valid_v2_bodies():
    devices = _demo().simulated_devices(3)
    assert len(devices) == 3 and all(isinstance(d, DeviceState) for d in devices)
    assert len({(d.device_class, d.thermal_level) for d in devices}) == 3
    for d in devices:
        body = DeviceDecisionRequest.model_validate_json(json.dumps(device_state_to_json(d)))
        assert body.device_class == d.device_class and body.edge_kv_occupancy is None


def test_the_cell_table_has_a_row_per_load_and_policy(tmp_path):
    figures = {"mean_reward": -2.5, "latency_p95_s": 80.0, "slo_violation_rate": 0.2,
               "energy_j_per_decision": 40.0, "tier_share": {"edge": 0.6}}  # fmt: skip
    loads = {"1": {"shipped": figures, "greedy": figures}, "2": {"shipped": figures}}
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"loads": loads}))
    table = _demo().cell_table(path)
    assert table.row_count == 3
    assert list(table.columns[1].cells) == ["shipped", "greedy", "shipped"]
    assert list(table.columns[6].cells) == ["60%"] * 3
