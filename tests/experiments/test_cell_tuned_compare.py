"""The tuned-file comparison scores a heuristic as the results table does: built on the set's
scenario, not told the load it runs at (``thermal-mpc``'s request gap would change with it)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from agents.evaluation.cell_rollout import settled_reward
from agents.evaluation.cell_runner import _at_load, evaluate_cell
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell_heuristics.tuned import load_tuned_params
from offload_rl.scenario import load_scenario
from tests.experiments.analysis_scripts import load_analysis


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    return load_analysis("cell_tuned_compare")


def test_a_heuristic_scores_what_the_results_table_scores_at_a_higher_load(
    compare: ModuleType,
) -> None:
    """At load 3 on the embedded cell (64 requests, seed 0), the fourth episode is one where
    ``thermal-mpc`` told the load decides differently (-1.572 against -1.659): the comparison
    must give the table's (:func:`evaluate_cell`'s) score on every episode."""
    base = load_scenario("cell")
    base = base.model_copy(update={"episode": base.episode.model_copy(update={"requests": 64})})
    table = evaluate_cell(["thermal-mpc"], base, 1, seed=0, loads=[3.0])
    expected = [settled_reward(r) for r in table.records["thermal-mpc"]]
    env = EdgeCellEnv(_at_load(base, 3.0), episode_requests=64)
    scores = compare.heuristic_scores("thermal-mpc", load_tuned_params(), base, env, table.episodes)
    assert len(set(np.round(expected, 6))) == len(expected)  # four distinct episodes
    assert scores.tolist() == expected
