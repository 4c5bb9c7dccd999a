"""``offload-rl validate --cell``: the flags' errors, and a tiny cell run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offload_rl.cli import main
from validation.cell_config import CellValidationConfig, check_cell_config
from validation.cell_run import device_requests, run_cell_validation
from validation.runtime.model import small_arch

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
    """Two devices, two requests each, back to back, a pool so small the edge preempts; the
    sessions drawn at split 0 (token ids) or 1 (the device runs layer 0, round trips)."""
    pytest.importorskip("transformers")
    cfg = CellValidationConfig(
        out=tmp_path / "cell",
        model=small_arch("gpt2"),
        devices=2,
        requests=2,
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
    assert saved["overall"]["requests"] == 4 == len(saved["requests"])
    assert {r["split"] for r in saved["requests"]} == {0, 1}
    edge = json.loads((cfg.out / "level0" / "edge.json").read_text())
    assert {r["request_id"]: r["split"] for r in edge["requests"]} == {
        r["request_id"]: r["split"] for r in saved["requests"]
    }
    assert any(1 in it["splits"] for it in edge["iterations"])
    placement = result["overall"]["by_placement"]
    assert placement["split"]["scored"] + placement["token_ids"]["scored"] == 4
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
