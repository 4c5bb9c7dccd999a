"""The raw rows of a recorded workload file, and the checks every format's reader shares.

A user-made file must fail with its path and line, never as a traceback or a NaN: the cell
and order checks here raise :class:`~offload_rl.errors.DataFileError`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offload_rl.errors import DataFileError
from offload_rl.workloads.request import FloatArray, IntArray

Notes = dict[str, float | int | str]
"""What a loader learnt about a file (shares, medians, seeds), reported by ``workload stats``."""


@dataclass
class RecordedRows:
    """The raw columns of a recorded file, in file order (times in seconds from the first)."""

    kind: str
    arrival_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    session_labels: list[str] | None = None
    hash_ids: list[list[int]] | None = None


def nonneg_int(value: object, what: str, path: Path, line: int) -> int:
    """A non-negative integer from a CSV cell or JSON value, else a DataFileError."""
    if isinstance(value, bool):
        raise DataFileError(path, f"{what}: expected a non-negative integer, got {value!r}", line)
    if isinstance(value, int):
        number: float = value
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise DataFileError(
                path, f"{what}: expected a non-negative integer, got {value!r}", line
            ) from None
    if not math.isfinite(number) or number != int(number):
        raise DataFileError(path, f"{what}: expected a non-negative integer, got {value!r}", line)
    if number < 0:
        raise DataFileError(path, f"{what}: must be >= 0, got {value!r}", line)
    return int(number)


def nonneg_float(value: object, what: str, path: Path, line: int) -> float:
    """A finite non-negative number from a CSV cell or JSON value, else a DataFileError."""
    if isinstance(value, bool):
        raise DataFileError(path, f"{what}: expected a number, got {value!r}", line)
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except ValueError:
        raise DataFileError(path, f"{what}: expected a number, got {value!r}", line) from None
    if not math.isfinite(number):
        raise DataFileError(path, f"{what}: expected a finite number, got {value!r}", line)
    if number < 0:
        raise DataFileError(path, f"{what}: must be >= 0, got {value!r}", line)
    return number


def check_order(times: Sequence[float], lines: Sequence[int], what: str, path: Path) -> None:
    """Recorded times must not go backwards (windows are drawn by arrival order)."""
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise DataFileError(
                path, f"{what} goes backwards ({times[i - 1]:g} then {times[i]:g})", lines[i]
            )


def read_text(path: Path) -> str:
    """The file as text (a BOM is dropped), or a DataFileError that says why not."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFileError(path, "no such file") from None
    except UnicodeDecodeError:
        raise DataFileError(path, "not a text file (UTF-8)") from None
    except OSError as err:
        raise DataFileError(path, f"cannot read: {err.strerror or err}") from None


def csv_rows(
    path: Path, text: str, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: cell})`` per non-blank data row, after checking the header."""
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        header = [cell.strip() for cell in row]
        break
    if header is None:
        raise DataFileError(path, "empty file (no header, no requests)")
    header_line = reader.line_num
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFileError(
            path,
            f"missing column(s) {', '.join(missing)} (header: {', '.join(header)})",
            header_line,
        )
    index = {c: header.index(c) for c in required}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataFileError(
                path, f"expected {len(header)} fields, found {len(row)}", reader.line_num
            )
        yield reader.line_num, {c: row[i] for c, i in index.items()}


class MillisecondRows:
    """Collects the rows of a file whose requests carry a time in ms, ``input_length`` and
    ``output_length`` (BurstGPT and Mooncake name them alike), checking each cell."""

    def __init__(self, path: Path, time_column: str) -> None:
        self.path = path
        self.time_column = time_column
        self.arrival_s: list[float] = []
        self.lines: list[int] = []
        self.input_tokens: list[int] = []
        self.output_tokens: list[int] = []

    def add(self, line: int, cells: Mapping[str, object]) -> None:
        """One request; a bad cell raises a DataFileError with its line."""
        path, column = self.path, self.time_column
        self.lines.append(line)
        self.arrival_s.append(nonneg_float(cells[column], column, path, line) / 1000.0)
        self.input_tokens.append(nonneg_int(cells["input_length"], "input_length", path, line))
        self.output_tokens.append(nonneg_int(cells["output_length"], "output_length", path, line))

    def rows(
        self,
        kind: str,
        empty: str,
        session_labels: list[str] | None = None,
        hash_ids: list[list[int]] | None = None,
    ) -> RecordedRows:
        """At least one request (else ``empty``), times that never go backwards, re-based to
        the first request."""
        if not self.arrival_s:
            raise DataFileError(self.path, empty)
        check_order(self.arrival_s, self.lines, self.time_column, self.path)
        times = np.asarray(self.arrival_s, dtype=np.float64)
        return RecordedRows(
            kind,
            times - times[0],
            np.asarray(self.input_tokens, np.int64),
            np.asarray(self.output_tokens, np.int64),
            session_labels=session_labels,
            hash_ids=hash_ids,
        )
