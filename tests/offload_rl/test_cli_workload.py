"""``offload-rl workload stats|sample`` through the CLI entry point."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from offload_rl import cli

BURSTGPT = (
    "request_index,arrival_ms,input_length,output_length,session_id\n"
    "0,0,100,50,a\n1,1000,40,10,b\n2,5000,170,30,a\n3,9000,90,10,a\n"
)

# Only this module's command: keeps these tests independent of sibling commands' imports.
ONLY_WORKLOAD = ("offload_rl.commands.workload",)


@pytest.fixture(autouse=True)
def _only_workload_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ONLY_WORKLOAD)


@pytest.fixture()
def burst_file(tmp_path: Path) -> Path:
    path = tmp_path / "burst.csv"
    path.write_text(BURSTGPT)
    return path


def test_stats_json_for_default_and_a_file(burst_file: Path, capsys) -> None:
    code = cli.main(["workload", "stats", "default", str(burst_file), "--json", "--n", "300"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    default, recorded = payload["sources"]
    assert default["kind"] == "synthetic" and default["stats"]["requests"] == 300
    assert recorded["kind"] == "burstgpt" and recorded["stats"]["requests"] == 4
    assert recorded["stats"]["sessions"] == 2
    assert payload["scaling"]["max_context_tokens"] == 4096


def test_stats_table(burst_file: Path, capsys) -> None:
    assert cli.main(["workload", "stats", str(burst_file), "--raw"]) == 0
    out = capsys.readouterr().out
    assert "raw (no scaling, no caps)" in out
    assert "burst.csv" in out and "burstgpt" in out
    sessions_line = next(line for line in out.splitlines() if line.startswith("sessions"))
    assert sessions_line.split()[-1] == "2"
    assert "gap between turns (s) p50" in out


def test_sample_writes_csv_deterministically(tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (first, second):
        args = ["workload", "sample", "default", "--n", "50", "--seed", "4", "--out", str(out)]
        assert cli.main(args) == 0
    assert "wrote 50 requests" in capsys.readouterr().out
    assert first.read_text() == second.read_text()
    rows = list(csv.DictReader(first.open()))
    assert len(rows) == 50
    assert rows[0]["arrival_s"] == "0.000000" and rows[0]["turn"] == "0"
    assert all(int(r["new_tokens"]) >= 1 for r in rows)
    assert cli.main(["workload", "sample", "default", "--n", "50", "--seed", "5"]) == 0
    assert capsys.readouterr().out != first.read_text()


def test_sample_to_stdout_with_scaling(burst_file: Path, capsys) -> None:
    args = ["workload", "sample", str(burst_file), "--n", "4", "--seed", "0", "--scale", "0.1"]
    assert cli.main(args) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [int(r["new_tokens"]) for r in rows] == [10, 4, 2, 2]
    assert [r["gap_to_next_turn_s"] for r in rows] == ["5.000000", "", "4.000000", ""]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["workload", "stats", "no/such/file.csv"], "no such workload"),
        (
            ["workload", "sample", "default", "--n", "3", "--seed", "0", "--out", "no/dir/x.csv"],
            "cannot write",
        ),
        (["workload", "stats", "default", "--scale", "-1"], "scale"),
    ],
)
def test_user_errors_are_one_line(argv: list[str], fragment: str, capsys) -> None:
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and err.startswith("offload-rl: error:")


def test_bad_data_file_names_file_and_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BURSTGPT + "4,8000,x,1,b\n")
    assert cli.main(["workload", "stats", str(path)]) == cli.EXIT_USER_ERROR
    assert f"{path}:6: input_length" in capsys.readouterr().err


def test_bad_n_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["workload", "sample", "default", "--n", "0", "--seed", "1"])
    assert info.value.code == 2


def test_error_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0}\n')
    script = (
        "import sys; from offload_rl import cli; "
        f"cli.COMMAND_MODULES = {ONLY_WORKLOAD!r}; "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "workload", "stats", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"offload-rl: error: {path}:1: missing key(s) input_length, output_length, hash_ids "
        "(read as mooncake; for another log see 'offload-rl workload inspect')"
    ]
