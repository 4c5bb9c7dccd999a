"""Any request log through a field mapping: shapes, skip counts, sorting, strictness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offload_rl.errors import ConfigError, DataFileError
from offload_rl.workloads import (
    BUILTIN_MAPPINGS,
    FieldMapping,
    RecordedWorkload,
    TokenScaling,
    field_mapping_from_dict,
    load_field_mapping,
    load_workload,
    read_mapped_rows,
    stream_stats,
)

RAW = TokenScaling.unlimited()

RAG_MAPPING = {
    "time": {"field": "timestamp", "unit": "s"},
    "input_tokens": "input_length",
    "output_tokens": "output_length",
    "session_id": "session_id",
    "block_ids": {"field": "hash_ids", "order": ["system", "passages", "history", "user"]},
    "input_includes_history": False,
}


def _rag_record(t: str, inp: object, out: int, session: str, **parts: list[int]) -> str:
    return json.dumps(
        {
            "timestamp": t,
            "input_length": inp,
            "output_length": out,
            "session_id": session,
            "hash_ids": parts,
        }
    )


@pytest.fixture()
def rag_log(tmp_path: Path) -> Path:
    """JSON Lines, times as numeric strings of seconds, a dict of block lists, sessions; line 3
    is out of order, line 4 has negative tokens, line 6 lacks its output."""
    lines = [
        _rag_record("100.0", 50, 10, "a", system=[1], passages=[2, 3], user=[4]),
        _rag_record("101.5", 30, 5, "b", system=[1], user=[9]),
        _rag_record("100.5", 20, 7, "c", system=[1], passages=[5]),
        _rag_record("102.0", -3, 5, "a", system=[1]),
        _rag_record("104.0", 80, 12, "a", system=[1], history=[2, 3, 4], user=[6]),
        json.dumps({"timestamp": "105", "input_length": 8, "session_id": "b", "hash_ids": {}}),
    ]
    path = tmp_path / "rag.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_with_sessions_and_block_dicts(rag_log: Path) -> None:
    mapping = field_mapping_from_dict(RAG_MAPPING, "test")
    rows, report = read_mapped_rows(rag_log, mapping)
    assert rows.arrival_s.tolist() == [0.0, 0.5, 1.5, 4.0]
    assert rows.input_tokens.tolist() == [50, 20, 30, 80]
    assert rows.session_labels == ["a", "c", "b", "a"]
    # Parts flattened in the stated order (system, passages, history, user), ids interned.
    assert rows.hash_ids == [[0, 1, 2, 3], [0, 5], [0, 4], [0, 1, 2, 3, 6]]
    assert report.records == 6 and report.kept == 4 and report.out_of_order == 1
    assert report.skipped == {
        "input_tokens (input_length): negative": 1,
        "output_tokens (output_length): missing": 1,
    }
    assert report.first_line == {
        "input_tokens (input_length): negative": 4,
        "output_tokens (output_length): missing": 6,
    }
    workload = RecordedWorkload.from_mapping(rag_log, mapping, RAW)
    requests = workload.all_requests()
    assert [(r.session_id, r.turn, r.new_tokens, r.context_tokens) for r in requests] == [
        (0, 0, 50, 0),
        (1, 0, 20, 0),
        (2, 0, 30, 0),
        (0, 1, 80, 60),
    ]
    assert requests[0].gap_to_next_turn_s == 4.0
    assert workload.notes["out_of_order_sorted"] == 1
    assert workload.notes["skipped: input_tokens (input_length): negative"] == 1


def test_strict_rejects_the_first_bad_record_with_its_line(rag_log: Path) -> None:
    mapping = field_mapping_from_dict({**RAG_MAPPING, "strict": True}, "test")
    with pytest.raises(DataFileError, match=r"rag.jsonl:4: input_tokens .*negative, got -3"):
        read_mapped_rows(rag_log, mapping)


def test_a_dict_of_blocks_needs_an_order(rag_log: Path) -> None:
    blocks = {"field": "hash_ids"}
    mapping = field_mapping_from_dict({**RAG_MAPPING, "block_ids": blocks}, "test")
    with pytest.raises(DataFileError, match=r"rag.jsonl:1: .*block_ids.order"):
        read_mapped_rows(rag_log, mapping)


def test_csv_iso_times_without_sessions(tmp_path: Path) -> None:
    """ISO 8601 with and without offsets; no sessions: they are synthesised (seeded)."""
    path = tmp_path / "gateway.csv"
    path.write_text(
        "when,prompt,completion\n"
        "2024-03-01T10:00:00Z,100,20\n"
        "2024-03-01 11:00:02.5+01:00,40,abc\n"
        "2024-03-01T10:00:01.250,40,8\n"
        "yesterday,5,5\n"
        "2024-03-01T10:00:03,7,9\n"
    )
    mapping = FieldMapping.model_validate(
        {
            "time": {"field": "when", "unit": "iso8601"},
            "input_tokens": "prompt",
            "output_tokens": "completion",
        }
    )
    rows, report = read_mapped_rows(path, mapping)
    assert rows.arrival_s.tolist() == [0.0, 1.25, 3.0]
    assert rows.input_tokens.tolist() == [100, 40, 7]
    assert rows.session_labels is None and rows.hash_ids is None
    assert report.skipped == {
        "output_tokens (completion): not a number": 1,
        "time (when): not an ISO 8601 time": 1,
    }
    assert report.out_of_order == 0
    workload = load_workload(str(path), RAW, mapping=mapping, seed=3)
    assert workload.notes["seed"] == 3  # type: ignore[attr-defined]
    assert [r.new_tokens for r in workload.all_requests()] == [100, 40, 7]  # type: ignore[attr-defined]


def test_csv_milliseconds_with_history_included(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("t_ms,in,out,conv\n0,100,50,x\n2000,40,10,y\n5000,170,30,x\n")
    mapping = FieldMapping.model_validate(
        {
            "time": {"field": "t_ms", "unit": "ms"},
            "input_tokens": "in",
            "output_tokens": "out",
            "session_id": "conv",
            "input_includes_history": True,
        }
    )
    requests = RecordedWorkload.from_mapping(path, mapping, RAW).all_requests()
    assert [r.arrival_s for r in requests] == [0.0, 2.0, 5.0]
    assert [(r.session_id, r.new_tokens, r.context_tokens) for r in requests] == [
        (0, 100, 0),
        (1, 40, 0),
        (0, 20, 150),  # 170 - 100 - 50
    ]


def test_filters_window_and_first(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("t,in,out\n" + "".join(f"{t},10,1\n" for t in range(10)))
    base = {"time": {"field": "t", "unit": "s"}, "input_tokens": "in", "output_tokens": "out"}
    mapping = FieldMapping.model_validate(
        {**base, "filters": {"start_s": 2, "end_s": 8, "first": 4}}
    )
    rows, report = read_mapped_rows(path, mapping)
    assert rows.arrival_s.tolist() == [0.0, 1.0, 2.0, 3.0]  # records at 2..5 s, re-based
    assert report.kept == 4 and report.filtered_out == 6


def test_mapping_and_header_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("t,in,out\n1,2,3\n")
    mapping = FieldMapping.model_validate(
        {"time": {"field": "time", "unit": "s"}, "input_tokens": "in", "output_tokens": "out"}
    )
    with pytest.raises(DataFileError, match=r"log.csv:1: mapped column\(s\) time not in"):
        read_mapped_rows(path, mapping)


def test_mapping_yaml_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("time: {field: t, unit: hours}\ninput_tokens: a\noutput_tokens: b\n")
    with pytest.raises(ConfigError, match=r"m.yaml: time.unit: "):
        load_field_mapping(path)
    path.write_text("time: {field: t, unit: s}\ninput_tokens: a\noutput_tokens: b\nsession_id: s\n")
    with pytest.raises(ConfigError, match=r"m.yaml: input_includes_history: required"):
        load_field_mapping(path)
    path.write_text("time: {field: t, unit: s}\ninput_tokens: a\noutput_tokens: b\n")
    assert load_field_mapping(path).time.unit == "s"


# ---- the recorded files in ../shared ----------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("AzureLLMInferenceTrace_conv.csv", "azure"),
        ("AzureLLMInferenceTrace_code.csv", "azure"),
        ("burstgpt_sessions_first1000.csv", "burstgpt"),
        ("mooncake_conversation_trace.jsonl", "mooncake"),
    ],
)
def test_builtin_mappings_read_the_recordings_identically(
    shared_workloads: Path, name: str, kind: str
) -> None:
    path = shared_workloads / name
    today = RecordedWorkload.from_file(path, kind, RAW).all_requests()  # type: ignore[arg-type]
    mapped = RecordedWorkload.from_mapping(path, BUILTIN_MAPPINGS[kind], RAW).all_requests()
    assert stream_stats(mapped) == stream_stats(today)
    assert mapped == today


def test_one_late_record_counts_once(tmp_path: Path) -> None:
    """A record written early (t = 5 before 1, 2, 3) is one out of order, not three."""
    path = tmp_path / "log.csv"
    path.write_text("t,in,out\n0,1,1\n5,2,1\n1,3,1\n2,4,1\n3,5,1\n")
    base = {"time": {"field": "t", "unit": "s"}, "input_tokens": "in", "output_tokens": "out"}
    rows, report = read_mapped_rows(path, FieldMapping.model_validate(base))
    assert report.out_of_order == 1
    assert rows.input_tokens.tolist() == [1, 3, 4, 5, 2]
