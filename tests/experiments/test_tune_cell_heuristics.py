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


SPLIT_CONFIG = TUNING.parents[1] / "experiments" / "configs" / "train_cell_split.yaml"
SHARED_TRACES = TUNING.parents[2] / "shared" / "traces"


@pytest.mark.skipif(not SHARED_TRACES.is_dir(), reason="needs ../shared/traces (recorded files)")
def test_tuning_on_a_config_reads_its_training_files_only(monkeypatch):
    """``--config``: the links are the config's training files, with its per-family scaling;
    none of its validation or test files."""
    from agents.train_config import load_train_config

    monkeypatch.syspath_prepend(str(TUNING))
    tune = importlib.import_module("tune_cell_heuristics")
    scenario, described = tune.config_training_scenario(SPLIT_CONFIG)
    config = load_train_config(SPLIT_CONFIG)
    train, validation = config.trace_sets()
    test = config.test_sources()
    assert train is not None and validation is not None and test is not None
    used = {(s.source, s.uplink_scale) for s in scenario.network.sources()}
    assert used == {(s.source, s.uplink_scale) for s in train}
    assert not {s.source for s in scenario.network.sources()} & {
        s.source for s in [*validation, *test]
    }
    assert len(described) == 4  # one line per family
