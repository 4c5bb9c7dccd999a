"""The BurstGPT format: recorded session ids, inputs that include the session's history.

Real session ids. ``input_length`` already *includes the conversation history*: along a
session the input grows by the previous input + output plus a short new message. In the first
1000 rows, 701 follow-up turns: median input growth +110 tokens; ``input - (previous input +
previous output)`` has median +22 and is ``>= 1`` for 468 turns (66.8%, median +34, the new
message); in the other 233 the client trimmed or edited the history (the input shrinks, e.g.
1477 -> 1505 -> 1309 -> 868 -> 425). So ``new = input - previous input - previous output``
when that is ``>= 1``; otherwise the new message is unobservable and is estimated as the
median appended message of the same session (else of the file), at most the input.
"""

from __future__ import annotations

from pathlib import Path

from offload_rl.errors import DataFileError
from offload_rl.workloads.request import IntArray
from offload_rl.workloads.rows import (
    MillisecondRows,
    Notes,
    RecordedRows,
    csv_rows,
    read_text,
)
from offload_rl.workloads.sessions import derive_sessions

BURSTGPT_COLUMNS: tuple[str, ...] = ("arrival_ms", "input_length", "output_length", "session_id")


def read_burstgpt_csv(path: str | Path, text: str | None = None) -> RecordedRows:
    """BurstGPT sessions: ``request_index,arrival_ms,input_length,output_length,session_id``."""
    path = Path(path)
    text = read_text(path) if text is None else text
    collected = MillisecondRows(path, "arrival_ms")
    labels: list[str] = []
    for line, row in csv_rows(path, text, BURSTGPT_COLUMNS):
        collected.add(line, row)
        label = row["session_id"].strip()
        if not label:
            raise DataFileError(path, "session_id: empty", line)
        labels.append(label)
    return collected.rows("burstgpt", "no requests (header only)", session_labels=labels)


def burstgpt_sessions(rows: RecordedRows, seed: int) -> tuple[IntArray, IntArray, Notes]:
    """Sessions from the recorded labels; new tokens split off the history-including input."""
    return derive_sessions(rows, input_includes_history=True, seed=seed)
