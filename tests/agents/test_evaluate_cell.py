"""Evaluation on EdgeCell-v0: per finished request, per load level and device class."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.evaluation.cell_metrics import per_request_means, request_outcomes, summarise_cell
from agents.evaluation.cell_outputs import cell_scalars
from agents.evaluation.cell_rollout import CLASS_NAMES, DECISION_COLUMNS, REQUEST_COLUMNS
from agents.evaluation.cell_runner import evaluate_cell
from offload_rl.cli import main
from offload_rl.errors import ConfigError
from offload_rl.scenario import Scenario, load_scenario

HEURISTICS = ["local", "edge", "cloud", "random", "greedy"]


def _steps(**columns: list[float]) -> dict[str, np.ndarray]:
    """A hand-built episode: every decision and request column, zeros unless given."""
    n = len(columns.get("n_finished", [0.0]))
    m = len(columns.get("req_latency_s", []))
    rec = {c: np.zeros(n) for c in DECISION_COLUMNS} | {c: np.zeros(m) for c in REQUEST_COLUMNS}
    rec["finish_cost"] = np.zeros(1)
    return rec | {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}


def test_means_are_per_finished_request_not_per_step():
    """Three steps finish 0, 3 and 1 requests of 1 s, 1 s, 1 s and 5 s: the mean is 2 s (per
    request), not (0 + 1 + 5) / 3 or (1 + 5) / 2 (per step)."""
    rec = _steps(n_finished=[0, 3, 1], latency_s=[0.0, 3.0, 5.0], slo_violated=[0, 1, 1])
    means = per_request_means([rec])
    assert means["latency_s"] == pytest.approx(2.0)
    assert means["slo_violated"] == pytest.approx(0.5)
    assert per_request_means([_steps(n_finished=[0, 0])])["latency_s"] is None


def test_outcomes_split_by_device_class_and_unfinished_requests_are_counted():
    rec = _steps(
        n_finished=[1, 0, 2, 0],
        latency_s=[4.0, 0.0, 3.0, 0.0],
        device_class=[0, 1, 1, 2],
        req_latency_s=[4.0, 1.0, 2.0],
        req_device_class=[0, 1, 1],
        req_has_context=[1, 1, 0],
        req_cache_hit=[0, 1, 0],
    )
    assert request_outcomes([rec])["mean_latency_s"] == pytest.approx(7.0 / 3)
    mid = request_outcomes([rec], device_class=1)
    assert (mid["n_finished"], mid["mean_latency_s"], mid["cache_hit_rate"]) == (2, 1.5, 1.0)
    assert request_outcomes([rec], device_class=2)["mean_latency_s"] is None
    summary = summarise_cell([rec], n_layers=4)
    assert summary["unfinished_share"] == pytest.approx(0.25)  # 3 of 4 decided finished
    assert summary["mean_latency_s"] == pytest.approx(per_request_means([rec])["latency_s"])


def test_the_headline_reward_counts_the_cost_of_finishing_the_episode():
    """Two decisions of reward -1 and a finish cost of 2: -2 per decision, not the truncated
    -1; the truncated figure is kept beside it."""
    rec = _steps(n_finished=[0, 1], reward=[-1.0, -1.0], req_latency_s=[1.0, 9.0],
                 req_after_end=[0.0, 1.0], req_slo_violated=[0.0, 1.0])  # fmt: skip
    rec["finish_cost"] = np.array([2.0])
    summary = summarise_cell([rec], n_layers=4)
    assert summary["mean_reward"] == pytest.approx(-2.0)
    assert summary["mean_reward_truncated"] == pytest.approx(-1.0)
    # the request finished after the end counts, with the latency it got when finished
    assert (summary["n_requests"], summary["n_finished"]) == (2, 1)
    assert summary["mean_latency_s"] == pytest.approx(5.0)
    assert summary["slo_violation_rate"] == pytest.approx(0.5)
    assert summary["unfinished_share"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def cell_result():
    sc = load_scenario("cell")
    sc = sc.model_copy(update={"episode": sc.episode.model_copy(update={"requests": 24})})
    return evaluate_cell(HEURISTICS, sc, episodes_per_family=1, seed=0, loads=(0.5, 1.0))


def test_every_heuristic_runs_and_the_interval_sums_match_the_finished_requests(cell_result):
    """The info's sums and the finished requests are two views of the same requests."""
    assert len(cell_result.records["greedy"]) == 2 * len(cell_result.episodes)
    for spec in HEURISTICS:
        for rec in cell_result.records[spec]:
            assert rec["reward"].size == 24
            inside = rec["req_after_end"] == 0
            assert rec["n_finished"].sum() == inside.sum()
            assert rec["latency_s"].sum() == pytest.approx(rec["req_latency_s"][inside].sum())
            assert rec["slo_violated"].sum() == rec["req_slo_violated"][inside].sum()


