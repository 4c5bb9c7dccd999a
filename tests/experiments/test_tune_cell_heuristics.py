"""The cell tuning script's objective: the settled score, the same with any number of workers."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from agents.evaluation.cell_rollout import run_cell_episode, settled_reward
from agents.evaluation.episodes import build_episodes
from offload_rl.scenario import load_scenario

TUNING = Path(__file__).resolve().parents[2] / "experiments" / "tuning"


def test_the_objective_is_the_settled_reward_and_workers_do_not_change_it(monkeypatch):
    monkeypatch.syspath_prepend(str(TUNING))  # spawned workers import the script by name
    tune = importlib.import_module("tune_cell_heuristics")
    sc = load_scenario("cell")
    sc = sc.model_copy(update={"episode": sc.episode.model_copy(update={"requests": 12})})
    resolved, _ = tune.training_scenario(sc, None, None, tune.TraceSplit())
    episodes = build_episodes(resolved, 1, 2026)[:2]
    one = tune.Objective(resolved, episodes, [1.0])
    score = one("edge", None)
    env = one.envs[0]
    policy = tune.make_heuristic("edge", sc)
    expected = [settled_reward(run_cell_episode(policy, env, ep)) for ep in episodes]
    assert score == pytest.approx(sum(expected) / len(expected))  # equal-length episodes
    two = tune.Objective(resolved, episodes, [1.0], workers=2)
    try:
        assert two("edge", None) == score
    finally:
        two.close()
