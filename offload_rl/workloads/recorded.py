"""Recorded workloads: one file of any format as sessions, drawn as contiguous windows.

The format is told from the content (:func:`detect_kind`); each format's module reads its rows
and derives its sessions (``azure``, ``burstgpt``, ``mooncake``), and :class:`SessionStream`
holds the result raw, so scaling is applied per drawn window.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from offload_rl.errors import ConfigError, DataFileError
from offload_rl.workloads.azure import AZURE_COLUMNS, azure_sessions, read_azure_csv
from offload_rl.workloads.burstgpt import BURSTGPT_COLUMNS, burstgpt_sessions, read_burstgpt_csv
from offload_rl.workloads.mapped_rows import read_mapped_rows
from offload_rl.workloads.mapping import FieldMapping
from offload_rl.workloads.mooncake import mooncake_sessions, read_mooncake_jsonl
from offload_rl.workloads.request import FloatArray, IntArray, Request, TokenScaling
from offload_rl.workloads.rows import Notes, RecordedRows, read_text
from offload_rl.workloads.sessions import derive_sessions
from offload_rl.workloads.stream import assemble_stream, group_by_key

WorkloadKind = Literal["auto", "azure", "burstgpt", "mooncake"]
WORKLOAD_KINDS: tuple[str, ...] = get_args(WorkloadKind)

_FORMATS: dict[
    str,
    tuple[
        Callable[[Path, str], RecordedRows],
        Callable[[RecordedRows, int], tuple[IntArray, IntArray, Notes]],
    ],
] = {
    "azure": (read_azure_csv, azure_sessions),
    "burstgpt": (read_burstgpt_csv, burstgpt_sessions),
    "mooncake": (read_mooncake_jsonl, mooncake_sessions),
}
"""Per format: its reader and its rule for sessions and new tokens."""


def detect_kind(path: Path, text: str) -> str:
    """Tell the format from the content: a JSON object first, or the CSV header's columns."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise DataFileError(path, "empty file (no requests)")
    if first.startswith("{"):
        return "mooncake"
    header = {cell.strip() for cell in next(csv.reader([first]))}
    if "session_id" in header:
        return "burstgpt"
    if "ContextTokens" in header or "TIMESTAMP" in header:
        return "azure"
    raise DataFileError(
        path,
        "cannot tell the workload format: expected a CSV header with "
        f"{','.join(AZURE_COLUMNS)} (Azure) or {','.join(BURSTGPT_COLUMNS)} (BurstGPT), "
        "or JSON lines with timestamp, input_length, output_length, hash_ids (Mooncake); "
        "for any other log run 'offload-rl workload inspect' and give a field mapping",
        1,
    )


@dataclass(frozen=True)
class SessionStream:
    """A whole recorded stream with its sessions, raw (unscaled) and sorted by arrival."""

    arrival_s: FloatArray
    session: IntArray
    new_tokens: IntArray
    output_tokens: IntArray
    prior_context: IntArray
    """Raw context: sum of the session's earlier new + output tokens."""
    next_index: IntArray
    """Index of the same session's next turn, -1 if none."""
    n_sessions: int = field(default=0)

    @classmethod
    def build(
        cls, arrival: FloatArray, session: IntArray, new: IntArray, output: IntArray
    ) -> SessionStream:
        """Prior context and next-turn index of every row, from its session."""
        n = len(session)
        prior = np.zeros(n, dtype=np.int64)
        nxt = np.full(n, -1, dtype=np.int64)
        if n:
            order, group, first = group_by_key(session)
            tokens_sorted = (new + np.maximum(output, 1))[order]
            before = np.cumsum(tokens_sorted) - tokens_sorted
            prior[order] = before - before[first][group]
            same = np.flatnonzero(group[1:] == group[:-1])
            nxt[order[same]] = order[same + 1]
        return cls(
            arrival.astype(np.float64),
            session.astype(np.int64),
            np.maximum(new, 1).astype(np.int64),
            np.maximum(output, 1).astype(np.int64),
            prior,
            nxt,
            int(session.max()) + 1 if n else 0,
        )

    def __len__(self) -> int:
        return len(self.session)


