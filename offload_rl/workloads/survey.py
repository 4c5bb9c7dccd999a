"""What ``offload-rl workload inspect`` sees in a request log: its fields, their types and
examples, and a suggested field mapping.

Inference happens here, where it is printed for the user to check, and never at load time. Each
suggestion says what it rests on (a field name, the magnitude of the times, how inputs grow
along a session); a field it cannot place is left for the user, marked ``CHECK``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from offload_rl.errors import DataFileError
from offload_rl.workloads.mapped_rows import (
    RecordError,
    detect_format,
    iso_time_ns,
    iter_records,
    token_count,
)
from offload_rl.workloads.rows import read_text

SURVEY_RECORDS = 2000
"""Records read by ``inspect`` (enough to see every field; a log can be millions)."""

_NAME_HINTS: dict[str, tuple[str, ...]] = {
    "time": ("timestamp", "arrival", "time", "created", "start", "date"),
    "input_tokens": ("input", "prompt", "context"),
    "output_tokens": ("output", "generated", "completion", "response", "decode"),
    "session_id": ("session", "conversation", "conv", "chat", "thread", "dialog"),
    "block_ids": ("hash", "block", "prefix"),
}
_UNIT_SUFFIX = re.compile(r"(?:^|[_\-. ])(s|sec|secs|seconds|ms|millis|us|micros|ns|nanos)$", re.I)
_UNIT_NAMES = {"s": "s", "sec": "s", "secs": "s", "seconds": "s", "ms": "ms", "millis": "ms"}
_UNIT_NAMES.update({"us": "us", "micros": "us", "ns": "ns", "nanos": "ns"})


def value_type(value: object) -> str:
    """The kind of one value, as a mapping would read it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "empty"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict of lists" if all(isinstance(v, list) for v in value.values()) else "object"
    try:
        float(str(value))
        return "numeric string"
    except ValueError:
        pass
    try:
        iso_time_ns(value, "")
        return "ISO 8601 time"
    except RecordError:
        return "string"


@dataclass
class FieldSurvey:
    """One field across the surveyed records."""

    name: str
    types: Counter[str] = field(default_factory=Counter)
    examples: list[object] = field(default_factory=list)
    values: list[object] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    """Keys of a dict-of-lists field, in order of first appearance."""

    def add(self, value: object) -> None:
        kind = value_type(value)
        self.types[kind] += 1
        if kind != "empty":
            self.values.append(value)
            if len(self.examples) < 3 and value not in self.examples:
                self.examples.append(value)
        if isinstance(value, dict):
            self.keys += [str(k) for k in value if str(k) not in self.keys]

    def main_type(self) -> str:
        kinds = [k for k, _ in self.types.most_common() if k != "empty"]
        return kinds[0] if kinds else "empty"


@dataclass
class Survey:
    """The fields of a log's first records."""

    path: Path
    fmt: str
    records: int
    fields: dict[str, FieldSurvey]
    unreadable: int
    rows: list[dict[str, object]] = field(default_factory=list)


def survey_file(path: str | Path, limit: int = SURVEY_RECORDS) -> Survey:
    """Fields, types and examples of the first ``limit`` records."""
    path = Path(path)
    text = read_text(path)
    fmt = detect_format(path, text)
    fields: dict[str, FieldSurvey] = {}
    records = unreadable = 0
    rows: list[dict[str, object]] = []
    for _, record in iter_records(path, text, fmt):
        if isinstance(record, dict) and "__header__" in record:
            for name in record["__header__"]:
                fields.setdefault(str(name), FieldSurvey(str(name)))
            continue
        if records >= limit:
            break
        records += 1
        if not isinstance(record, dict):
            unreadable += 1
            continue
        rows.append(record)
        for name, value in record.items():
            fields.setdefault(name, FieldSurvey(name)).add(value)
    if not records:
        raise DataFileError(path, "no records to inspect")
    return Survey(path, fmt, records, fields, unreadable, rows)


def _pick(fields: Sequence[FieldSurvey], role: str, kinds: set[str]) -> FieldSurvey | None:
    """The first field whose name holds a hint of ``role`` and whose values fit ``kinds``."""
    for hint in _NAME_HINTS[role]:
        for f in fields:
            if hint in f.name.lower() and f.main_type() in kinds:
                return f
    return None


