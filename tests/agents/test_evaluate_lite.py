"""``offload-rl evaluate`` on scenarios with a device-lite model: lite share and mean quality
per policy, beside latency and energy (metrics, csv, report, TensorBoard); absent otherwise."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from agents.evaluation.cell_metrics import request_outcomes
from agents.evaluation.metrics import summarise
from agents.evaluation.tensorboard_runs import tensorboard_scalars
from offload_rl.cli import main
from offload_rl.scenario import load_scenario


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lite")
    args = ["evaluate", "--scenario", "lite", "--policies", "local,greedy,lite-on-outage"]
    assert (
        main([*args, "--episodes", "1", "--requests", "48", "--out", str(out), "--no-progress"])
        == 0
    )
    return out


def test_metrics_report_lite_share_and_quality(lite_run):
    m = json.loads((lite_run / "metrics.json").read_text())
    for spec, pm in m["policies"].items():
        assert 0.0 <= pm["lite_share"] <= 1.0, spec
        assert pm["tier_share"]["lite"] == pytest.approx(pm["lite_share"])
        # mean score delivered: the main model's, less the gap on the lite answers
        expected = 0.609 - (0.609 - 0.475) * pm["lite_share"]
        assert pm["mean_quality"] == pytest.approx(expected, rel=1e-9)
    assert m["policies"]["lite-on-outage"]["lite_share"] > 0.0
    rows = list(csv.DictReader((lite_run / "metrics.csv").open()))
    assert {"lite_share", "mean_quality", "tier_share_lite"} <= set(rows[0])
    report = (lite_run / "report.md").read_text()
    assert "## Device-lite model" in report and "`lite-on-outage`" in report


def test_summaries_without_lite_records_have_no_lite_keys():
    rec = {
        "reward": np.array([-1.0, -2.0]),
        "latency_s": np.array([1.0, 2.0]),
        "ttft_s": np.array([0.1, 0.2]),
        "energy_j": np.array([1.0, 1.0]),
        "usd": np.zeros(2),
        "mbps": np.ones(2),
        "tier_index": np.array([0, 3]),
        "slo_violated": np.zeros(2, bool),
        "cache_hit": np.zeros(2, bool),
        "has_context": np.zeros(2, bool),
        "invalid_action": np.zeros(2, bool),
        "keep": np.zeros(2, bool),
        "private": np.zeros(2, bool),
    }
    plain = summarise([rec], 2)
    assert "lite_share" not in plain and "lite" not in plain["tier_share"]
    lite = summarise([{**rec, "tier_index": np.array([4, 3]), "lite": np.array([True, False]),
                       "quality": np.array([0.4, 0.6])}], 2)  # fmt: skip
    assert lite["lite_share"] == 0.5 and lite["mean_quality"] == pytest.approx(0.5)
    assert lite["tier_share"]["lite"] == 0.5 and lite["split_share"]["cloud"] == 0.5


def test_cell_outcomes_count_lite_answers_per_finished_request():
    rec = {
        "req_latency_s": np.array([1.0, 2.0, 3.0]),
        "req_ttft_s": np.ones(3),
        "req_slo_violated": np.zeros(3),
        "req_cache_hit": np.zeros(3),
        "req_has_context": np.zeros(3),
        "req_queue_s": np.zeros(3),
        "req_preempted": np.zeros(3),
        "req_usd": np.zeros(3),
        "req_device_class": np.zeros(3),
        "req_tier_index": np.array([4.0, 0.0, 4.0]),
        "req_after_end": np.zeros(3),
    }
    assert "lite_share" not in request_outcomes([rec])
    lite = request_outcomes([{**rec, "req_lite": np.array([1.0, 0.0, 1.0]),
                              "req_quality": np.array([0.4, 0.6, 0.4])}])  # fmt: skip
    assert lite["lite_share"] == pytest.approx(2 / 3)
    assert lite["mean_quality"] == pytest.approx(1.4 / 3)


def test_tensorboard_tags_include_lite_figures_only_with_a_lite_model(lite_run):
    m = json.loads((lite_run / "metrics.json").read_text())
    result = SimpleNamespace(episodes=[], records={"greedy": []})  # no per-episode curves
    tags = {t for t, _, _ in tensorboard_scalars(result, {**m, "families": {}}, "greedy")}  # type: ignore[arg-type]
    assert {"eval/lite_share", "eval/mean_quality", "eval/tier_share/lite"} <= tags
    m["policies"]["greedy"] = {
        k: v for k, v in m["policies"]["greedy"].items() if k not in ("lite_share", "mean_quality")
    }
    tags = {t for t, _, _ in tensorboard_scalars(result, {**m, "families": {}}, "greedy")}  # type: ignore[arg-type]
    assert "eval/lite_share" not in tags and "eval/mean_quality" not in tags


def test_cell_evaluation_reports_lite_share_and_quality(tmp_path):
    args = ["evaluate", "--scenario", "cell_lite", "--policies", "local,greedy,lite-on-outage"]
    args += ["--episodes", "1", "--requests", "32", "--loads", "1", "--out", str(tmp_path)]
    assert main([*args, "--no-progress"]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    lite = load_scenario("cell_lite").lite
    assert lite is not None
    gap = lite.main_quality - lite.quality
    for pm in m["policies"].values():
        assert 0.0 <= pm["lite_share"] <= 1.0
        assert pm["mean_quality"] == pytest.approx(
            lite.main_quality - gap * pm["lite_share"], rel=1e-9
        )
        assert "lite" in pm["tier_share"]
    assert "lite_share" in (tmp_path / "report.md").read_text()
    assert "lite_share" in (tmp_path / "metrics.csv").read_text().splitlines()[0]
