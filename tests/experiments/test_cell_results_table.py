"""The cell results table's arithmetic: the finish cost counted, paired differences and the
targets, the generated part of the markdown replaced in place, and the episode sets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "analyses" / "cell_results_table.py"


@pytest.fixture(scope="module")
def table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cell_results_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cell_results_table"] = module  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_an_episode_is_scored_with_its_finish_cost(table: ModuleType) -> None:
    record = {"reward": np.array([-1.0, -2.0, -3.0, -2.0]), "finish_cost": np.array([4.0])}
    assert table.episode_score(record) == pytest.approx(-3.0)  # (-8 - 4) / 4


def _entry(scores: list[float], p95: float = 10.0, slo: float = 0.2) -> dict[str, Any]:
    return {"scores": scores, "p95_s": p95, "slo": slo, "j_per_decision": 1.0}


def test_paired_difference_and_targets(table: ModuleType) -> None:
    best = table.heuristic_row(_entry([-2.0, -3.0, -4.0, -2.0]))
    seeds = [_entry([-1.8, -2.7, -3.7, -1.9], p95=9.0), _entry([-1.9, -2.8, -3.8, -1.8], p95=9.0)]
    ppo = table.ppo_row(seeds)
    assert ppo["reward"] == pytest.approx(np.mean([-2.525, -2.575]))
    assert ppo["scores"] == pytest.approx([-1.85, -2.75, -3.75, -1.85])
    pair = table.paired(ppo, seeds, best)
    assert pair["diff"] == pytest.approx(0.2)
    assert pair["gain"] == pytest.approx(0.2 / 2.75)
    assert pair["better_episodes"] == 4 and pair["ci_above_zero"]
    assert pair["p95_not_worse"] and pair["slo_not_worse"]
    assert pair["per_seed"] == pytest.approx([0.225, 0.175])
    worse = table.paired(table.ppo_row([_entry([-2.1, -3.2, -3.9, -2.2])]), [], best)
    assert worse["diff"] < 0 and not worse["ci_above_zero"]


def test_the_generated_part_is_replaced_and_the_prose_kept(
    table: ModuleType, tmp_path: Path
) -> None:
    doc = tmp_path / "CELL.md"
    table.write_generated(doc, "first")
    assert doc.read_text().count(table.BEGIN) == 1
    doc.write_text("# Title\n\nprose before\n\n" + doc.read_text() + "\nprose after\n")
    table.write_generated(doc, "second")
    text = doc.read_text()
    assert "first" not in text and "second" in text
    assert text.startswith("# Title\n\nprose before") and text.endswith("prose after\n")


@pytest.mark.skipif(
    not (REPO.parent / "shared" / "traces").is_dir(), reason="needs ../shared/traces"
)
def test_the_sets_are_each_familys_test_files_and_the_left_out_family(table: ModuleType) -> None:
    from agents.train_config import load_train_config

    config = load_train_config(table.CONFIG)
    sets = table.eval_sets(config)
    assert [(s.name, s.kind) for s in sets] == [
        ("ghent-4g-lte", "held-out"),
        ("mahimahi-cellular", "held-out"),
        ("norway-hsdpa-3g", "held-out"),
        ("wifi", "held-out"),
        ("nyc-lte", "left-out"),
    ]
    test = {s.source for s in config.test_sources()}
    for s in sets:
        files = {t.source for t in s.scenario.network.sources()}
        assert len(files) == s.files
        assert {Path(f).parent.name for f in files} == {s.name}
        assert (files <= test) == (s.kind == "held-out")


def test_the_target_needs_every_condition_on_held_out_files_and_not_worse_when_left_out(
    table: ModuleType,
) -> None:
    met = {
        "ci_above_zero": True,
        "gain": 0.06,
        "p95_not_worse": True,
        "slo_not_worse": True,
        "not_worse": True,
    }
    assert table.target_met("held-out", met)
    for key, bad in [
        ("ci_above_zero", False),
        ("gain", 0.04),
        ("p95_not_worse", False),
        ("slo_not_worse", False),
    ]:
        assert not table.target_met("held-out", {**met, key: bad}), key
    assert table.target_met("left-out", {**met, "gain": -0.5, "ci_above_zero": False})
    assert not table.target_met("left-out", {**met, "not_worse": False})
