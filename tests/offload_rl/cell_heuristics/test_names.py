"""The cell heuristics by name: what resolves where, and each one runs in a small cell."""

from __future__ import annotations

import numpy as np
import pytest

from agents.evaluation.cell_runner import evaluate_cell
from agents.policies import resolve_policy, valid_policy_names
from offload_rl.cell_heuristics import CELL_HEURISTIC_NAMES
from offload_rl.cell_heuristics.policies import (
    CellGreedy,
    GreedyExternality,
    LyapunovPolicy,
    ThermalMPC,
)
from offload_rl.errors import ConfigError
from offload_rl.heuristics import GreedyPolicy
from offload_rl.scenario import load_scenario
from tests.envs.cell_helpers import cell_scenario


def test_greedy_is_the_cell_greedy_in_a_cell_and_the_single_device_one_elsewhere():
    cell, default = load_scenario("cell"), load_scenario("default")
    assert type(resolve_policy("greedy", cell)) is CellGreedy
    assert isinstance(resolve_policy("greedy", default), GreedyPolicy)
    assert isinstance(resolve_policy("greedy-ewma-always", cell), GreedyPolicy)
    assert isinstance(resolve_policy("greedy-externality+gdsf", cell), GreedyExternality)
    assert isinstance(resolve_policy("thermal-mpc", cell), ThermalMPC)
    assert isinstance(resolve_policy("lyapunov+lru", cell), LyapunovPolicy)
    assert resolve_policy("greedy+gdsf", cell).cache.name == "gdsf"  # type: ignore[union-attr]
    assert set(CELL_HEURISTIC_NAMES) <= set(valid_policy_names())
    for name in ("greedy-externality", "thermal-mpc+gdsf", "greedy+lru"):
        with pytest.raises(ConfigError, match="cell"):
            resolve_policy(name, default)


def test_every_cell_heuristic_runs_in_a_small_cell():
    sc = cell_scenario(n_devices=3)
    sc = sc.model_copy(update={"episode": sc.episode.model_copy(update={"requests": 20})})
    result = evaluate_cell(list(CELL_HEURISTIC_NAMES), sc, episodes_per_family=1, loads=(2.0,))
    L = result.n_layers
    for name in CELL_HEURISTIC_NAMES:
        records = result.records[name]
        assert len(records) == len(result.episodes)
        for rec in records:
            assert rec["reward"].size == 20 and np.isfinite(rec["reward"]).all()
            assert not rec["invalid_action"].any()
            cloud_keeps = (rec["tier_index"] == L + 1) & (rec["keep"] > 0)
            assert not cloud_keeps.any()
