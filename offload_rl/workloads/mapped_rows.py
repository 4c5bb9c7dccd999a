"""Reading any CSV or JSON Lines request log through a :class:`FieldMapping`.

Never a silent wrong number: a record that cannot be used (a required field missing or not a
number, negative tokens, a time that does not parse, block ids of the wrong shape) is skipped
and counted per reason with its first line, or rejects the file with ``file:line`` when the
mapping is ``strict``. Records out of time order are sorted (stably) and counted, since logs
written by several workers are rarely in order. A mismatch between the mapping and the file
itself (a column the header lacks, a dict of block ids without ``order``) is always an error.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from offload_rl.errors import DataFileError
from offload_rl.workloads.mapping import UNIT_SECONDS, FieldMapping
from offload_rl.workloads.rows import RecordedRows, read_text

_TZ_SUFFIX = re.compile(r"(Z|[+-]\d\d(:?\d\d)?)$")


class RecordError(Exception):
    """One record cannot be used: ``reason`` is the count key, ``value`` what was found."""

    def __init__(self, reason: str, value: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value


@dataclass
class LoadReport:
    """What reading a log did to its records (printed by ``workload stats``)."""

    records: int = 0
    kept: int = 0
    out_of_order: int = 0
    """The fewest records that, moved, put the file in time order (sorted into place)."""
    filtered_out: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    first_line: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.first_line.setdefault(reason, line)

    def summary(self) -> str:
        """One line: records read, kept, sorted, skipped per reason (with first line)."""
        parts = [f"{self.records} records, {self.kept} kept"]
        if self.out_of_order:
            parts.append(f"{self.out_of_order} out of time order (sorted)")
        if self.filtered_out:
            parts.append(f"{self.filtered_out} outside the filters")
        for reason, count in self.skipped.items():
            parts.append(f"skipped {count}: {reason} (first at line {self.first_line[reason]})")
        return "; ".join(parts)


def detect_format(path: Path, text: str) -> str:
    """``jsonl`` when the first non-blank line is a JSON object, else ``csv``."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise DataFileError(path, "empty file (no requests)")
    return "jsonl" if first.startswith("{") else "csv"


def iter_records(path: Path, text: str, fmt: str) -> Iterator[tuple[int, object]]:
    """``(line, record)`` per non-blank record: a dict, or a RecordError for an unreadable one."""
    if fmt == "jsonl":
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                yield number, RecordError("invalid JSON", raw[:40])
                continue
            yield number, obj if isinstance(obj, dict) else RecordError("not a JSON object", obj)
        return
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            break
    if header is None:
        raise DataFileError(path, "empty file (no header, no requests)")
    yield reader.line_num, {"__header__": header}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield reader.line_num, RecordError(f"expected {len(header)} CSV fields", len(row))
            continue
        yield reader.line_num, dict(zip(header, row, strict=True))


