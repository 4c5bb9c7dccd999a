"""The runtime against its own repeats: matching requests, the three figures, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from offload_rl.cli import main
from validation.repeatability import (
    markdown_lines,
    repeatability,
    repeatability_of_results,
    repeats_of,
)


def _row(run: int, rid: int, measured: float, err: float = 0.0, **kw: Any) -> dict[str, Any]:
    row = {
        "run": run,
        "level": kw.pop("level", 0),
        "gap_s": kw.pop("gap_s", 0.0),
        "request_id": rid,
        "split": 0,
        "keep": True,
        "new_tokens": 100,
        "context_tokens": 0,
        "output_tokens": 16,
        "measured": {"total_s": measured},
        "pct_error_total": err,
        "rejected": False,
    }
    row.update(kw)
    return row


def _doc(rows: list[dict[str, Any]], same: bool) -> dict[str, Any]:
    return {"setup": {"same_streams": same}, "requests": rows}


def test_same_streams_runs_share_keys_and_independent_ones_do_not() -> None:
    rows = [_row(0, 1, 10.0), _row(1, 1, 12.0), _row(1, 2, 5.0, rejected=True)]
    same = repeats_of(_doc(rows, same=True))
    assert [sorted(r) for r in same] == [[(0, 0, 1)], [(0, 0, 1)]]  # the rejected one is out
    independent = repeats_of(_doc(rows, same=False))
    assert [sorted(r) for r in independent] == [[(0, 0, 1)], [(1, 0, 1)]]
    assert repeatability(independent) is None  # nothing ran twice


def test_two_repeats_give_both_directions_and_the_simulators_own_errors() -> None:
    rep = repeatability(repeats_of(_doc([_row(0, 1, 10.0, 5.0), _row(1, 1, 12.0, -30.0)], True)))
    assert rep is not None and rep["repeats"] == 2
    pairs = rep["overall"]["runtime_pairs"]
    assert pairs["n"] == 2  # +20% (12 against 10) and -16.7% (10 against 12)
    assert pairs["median_abs_pct"] == pytest.approx((20.0 + 100.0 * 2.0 / 12.0) / 2.0)
    assert rep["overall"]["leave_one_out"]["n"] == 2
    assert rep["overall"]["simulator"]["median_abs_pct"] == pytest.approx(17.5)


def test_leave_one_out_predicts_with_the_mean_of_the_others() -> None:
    rows = [_row(r, 1, t) for r, t in enumerate((10.0, 10.0, 10.0, 22.0))]
    rep = repeatability(repeats_of(_doc(rows, True)))
    assert rep is not None
    loo = rep["overall"]["leave_one_out"]
    # each 10 against mean(10, 10, 22) = 14: 40%, three times; 22 against 10: -54.5%
    assert loo["n"] == 4 and loo["median_abs_pct"] == pytest.approx(40.0)
    assert rep["overall"]["runtime_pairs"]["n"] == 12


def test_a_request_decided_differently_is_not_compared() -> None:
    rows = [_row(0, 1, 10.0), _row(1, 1, 30.0, keep=False), _row(0, 2, 4.0), _row(1, 2, 5.0)]
    rep = repeatability(repeats_of(_doc(rows, True)))
    assert rep is not None
    assert rep["overall"]["runtime_pairs"]["n"] == 2  # request 2 only
    assert rep["overall"]["runtime_pairs"]["p90_abs_pct"] <= 25.0


def test_figures_split_by_load_level() -> None:
    rows = [_row(0, 1, 10.0), _row(1, 1, 11.0), _row(0, 1, 4.0, level=1, gap_s=2.0)]
    rows.append(_row(1, 1, 8.0, level=1, gap_s=2.0))
    rep = repeatability(repeats_of(_doc(rows, True)))
    assert rep is not None
    levels = {g["level"]: g for g in rep["by_load_level"]}
    assert levels[0]["gap_s"] == 0.0 and levels[1]["gap_s"] == 2.0
    assert (
        levels[0]["runtime_pairs"]["p90_abs_pct"] < 11.0 < levels[1]["runtime_pairs"]["p90_abs_pct"]
    )
    table = "\n".join(markdown_lines(rep, "Title"))
    assert "| 1 | 2 |" in table and "| all |" in table


def test_independent_streams_match_across_invocations() -> None:
    a = _doc([_row(0, 1, 10.0), _row(1, 1, 20.0)], False)
    b = _doc([_row(0, 1, 11.0), _row(1, 1, 40.0)], False)
    rep = repeatability_of_results([a, b])
    assert rep is not None and rep["repeats"] == 4
    assert rep["overall"]["runtime_pairs"]["n"] == 4  # run 0 with run 0, run 1 with run 1


def test_the_cli_compares_stored_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, total in (("a", 10.0), ("b", 12.0)):
        (tmp_path / name).mkdir()
        doc = _doc([_row(0, 1, total)], False)
        (tmp_path / name / "validation.json").write_text(json.dumps(doc))
    assert (
        main(["validate", "--cell", "--repeatability", str(tmp_path / "a"), str(tmp_path / "b")])
        == 0
    )
    out = capsys.readouterr().out
    assert "over 2 validation(s)" in out and "| all |" in out
    assert main(["validate", "--cell", "--repeatability", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--repeatability" in err and "Traceback" not in err
