"""``offload-rl validate --cell``: the flags' errors, and a tiny cell run end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from offload_rl.cli import main
from offload_rl.profiles import Profile
from validation.cell_config import CellValidationConfig, check_cell_config, usable_cpus
from validation.cell_rescore import RescoreError, rescore_run
from validation.cell_run import device_requests, run_cell_validation
from validation.cell_summary import outside_the_iterations, pricing_by_kind, waits_before_taken
from validation.runtime.model import small_arch
from validation.schedule_diff import diff_run_folder

CONTRACT = ("median_abs_pct_error_total", "p90_abs_pct_error_total")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--devices", "0"], "--devices"),
        (["--gaps", "0,x"], "--gaps"),
        (["--gaps", "-1"], "--gaps"),
        (["--pool-tokens", "0"], "--pool-tokens"),
        (["--policy", "greedy"], "--policy"),
        (["--splits", "0,x"], "--splits"),
        (["--splits", "0,12"], "--splits"),  # gpt2 has 12 layers: k = 12 leaves the edge none
        (["--splits", "-1"], "--splits"),
        (["--runs", "0"], "--runs"),
        (["--runs", "1", "--same-streams"], "--same-streams"),
    ],
)
def test_bad_cell_flags_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["validate", "--cell", "--out", str(tmp_path / "v"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_device_streams_are_per_device_sessions_and_gaps(tmp_path: Path) -> None:
    cfg = CellValidationConfig(out=tmp_path, devices=3, requests=5)
    check_cell_config(cfg)
    back_to_back = device_requests(cfg, 1024, 0, 0.0)
    spaced = device_requests(cfg, 1024, 1, 2.0)
    assert [len(s) for s in back_to_back] == [5, 5, 5]
    assert all(r["target_s"] == 0.0 for s in back_to_back for r in s)
    targets = [r["target_s"] for r in spaced[0]]
    assert targets == sorted(targets) and targets[-1] > 0
    sessions = [{r["session"] for r in s} for s in back_to_back + spaced]
    for i, a in enumerate(sessions):
        for b in sessions[i + 1 :]:
            assert not a & b  # no session is shared by two devices or two levels
    ids = [r["request_id"] for s in back_to_back for r in s]
    assert len(set(ids)) == len(ids)


def test_a_tiny_cell_runs_end_to_end(tmp_path: Path) -> None:
    """Two devices, two requests each per run, two runs of the same streams, back to back, a
    pool so small the edge preempts; the sessions drawn at split 0 (token ids) or 1 (the device
    runs layer 0, round trips). The simulator's scheduler, in lockstep with the real edge's
    log, schedules every iteration as it did; each request is compared with its repeat."""
    pytest.importorskip("transformers")
    cfg = CellValidationConfig(
        out=tmp_path / "cell",
        model=small_arch("gpt2"),
        devices=2,
        requests=2,
        runs=2,
        same_streams=True,
        pin_edge=len(usable_cpus()) >= 2,  # the edge on a CPU of its own where there are two
        gaps_s=(0.0,),
        traces=("constant:20",),
        policy="forced",
        pool_tokens=200,
        max_num_batched_tokens=64,
        init_std=0.5,
        batch_sizes=(1, 2),
        profile_lengths=(8, 64),
        profile_contexts=(8, 64),
        profile_repeats=1,
        profile_retries=0,
        profile_min_point_s=0.01,
        min_new=40,
        max_new=120,
        min_out=8,
        max_out=16,
        splits=(0, 1),
    )
    result = run_cell_validation(cfg)
    saved = json.loads((cfg.out / "validation.json").read_text())
    assert saved["overall"]["requests"] == 8 == len(saved["requests"])
    assert {r["split"] for r in saved["requests"]} == {0, 1}
    assert [(g["run"], g["level"]) for g in saved["by_load_level"]] == [(0, 0), (1, 0)]
    pooled = saved["pooled_over_runs"]["overall"]
    assert pooled["runs"] == 2 and len(pooled["per_run"]) == 2 and pooled["median_ci95"]
    edges = [json.loads((cfg.out / f"run{r}" / "level0" / "edge.json").read_text()) for r in (0, 1)]
    assert {r["request_id"]: r["split"] for e in edges for r in e["requests"]} == {
        r["request_id"]: r["split"] for r in saved["requests"]
    }
    assert any(1 in it["splits"] for e in edges for it in e["iterations"])
    diffs, lines = diff_run_folder(cfg.out)
    assert len(diffs) == 2 and all(d.agrees and d.ids_compared for d in diffs), lines
    assert "Pooled over 2 runs" in (cfg.out / "validation.md").read_text()
    pinned = saved["setup"]["pinned"]
    assert (pinned is not None) == cfg.pin_edge
    if pinned is not None:
        assert pinned["edge_cpus"] == [max(usable_cpus())] and pinned["other_cpus"]
    repeat = saved["runtime_repeatability"]  # the same 4 requests (forced splits) run twice
    assert repeat["repeats"] == 2 and repeat["overall"]["runtime_pairs"]["n"] == 8
    assert repeat["overall"]["simulator"]["n"] == 8
    assert "against its own repeats" in (cfg.out / "validation.md").read_text()
    # a stored run replays to the same figures, with its own profile or one named
    profile_file = cfg.out / "profile-gpt2-small-t1-batched.json"
    for again in (rescore_run(cfg.out), rescore_run(cfg.out, profile_file)):
        for key in CONTRACT:
            assert again["overall"][key] == result["overall"][key]
    with pytest.raises(RescoreError, match="no such file"):
        rescore_run(cfg.out, cfg.out / "missing.json")
    placement = result["overall"]["by_placement"]
    assert placement["split"]["scored"] + placement["token_ids"]["scored"] == 8
    for key in CONTRACT:
        assert isinstance(result["overall"][key], float)
        assert key in result["by_load_level"][0]
    measured = result["iterations"][0]["measured"]
    assert measured and all(m["measured_s"] > 0 and m["profile_s"] > 0 for m in measured)
    assert result["iterations"][0]["simulated"]
    assert all(r["measured"]["total_s"] >= r["measured"]["ttft_s"] > 0 for r in result["requests"])
    assert (cfg.out / "scatter.png").stat().st_size > 0
    assert (cfg.out / "iterations.png").stat().st_size > 0
    assert (cfg.out / "validation.md").read_text().startswith("# Cell validation")
    # the simulator priced the edge with the in-stack step table this run measured
    assert "steps" in saved["setup"]["batch_cost"]
    profile = Profile.load(cfg.out / "profile-gpt2-small-t1-batched.json")
    assert profile.batched is not None and profile.batched.steps is not None
    assert profile.batched.steps.layer.x[:2] == [1, 2]
    kinds = result["overall"]["iteration_time"]["by_kind"]
    assert sum(k["iterations"] for k in kinds.values()) == sum(
        len(g["measured"]) for g in result["iterations"]
    )
    assert "| iteration | count |" in (cfg.out / "validation.md").read_text()
    outside = result["by_load_level"][0]["outside_the_iterations"]
    # a tiny model's forward takes about a millisecond, so the edge's loop (token frames, the
    # state push) may well exceed it on a busy machine: only its sign is checked here, its
    # arithmetic by the unit tests below
    assert outside["edge_loop_s"] >= 0 and outside["edge_loop_share_of_forward"] >= 0
    assert 0 <= outside["decision_share_of_latency"] < 1
    assert outside["mean_queued_s"]["measured"] >= 0


def test_outside_the_iterations_counts_only_the_edges_short_pauses() -> None:
    edge = {
        "iterations": [
            {"start_s": 0.0, "measured_s": 1.0},
            {"start_s": 1.01, "measured_s": 1.0},  # 10 ms of the edge's loop
            {"start_s": 5.0, "measured_s": 1.0},  # idle: waiting for requests
        ]
    }

    def row(decide: float, total: float, pct: float) -> dict[str, object]:
        return {
            "rejected": False,
            "decide_s": decide,
            "pct_error_total": pct,
            "measured": {"total_s": total, "queued_s": 1.0},
            "predicted": {"queued_s": 0.5},
        }

    out = outside_the_iterations({"edge": edge}, [row(0.1, 4.0, -10), row(0.1, 6.0, 30)], 3.0)
    assert out["edge_loop_s"] == pytest.approx(0.01)
    assert out["edge_loop_share_of_forward"] == pytest.approx(0.01 / 3)
    assert out["decision_share_of_latency"] == pytest.approx(0.02)
    assert out["mean_queued_s"] == {"measured": 1.0, "predicted": 0.5}
    assert out["median_pct_error_total"] == pytest.approx(10.0)


def test_outside_the_iterations_takes_the_edges_idle_waits_out_of_its_loop() -> None:
    """With the edge's own record of its blocked waits, every pause counts less that wait
    (short idle polls are not the loop, long pauses with work in them are)."""
    edge = {
        "iterations": [
            {"start_s": 0.0, "measured_s": 1.0, "idle_before_s": 0.0},
            {"start_s": 1.05, "measured_s": 1.0, "idle_before_s": 0.04},  # 10 ms of loop
            {"start_s": 5.0, "measured_s": 1.0, "idle_before_s": 2.9},  # 50 ms of loop
        ]
    }
    row = {
        "rejected": False,
        "decide_s": 0.0,
        "pct_error_total": 0.0,
        "measured": {"total_s": 1.0, "queued_s": 0.0},
        "predicted": {"queued_s": 0.0},
    }
    out = outside_the_iterations({"edge": edge}, [row], 3.0)
    assert out["edge_loop_s"] == pytest.approx(0.06)


def test_pricing_by_kind_splits_decodes_by_rows_from_chunks() -> None:
    def it(size: int, tokens: int, measured: float, priced: float) -> dict[str, float]:
        return {"batch_size": size, "tokens": tokens, "measured_s": measured, "profile_s": priced}

    kinds = pricing_by_kind(
        [it(3, 3, 1.0, 0.5), it(3, 3, 1.0, 0.7), it(1, 1, 2.0, 2.0), it(2, 200, 4.0, 5.0)]
    )
    assert list(kinds) == ["decode x1", "decode x3", "prefill/mixed"]
    assert kinds["decode x3"]["iterations"] == 2
    assert kinds["decode x3"]["median_pct_error"] == pytest.approx(-40.0)
    assert kinds["decode x3"]["profile_s"] == pytest.approx(1.2)
    assert kinds["prefill/mixed"]["median_pct_error"] == pytest.approx(25.0)


def test_bootstrap_over_runs_pools_requests_and_resamples_whole_runs() -> None:
    from validation.cell_summary import bootstrap_over_runs

    one = bootstrap_over_runs([[-10.0, 20.0, 30.0]])
    assert one["runs"] == 1 and one["median_abs_pct_error_total"] == pytest.approx(20.0)
    assert one["median_ci95"] is None and one["p90_ci95"] is None
    same = bootstrap_over_runs([[1.0, -2.0, 3.0], [3.0, 2.0, -1.0]])
    assert same["median_ci95"] == pytest.approx([2.0, 2.0])  # every resample: the same errors
    apart = bootstrap_over_runs([[1.0] * 10, [100.0] * 10], resamples=500)
    assert [r["median_abs_pct_error_total"] for r in apart["per_run"]] == [1.0, 100.0]
    lo, hi = apart["median_ci95"]
    assert lo == pytest.approx(1.0) and hi == pytest.approx(100.0)  # runs, not requests
    assert lo <= apart["median_abs_pct_error_total"] <= hi


def test_pooled_over_runs_groups_by_run_and_level() -> None:
    from validation.cell_summary import pooled_over_runs

    def row(run: int, level: int, err: float, rejected: bool = False) -> dict[str, Any]:
        return {
            "run": run,
            "level": level,
            "gap_s": float(2 * level),
            "rejected": rejected,
            "pct_error_total": err,
        }

    rows = [row(0, 0, 10.0), row(0, 1, 2.0), row(1, 0, 30.0), row(1, 1, 4.0), row(1, 1, 99, True)]
    pooled = pooled_over_runs(rows)
    assert pooled["overall"]["runs"] == 2
    assert [g["gap_s"] for g in pooled["by_load_level"]] == [0.0, 2.0]
    assert pooled["by_load_level"][1]["per_run"][1]["scored"] == 1  # the rejected one is out
    assert pooled["by_load_level"][0]["median_abs_pct_error_total"] == pytest.approx(20.0)


def test_the_measured_queue_counts_from_arrival_as_the_simulator_does() -> None:
    edge = {
        "requests": [
            {"request_id": 1, "arrival_s": 2.0, "taken_s": 2.25},  # arrived mid-iteration
            {"request_id": 2, "arrival_s": 3.0, "taken_s": 3.0},
            {"request_id": 3, "arrival_s": 4.0, "taken_s": None},  # an old log: no taken time
        ]
    }
    assert waits_before_taken(edge) == {1: 0.25, 2: 0.0}