def test_every_decided_request_has_an_outcome_those_left_at_the_end_included(cell_result):
    """Settling the episode runs the requests still in the cell to their last token: each
    decided request has exactly one row, none without a latency, and the edge policy (whose
    requests queue at the edge) leaves some to be finished after the episode's end."""
    after_end = 0.0
    for spec in HEURISTICS:
        for rec in cell_result.records[spec]:
            assert rec["req_latency_s"].size == rec["reward"].size
            assert np.all(rec["req_latency_s"] > 0)
            assert sorted(np.unique(rec["req_after_end"])) in ([0.0], [0.0, 1.0], [1.0])
            after_end += rec["req_after_end"].sum()
    assert after_end > 0


def test_tensorboard_tags_are_identical_for_every_policy(cell_result):
    from agents.evaluation.cell_metrics import compute_cell_metrics

    metrics = compute_cell_metrics(cell_result)
    tags = {
        s: [(t, step) for t, _, step in cell_scalars(cell_result, metrics, s)] for s in HEURISTICS
    }
    assert all(t == tags["local"] for t in tags.values())
    assert any(t.startswith("load/0.5/") for t, _ in tags["local"])
    assert any(t.startswith("device_class/") for t, _ in tags["local"])


def test_cli_evaluates_the_cell_end_to_end(tmp_path, cell_result):
    out = tmp_path / "eval"
    args = ["evaluate", "--scenario", "cell", "--policies", ",".join(HEURISTICS)]
    args += ["--episodes", "1", "--requests", "24", "--loads", "0.5,1", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["env"] == "EdgeCell-v0" and set(metrics["loads"]) == {"0.5", "1"}
    assert set(metrics["device_classes"]) <= set(CLASS_NAMES)
    at_base = cell_result.records["greedy"][len(cell_result.episodes) :]  # load 1 comes second
    assert metrics["policies"]["greedy"]["n_finished"] == sum(
        int(r["n_finished"].sum()) for r in at_base
    )
    for name in ("latency_vs_load", "edge_over_episode", "device_temperature"):
        assert (out / f"{name}.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "tb").iterdir()) == sorted(HEURISTICS)
    assert "## load = 0.5" in (out / "report.md").read_text()


def test_loads_need_a_cell_and_workers_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="--workers"):
        evaluate_cell(["local"], load_scenario("cell"), episodes_per_family=1, workers=0)
    base = ["evaluate", "--policies", "local", "--episodes", "1", "--out", str(tmp_path / "o")]
    assert main([*base, "--loads", "1,2", "--no-progress"]) == 2


def _short_cell(requests: int) -> Scenario:
    sc = load_scenario("cell")
    return sc.model_copy(update={"episode": sc.episode.model_copy(update={"requests": requests})})


def test_workers_give_the_same_results_as_one_process():
    """Each (load, policy, episode) task is self-contained: a pool of 2 reproduces 1 process,
    record for record (the oracle included, with its forks in the workers)."""
    sc = _short_cell(10)
    specs = ["random", "oracle"]
    one = evaluate_cell(specs, sc, episodes_per_family=1, seed=3, loads=(1.0, 2.0))
    two = evaluate_cell(specs, sc, episodes_per_family=1, seed=3, loads=(1.0, 2.0), workers=2)
    assert two.workers == 2 and one.deployable == two.deployable
    for spec in specs:
        assert len(one.records[spec]) == len(two.records[spec]) == 2 * len(one.episodes)
        for a, b in zip(one.records[spec], two.records[spec], strict=True):
            assert a.keys() == b.keys()
            for column in a:
                np.testing.assert_array_equal(a[column], b[column], err_msg=f"{spec} {column}")


def test_cli_evaluates_the_oracle_on_the_cell_as_hindsight(tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--scenario", "cell", "--policies", "local,greedy,oracle"]
    args += ["--episodes", "1", "--requests", "8", "--loads", "1", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["policies"]["oracle"]["deployable"] is False
    assert metrics["policies"]["greedy"]["deployable"] is True
    report = (out / "report.md").read_text()
    assert "| oracle *(hindsight)* |" in report and "not a global optimum" in report
