"""The cell lite-factor tuner: the settled score on training episodes, any number of workers."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest

from agents.evaluation.cell_rollout import run_cell_episode, settled_reward
from agents.evaluation.episodes import build_episodes
from offload_rl.cell_heuristics.names import make_cell_heuristic
from offload_rl.scenario import load_scenario

TUNING = Path(__file__).resolve().parents[2] / "experiments" / "tuning"


def test_scores_are_settled_rewards_of_training_episodes_and_workers_do_not_change_them(
    monkeypatch,
):
    monkeypatch.syspath_prepend(str(TUNING))  # spawned workers import the script by name
    tune = importlib.import_module("tune_cell_lite_factor")
    heuristics = importlib.import_module("tune_cell_heuristics")
    sc = load_scenario("cell_lite")
    sc = sc.model_copy(update={"episode": sc.episode.model_copy(update={"requests": 12})})
    resolved, described = heuristics.training_scenario(sc, None, None, heuristics.TraceSplit())
    assert all("seeds 6..11" in d for d in described)  # never the evaluation's seeds 0..5
    episodes = build_episodes(resolved, 1, 2026)[:2]
    one = tune.tune(resolved, episodes, [1.0], workers=1, factors=(0.5, math.inf))
    assert list(one) == ["greedy", "0.5", "inf"]
    env = heuristics.EdgeCellEnv(heuristics.at_load(resolved, 1.0)[0])
    greedy = make_cell_heuristic("greedy", sc)
    expected = [settled_reward(run_cell_episode(greedy, env, ep)) for ep in episodes]
    assert one["greedy"] == pytest.approx(sum(expected) / len(expected))  # equal lengths
    assert tune.tune(resolved, episodes, [1.0], workers=2, factors=(0.5, math.inf)) == one


def test_a_tie_goes_to_the_larger_factor(monkeypatch):
    monkeypatch.syspath_prepend(str(TUNING))
    tune = importlib.import_module("tune_cell_lite_factor")
    scores = {"greedy": 0.0, "0.9": -1.2560001, "1": -1.2560004, "2": -1.3}
    assert tune.best_factor(scores) == 1.0
    assert tune.best_factor({**scores, "0.5": -1.0}) == 0.5
