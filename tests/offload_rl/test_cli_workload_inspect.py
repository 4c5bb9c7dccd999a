"""``offload-rl workload inspect`` and the mapping options of ``stats``/``sample``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from offload_rl import cli
from offload_rl.workloads import FieldMapping

ONLY_WORKLOAD = ("offload_rl.commands.workload",)


@pytest.fixture(autouse=True)
def _only_workload_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ONLY_WORKLOAD)


@pytest.fixture()
def rag_log(tmp_path: Path) -> Path:
    """Unix seconds as strings, sessions, block ids as a dict of lists; one bad record."""
    records = []
    for i, (session, inp) in enumerate([("a", 100), ("b", 50), ("a", 180), ("a", 260)]):
        blocks = {"system": [1], "passages": [10 + i], "user": [20 + i]}
        records.append(
            {
                "timestamp": f"{1700000000 + 2 * i}.5",
                "input_length": inp,
                "output_length": 40,
                "session_id": session,
                "hash_ids": blocks,
            }
        )
    records.append({"timestamp": "1700000010", "input_length": "n/a", "output_length": 1})
    path = tmp_path / "rag.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_inspect_suggests_a_mapping_that_loads(rag_log: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["workload", "inspect", str(rag_log)]) == 0
    out = capsys.readouterr().out
    assert "JSON Lines, 5 records surveyed" in out
    assert "numeric string (5)" in out and "keys system, passages, user" in out
    assert cli.main(["workload", "inspect", str(rag_log), "--yaml"]) == 0
    suggestion = capsys.readouterr().out
    data = yaml.safe_load(suggestion)
    assert data["time"] == {"field": "timestamp", "unit": "s"}  # ~1.7e9: Unix seconds
    assert data["block_ids"]["order"] == ["system", "passages", "user"]
    assert data["input_includes_history"] is True  # 180 >= 100 + 40, 260 >= 180 + 40
    mapping = tmp_path / "m.yaml"
    mapping.write_text(suggestion)
    FieldMapping.model_validate(data)
    assert cli.main(["workload", "stats", str(rag_log), "--mapping", str(mapping), "--json"]) == 0
    source = json.loads(capsys.readouterr().out)["sources"][0]
    assert source["kind"] == "mapped" and source["stats"]["requests"] == 4
    assert source["stats"]["sessions"] == 2
    assert source["notes"]["skipped: input_tokens (input_length): not a number"] == 1


def test_stats_table_reports_what_loading_skipped(rag_log: Path, capsys) -> None:
    args = ["workload", "stats", str(rag_log), "--time", "timestamp", "--time-unit", "s"]
    args += ["--input", "input_length", "--output", "output_length", "--first", "3"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "rag.jsonl: 5 records, 3 kept; 1 outside the filters; skipped 1: input_tokens" in out


def test_options_override_the_yaml_and_strict_fails_with_the_line(
    rag_log: Path, tmp_path: Path, capsys
) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "time: {field: timestamp, unit: ms}\ninput_tokens: input_length\n"
        "output_tokens: output_length\n"
    )
    out_csv = tmp_path / "s.csv"
    args = ["workload", "sample", str(rag_log), "--mapping", str(mapping), "--time-unit", "s"]
    assert cli.main([*args, "--n", "4", "--seed", "0", "--out", str(out_csv)]) == 0
    arrivals = [line.split(",")[0] for line in out_csv.read_text().splitlines()[1:]]
    assert arrivals == ["0.000000", "2.000000", "4.000000", "6.000000"]  # s, not ms
    capsys.readouterr()
    assert cli.main(["workload", "stats", str(rag_log), "--mapping", str(mapping), "--strict"]) == 2
    assert "rag.jsonl:5: input_tokens (input_length): not a number, got 'n/a'" in (
        capsys.readouterr().err
    )


def test_an_incomplete_mapping_names_the_key(rag_log: Path, capsys) -> None:
    assert cli.main(["workload", "stats", str(rag_log), "--time", "timestamp"]) == 2
    assert "command line: time.unit: Field required" in capsys.readouterr().err