class RecordedWorkload:
    """One recorded file turned into sessions; :meth:`sample` draws contiguous windows.

    A window of ``n`` consecutive requests (by arrival) starts at a random row; time is re-based
    to its first request and sessions renumbered ``0..m-1``. A request longer than the file
    loops it: each lap is shifted by the recording's span plus one mean inter-arrival time, with
    its own sessions.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        path: Path,
        stream: SessionStream,
        scaling: TokenScaling | None = None,
        notes: Notes | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.path = path
        self.stream = stream
        self.scaling = scaling if scaling is not None else TokenScaling()
        self.notes = dict(notes or {})
        n = len(stream)
        span = float(stream.arrival_s[-1] - stream.arrival_s[0])
        self.period_s = span + (span / (n - 1) if n > 1 and span > 0 else 1.0)

    def __repr__(self) -> str:
        return f"RecordedWorkload(name={self.name!r}, kind={self.kind!r}, requests={len(self)})"

    def __len__(self) -> int:
        return len(self.stream)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        kind: WorkloadKind = "auto",
        scaling: TokenScaling | None = None,
        seed: int = 0,
    ) -> RecordedWorkload:
        """Load one recorded file; ``seed`` only matters for Azure (synthesised sessions)."""
        path = Path(path)
        if kind not in WORKLOAD_KINDS:
            raise ConfigError(f"workload kind must be one of {', '.join(WORKLOAD_KINDS)}: {kind!r}")
        text = read_text(path)
        resolved = detect_kind(path, text) if kind == "auto" else kind
        read_rows, format_sessions = _FORMATS[resolved]
        try:
            rows = read_rows(path, text)
        except DataFileError as err:
            if kind != "auto":
                raise
            hint = f"read as {resolved}; for another log see 'offload-rl workload inspect'"
            raise DataFileError(path, f"{err.reason} ({hint})", err.line) from None
        session, new, notes = format_sessions(rows, seed)
        stream = SessionStream.build(rows.arrival_s, session, new, rows.output_tokens)
        return cls(path.name, resolved, path, stream, scaling, notes)

    @classmethod
    def from_mapping(
        cls,
        path: str | Path,
        mapping: FieldMapping,
        scaling: TokenScaling | None = None,
        seed: int = 0,
    ) -> RecordedWorkload:
        """Load any CSV/JSON Lines log through a field mapping; what reading skipped, sorted
        or filtered out is in ``notes`` (``seed`` matters only when sessions are synthesised)."""
        path = Path(path)
        rows, report = read_mapped_rows(path, mapping)
        block_tokens = mapping.block_ids.block_tokens if mapping.block_ids else None
        history = bool(mapping.input_includes_history)
        session, new, notes = derive_sessions(rows, history, seed, block_tokens)
        stream = SessionStream.build(rows.arrival_s, session, new, rows.output_tokens)
        notes = {"load": report.summary(), "out_of_order_sorted": report.out_of_order, **notes}
        notes.update({f"skipped: {reason}": n for reason, n in report.skipped.items()})
        return cls(path.name, "mapped", path, stream, scaling, notes)

    def all_requests(self) -> list[Request]:
        """The whole recording as one stream (turns and context as recorded)."""
        return self._window(0, len(self.stream))

    def sample(self, rng: np.random.Generator, n_requests: int) -> list[Request]:
        """``n_requests`` consecutive recorded requests from a random starting row."""
        if n_requests < 0:
            raise ValueError(f"n_requests must be >= 0, got {n_requests}")
        n_rows = len(self.stream)
        if n_requests <= n_rows:
            start = int(rng.integers(0, n_rows - n_requests + 1))
        else:
            start = int(rng.integers(0, n_rows))
        return self._window(start, n_requests)

    def _window(self, start: int, n: int) -> list[Request]:
        s = self.stream
        n_rows = len(s)
        index = np.arange(start, start + n, dtype=np.int64)
        base = index % n_rows
        lap = index // n_rows
        arrival = s.arrival_s[base] + lap * self.period_s
        key = s.session[base] + lap * s.n_sessions
        nxt = s.next_index[base]
        has_next = (nxt >= 0) & (nxt + lap * n_rows < start + n)
        gap = np.where(has_next, s.arrival_s[np.maximum(nxt, 0)] - s.arrival_s[base], np.nan)
        return assemble_stream(
            arrival - arrival[0] if n else arrival,
            key,
            s.new_tokens[base],
            s.output_tokens[base],
            s.prior_context[base],
            gap,
            self.scaling,
        )
