"""The Azure LLM inference trace format: rows without sessions, chained into sessions.

Format: ``TIMESTAMP,ContextTokens,GeneratedTokens``, no sessions.

Each row is one turn whose ``ContextTokens`` are taken as its *new* prompt tokens. Rows are
chained into sessions with the default workload's turn-count and inter-turn-gap
distributions (fitted to BurstGPT: turns ~ mixture of two geometrics, 78% with mean 2.2
turns and 22% with mean 7.2, mean 3.34; gaps ~ BurstGPT's empirical gap quantiles, median
144 s; the numbers are in ``workload_default.json``): a row not yet used opens a session, and
each next turn is the first unused row at or after ``previous arrival + gap`` (seeded by
``seed``). Sessions whose next turn falls past the end of the 58-minute trace end early: conv
gives 8,743 sessions, 2.22 turns on average (78.9% of requests in multi-turn sessions),
median gap 104 s. Caveat: in a chat service ``ContextTokens`` probably already holds some
history, so taking it as new tokens overstates prompts; use BurstGPT for session realism.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offload_rl.errors import DataFileError
from offload_rl.workloads.request import FloatArray, IntArray
from offload_rl.workloads.rows import (
    Notes,
    RecordedRows,
    check_order,
    csv_rows,
    nonneg_int,
    read_text,
)
from offload_rl.workloads.sessions import derive_sessions

AZURE_COLUMNS: tuple[str, ...] = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _parse_azure_times(stamps: list[str], lines: list[int], path: Path) -> FloatArray:
    """Seconds from the first stamp; a bad stamp is reported with its line."""
    cleaned = [s.strip().replace(" ", "T", 1) for s in stamps]
    try:
        times = np.array(cleaned, dtype="datetime64[ns]")
    except ValueError:
        for stamp, line in zip(stamps, lines, strict=True):
            try:
                np.datetime64(stamp.strip().replace(" ", "T", 1), "ns")
            except ValueError:
                raise DataFileError(
                    path, f"TIMESTAMP: expected a date and time, got {stamp!r}", line
                ) from None
        raise  # pragma: no cover - numpy rejected the column but no single value
    if np.isnat(times).any():
        line = lines[int(np.flatnonzero(np.isnat(times))[0])]
        raise DataFileError(path, "TIMESTAMP: expected a date and time, got 'NaT'", line)
    ns = (times - times[0]).astype(np.int64)
    return ns.astype(np.float64) / 1e9


def read_azure_csv(path: str | Path, text: str | None = None) -> RecordedRows:
    """Azure LLM inference trace: ``TIMESTAMP,ContextTokens,GeneratedTokens``."""
    path = Path(path)
    text = read_text(path) if text is None else text
    stamps: list[str] = []
    lines: list[int] = []
    prompt: list[int] = []
    output: list[int] = []
    for line, row in csv_rows(path, text, AZURE_COLUMNS):
        stamps.append(row["TIMESTAMP"])
        lines.append(line)
        prompt.append(nonneg_int(row["ContextTokens"], "ContextTokens", path, line))
        output.append(nonneg_int(row["GeneratedTokens"], "GeneratedTokens", path, line))
    if not stamps:
        raise DataFileError(path, "no requests (header only)")
    arrival = _parse_azure_times(stamps, lines, path)
    check_order(arrival.tolist(), lines, "TIMESTAMP", path)
    return RecordedRows(
        "azure", arrival, np.asarray(prompt, np.int64), np.asarray(output, np.int64)
    )


def azure_sessions(rows: RecordedRows, seed: int) -> tuple[IntArray, IntArray, Notes]:
    """Sessions synthesised with the default turns and gaps (seeded); ContextTokens = new."""
    return derive_sessions(rows, input_includes_history=False, seed=seed)