def time_unit(f: FieldSurvey) -> tuple[str, str]:
    """The unit of a time field and why: ISO values, a unit in the name, or the magnitude."""
    if f.main_type() == "ISO 8601 time":
        return "iso8601", "ISO 8601 values"
    match = _UNIT_SUFFIX.search(f.name)
    if match:
        return _UNIT_NAMES[match.group(1).lower()], f"the name ends in {match.group(1)!r}"
    numbers = [float(str(v)) for v in f.values if value_type(v) != "ISO 8601 time"]
    top = max(numbers, default=0.0)
    for unit, low in (("ns", 1e17), ("us", 1e14), ("ms", 1e11), ("s", 1e8)):
        if top >= low:
            return unit, f"values near {top:.3g} read as Unix time in {unit}"
    hours = top / 3600.0
    return "s", f"CHECK: relative times spanning {hours:.3g} h in s, or {hours / 1e3:.3g} h in ms"


def history_evidence(rows: Sequence[Mapping[str, object]], session: str, inp: str, out: str) -> str:
    """Whether inputs hold the history: the share of follow-ups whose input is at least the
    previous turn's input + output (BurstGPT: 67%; an input of new tokens only: near 0%)."""
    previous: dict[str, tuple[int, int]] = {}
    grown = followups = 0
    for row in rows:
        try:
            key = str(row.get(session))
            pair = (token_count(row.get(inp), inp), token_count(row.get(out), out))
        except RecordError:
            continue
        if key in previous:
            followups += 1
            grown += pair[0] >= sum(previous[key])
        previous[key] = pair
    if not followups:
        return "CHECK: no follow-up turns among the surveyed records"
    share = grown / followups
    verdict = "true" if share >= 0.5 else "false"
    return f"{verdict}  # {share:.0%} of {followups} follow-ups: input >= previous input + output"


def _name(name: str) -> str:
    """A field name as a YAML scalar (quoted when it is not a plain word)."""
    return name if re.fullmatch(r"[A-Za-z_][\w.\-]*", name) else json.dumps(name)


def suggest_mapping(survey: Survey) -> str:
    """A commented YAML mapping to copy; unplaced fields are marked CHECK."""
    fields = list(survey.fields.values())
    numeric = {"integer", "number", "numeric string"}
    time = _pick(fields, "time", numeric | {"ISO 8601 time"})
    inp = _pick(fields, "input_tokens", numeric)
    out = _pick(fields, "output_tokens", numeric)
    session = _pick(fields, "session_id", {"string", "integer", "numeric string"})
    blocks = _pick(fields, "block_ids", {"list", "dict of lists"})
    lines = [f"# suggested by 'offload-rl workload inspect {survey.path.name}': check every line"]
    lines.append(f"format: {survey.fmt}")
    if time is None:
        lines.append("time: {field: CHECK, unit: CHECK}  # no field looks like a time")
    else:
        unit, why = time_unit(time)
        lines.append(f"time: {{field: {_name(time.name)}, unit: {unit}}}  # {why}")
    for role, f in (("input_tokens", inp), ("output_tokens", out)):
        lines.append(f"{role}: {_name(f.name)}" if f else f"{role}: CHECK  # no field name fits")
    if session is not None:
        lines.append(f"session_id: {_name(session.name)}")
    else:
        lines.append("# no session field: sessions are derived (block prefixes, else synthesised)")
    if blocks is not None:
        lines.append("block_ids:")
        lines.append(f"  field: {_name(blocks.name)}")
        if blocks.main_type() == "dict of lists":
            order = ", ".join(_name(k) for k in blocks.keys)
            lines.append(f"  order: [{order}]  # CHECK: the order the prompt concatenates them")
    if session is not None or blocks is not None:
        if session is not None and inp is not None and out is not None:
            evidence = history_evidence(survey.rows, session.name, inp.name, out.name)
        else:
            evidence = "CHECK  # true when a recorded input holds the session's earlier turns"
        lines.append(f"input_includes_history: {evidence}")
    lines.append("# filters: {start_s: 0, end_s: 3600, first: 10000}  # optional")
    lines.append("# strict: true  # reject the file at the first unusable record")
    return "\n".join(lines) + "\n"