def lookup(record: Mapping[str, object], name: str) -> object:
    """A field by name, or by dotted path into nested JSON objects; None when absent."""
    if name in record:
        return record[name]
    node: object = record
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _required(record: Mapping[str, object], role: str, name: str) -> object:
    value = lookup(record, name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError(f"{role} ({name}): missing")
    return value


def _number(value: object, what: str) -> float:
    if isinstance(value, bool | list | dict):
        raise RecordError(f"{what}: not a number", value)
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except ValueError:
        raise RecordError(f"{what}: not a number", value) from None
    if not math.isfinite(number):
        raise RecordError(f"{what}: not a finite number", value)
    return number


def token_count(value: object, what: str) -> int:
    """A non-negative integer token count (``12`` or ``"12.0"``), else RecordError."""
    number = _number(value, what)
    if number < 0:
        raise RecordError(f"{what}: negative", value)
    if number != int(number):
        raise RecordError(f"{what}: not a whole number", value)
    return int(number)


def iso_time_ns(value: object, what: str) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time (UTC when it carries an offset)."""
    text = str(value).strip() if isinstance(value, str) else ""
    try:
        if _TZ_SUFFIX.search(text) and ("T" in text or " " in text):
            stamp = datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
            text = stamp.isoformat()
        parsed = np.datetime64(text.replace(" ", "T", 1), "ns")
    except ValueError:
        raise RecordError(f"{what}: not an ISO 8601 time", value) from None
    if not text or np.isnat(parsed):
        raise RecordError(f"{what}: not an ISO 8601 time", value)
    return int(parsed.astype(np.int64))


def block_list(value: object, mapping: FieldMapping, path: Path, line: int) -> list[object]:
    """Block ids as one list: a list as is, a dict of lists concatenated in the stated order."""
    assert mapping.block_ids is not None
    what = f"block_ids ({mapping.block_ids.field})"
    if isinstance(value, dict):
        order = mapping.block_ids.order
        if order is None:
            raise DataFileError(
                path,
                f"{what} holds a dict of lists (keys {', '.join(map(str, value))}): "
                "state the concatenation order in block_ids.order",
                line,
            )
        unknown = [k for k in value if k not in order]
        if unknown:
            raise RecordError(f"{what}: part not in block_ids.order", unknown[0])
        parts = [value.get(k) or [] for k in order]
    else:
        parts = [value]
    flat: list[object] = []
    for part in parts:
        if not isinstance(part, list) or any(isinstance(b, list | dict | bool) for b in part):
            raise RecordError(f"{what}: expected a list of block ids", part)
        flat.extend(part)
    return flat


@dataclass
class _Collected:
    """Usable records in file order, before sorting and filtering."""

    lines: list[int] = field(default_factory=list)
    times: list[float | int] = field(default_factory=list)
    """Seconds (numeric units) or integer nanoseconds since the epoch (``iso8601``)."""
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    blocks: list[list[int]] = field(default_factory=list)


def _parse_record(
    record: Mapping[str, object],
    mapping: FieldMapping,
    path: Path,
    line: int,
    block_ids: dict[object, int],
    out: _Collected,
) -> None:
    """Append one record's fields to ``out``, or raise RecordError before appending any."""
    time = mapping.time
    raw_time = _required(record, "time", time.field)
    what = f"time ({time.field})"
    stamp: float | int = (
        iso_time_ns(raw_time, what)
        if time.unit == "iso8601"
        else _number(raw_time, what) / UNIT_SECONDS[time.unit]
    )
    tokens_in = token_count(
        _required(record, "input_tokens", mapping.input_tokens),
        f"input_tokens ({mapping.input_tokens})",
    )
    tokens_out = token_count(
        _required(record, "output_tokens", mapping.output_tokens),
        f"output_tokens ({mapping.output_tokens})",
    )
    label = ""
    if mapping.session_id:
        label = str(_required(record, "session_id", mapping.session_id)).strip()
    blocks: list[int] = []
    if mapping.block_ids:
        raw_blocks = _required(record, "block_ids", mapping.block_ids.field)
        for b in block_list(raw_blocks, mapping, path, line):
            blocks.append(block_ids.setdefault(b, len(block_ids)))
    out.lines.append(line)
    out.times.append(stamp)
    out.inputs.append(tokens_in)
    out.outputs.append(tokens_out)
    if mapping.session_id:
        out.labels.append(label)
    if mapping.block_ids:
        out.blocks.append(blocks)


def _check_header(path: Path, header: list[str], mapping: FieldMapping, line: int) -> None:
    """Every mapped field must be a column: a mismatch is the mapping's fault, not a record's."""
    missing = [name for name in mapping.fields() if name not in header]
    if missing:
        raise DataFileError(
            path,
            f"mapped column(s) {', '.join(missing)} not in the header ({', '.join(header)})",
            line,
        )


def read_mapped_rows(
    path: str | Path, mapping: FieldMapping, text: str | None = None
) -> tuple[RecordedRows, LoadReport]:
    """The usable records of a log, sorted by time, filtered, re-based to the first request."""
    path = Path(path)
    text = read_text(path) if text is None else text
    fmt = detect_format(path, text) if mapping.format == "auto" else mapping.format
    report = LoadReport()
    got = _Collected()
    interned: dict[object, int] = {}
    for line, record in iter_records(path, text, fmt):
        if isinstance(record, dict) and "__header__" in record:
            _check_header(path, list(record["__header__"]), mapping, line)
            continue
        report.records += 1
        try:
            if isinstance(record, RecordError):
                raise record
            assert isinstance(record, dict)
            _parse_record(record, mapping, path, line, interned, got)
        except RecordError as bad:
            if mapping.strict:
                shown = "" if bad.value is None else f", got {bad.value!r}"
                raise DataFileError(path, f"{bad.reason}{shown}", line) from None
            report.skip(bad.reason, line)
    if not got.times:
        raise DataFileError(path, f"no usable requests ({report.summary()})")
    return _sorted_and_filtered(path, got, mapping, report), report


def out_of_order(times: list[float] | list[int]) -> int:
    """Records not on a longest non-decreasing run: one late record counts one, not all the
    records it jumped over."""
    tails: list[float] = []
    for t in times:
        i = bisect.bisect_right(tails, t)
        tails[i : i + 1] = [t]
    return len(times) - len(tails)


def _sorted_and_filtered(
    path: Path, got: _Collected, mapping: FieldMapping, report: LoadReport
) -> RecordedRows:
    times = np.asarray(got.times, dtype=np.int64 if mapping.time.unit == "iso8601" else float)
    report.out_of_order = out_of_order(times.tolist())
    order = np.argsort(times, kind="stable")
    times = times[order]
    seconds = (
        (times - times[0]).astype(np.float64) / 1e9
        if mapping.time.unit == "iso8601"
        else times - times[0]
    )
    keep = np.ones(len(order), dtype=bool)
    window = mapping.filters
    if window.start_s is not None:
        keep &= seconds >= window.start_s
    if window.end_s is not None:
        keep &= seconds < window.end_s
    if window.first is not None:
        keep &= np.cumsum(keep) <= window.first
    report.filtered_out = int((~keep).sum())
    report.kept = int(keep.sum())
    if not report.kept:
        raise DataFileError(path, f"no requests left after the filters ({report.summary()})")
    order = order[keep]
    seconds = seconds[keep] - seconds[keep][0]
    return RecordedRows(
        "mapped",
        seconds,
        np.asarray(got.inputs, np.int64)[order],
        np.asarray(got.outputs, np.int64)[order],
        session_labels=[got.labels[i] for i in order] if mapping.session_id else None,
        hash_ids=[got.blocks[i] for i in order] if mapping.block_ids else None,
    )
