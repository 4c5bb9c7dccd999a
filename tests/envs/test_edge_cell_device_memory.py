"""EdgeCell-v0 device memory per class: a budget phone cannot hold the 7B model, a flagship can."""

from __future__ import annotations

import numpy as np
import pytest

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell.thermal import DEVICE_CLASSES
from offload_rl.scenario_facts import memory_layers_for, resolve_scenario
from tests.envs.cell_helpers import cell_scenario


def _placements(device_class: str) -> tuple[set[int], int]:
    """Tiers with a valid action for one phone of ``device_class`` (no memory pressure, no
    private sessions), over the first decisions of an episode with the link up (in an outage
    the mask keeps full-local as the last resort whatever the memory); and ``L``."""
    sc = cell_scenario(n_devices=1, device_mix={device_class: 1.0})
    sc = sc.model_copy(
        update={
            "device": sc.device.model_copy(update={"memory_pressure_share": 0}),
            "workload": sc.workload.model_copy(update={"private_share": 0.0}),
        }
    )
    env = EdgeCellEnv(sc, episode_requests=8)
    env.reset(seed=0)
    valid: set[int] = set()
    for _ in range(8):
        mask = env.action_masks()
        if mask[env.layout.encode(env.layout.cloud_index, 0)]:
            valid |= {t for t in range(mask.size // 2) if mask[2 * t] or mask[2 * t + 1]}
        env.step(env.layout.encode(env.layout.cloud_index, 0))
    return valid, env.layout.n_layers


def test_a_budget_phone_refuses_full_local_and_deep_splits_a_flagship_does_not():
    budget, L = _placements("budget")
    flagship, _ = _placements("flagship")
    assert budget and flagship
    assert L in flagship and set(range(L + 2)) <= flagship  # every split and full-local
    assert L not in budget  # 6 GB of RAM: 4 GB for the model, less than the 4.5 GB it needs
    deepest = max(t for t in budget if t < L)
    assert 0 < deepest < L - 1  # some splits, not the deepest ones
    assert all(t in budget for t in range(deepest + 1))


def test_memory_layers_follow_the_budget():
    facts = resolve_scenario(cell_scenario()).facts
    L = facts.n_layers
    assert memory_layers_for(facts, None) == facts.device_memory_layers == L
    assert memory_layers_for(facts, 1e12) == L
    assert memory_layers_for(facts, 0.0) == 0
    held = [memory_layers_for(facts, b * 1e9) for b in np.linspace(0.0, 6.0, 61)]
    assert held == sorted(held) and held[0] == 0 and held[-1] == L
    assert memory_layers_for(facts, 4.0e9) == 26  # the cell scenario comment's figure


@pytest.mark.parametrize("name", list(DEVICE_CLASSES))
def test_every_class_states_its_ram(name):
    assert DEVICE_CLASSES[name].ram_gb is not None
