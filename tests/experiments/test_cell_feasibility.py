"""The feasibility check's arithmetic: the oracle's room over the chosen heuristic, paired over
the oracle's episodes only, each episode's difference, and the verdict against the 5% target."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.experiments.analysis_scripts import load_analysis


@pytest.fixture(scope="module")
def feasibility() -> ModuleType:
    return load_analysis("cell_feasibility")


def _res(oracle: list[float], best: list[float], edge: list[float]) -> dict[str, Any]:
    return {
        "oracle": {"2": {"scores": oracle}},
        "greedy": {"2": {"scores": best}},
        "edge": {"2": {"scores": edge}},
    }


def test_the_room_is_paired_over_the_oracles_episodes_only(feasibility: ModuleType) -> None:
    """The oracle ran the first 2 of 3 episodes: the third is left out of every column."""
    res = _res([-1.9, -2.0], [-2.0, -2.2, -9.0], [-2.1, -2.2, -9.0])
    row = feasibility.room_row("wifi", "2", "greedy", res)
    assert row["episodes"] == 2
    assert row["best_reward"] == pytest.approx(-2.1)
    assert row["room_per_episode"] == pytest.approx([0.1, 0.2])
    assert row["room"] == pytest.approx(0.15)
    assert row["room_share"] == pytest.approx(0.15 / 2.1)
    assert row["edge_share"] == pytest.approx(-0.05 / 2.1)
    assert row["target_in_room"] and row["target_in_ci"]
    assert "+0.100, +0.200" in feasibility.markdown([row])


def test_the_verdict_says_whether_the_ci_reaches_the_target(feasibility: ModuleType) -> None:
    small = feasibility.room_row("g", "2", "greedy", _res([-1.99, -1.98], [-2.0, -2.0], [-2, -2]))
    assert not small["target_in_room"] and not small["target_in_ci"]
    assert feasibility.markdown([small]).endswith("| no (CI's upper end +3.9%) |")
    wide = feasibility.room_row("w", "2", "greedy", _res([-1.98, -1.9], [-2.0, -2.0], [-2, -2]))
    assert not wide["target_in_room"] and wide["target_in_ci"]
    assert "reaches 5%" in feasibility.markdown([wide])
