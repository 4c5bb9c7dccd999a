"""The Mooncake format: JSON lines whose shared KV-block prefixes reveal sessions.

Sessions from shared KV-block prefixes. Hash id 0 opens all 12,031 requests (a system
prompt); the prefix common to every request is not evidence of a session. A request whose
block list shares at least one more block with an earlier request continues the session of
the most recent such request. 38.7% of requests share >= 2 prefix blocks with an earlier one
(as the README says); 4,658 requests continue a session: 7,373 sessions, turns per session
1: 5114, 2: 1311, 3: 464, 4: 200, 5+: 284 (mean 1.63, p90 3, max 43; 57.5% of requests in
multi-turn sessions). 85% of continuations share all of the previous turn's full blocks, and
the input grows like BurstGPT's: ``input - previous input - previous output`` has median +24
and is ``>= 1`` for 3,779 of 4,658 continuations (81%, median +47), so new tokens follow the
BurstGPT rule.
The block-level alternative (context = shared blocks x 512, new = the rest) is not used: it
leaves out the previous output and the partial last block (median "new" 829 tokens), which
would break the stream's context invariant (see :mod:`offload_rl.workloads`); shared blocks
are still reported in the load notes.
"""

from __future__ import annotations

import json
from pathlib import Path

from offload_rl.errors import DataFileError
from offload_rl.workloads.request import IntArray
from offload_rl.workloads.rows import (
    MillisecondRows,
    Notes,
    RecordedRows,
    nonneg_int,
    read_text,
)
from offload_rl.workloads.sessions import derive_sessions

MOONCAKE_BLOCK_TOKENS: int = 512
"""Tokens per KV block of a Mooncake ``hash_ids`` entry."""

MOONCAKE_KEYS: tuple[str, ...] = ("timestamp", "input_length", "output_length", "hash_ids")


def read_mooncake_jsonl(path: str | Path, text: str | None = None) -> RecordedRows:
    """Mooncake trace: one JSON object per line with ``timestamp`` (ms), lengths, ``hash_ids``."""
    path = Path(path)
    text = read_text(path) if text is None else text
    collected = MillisecondRows(path, "timestamp")
    hashes: list[list[int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataFileError(path, f"invalid JSON: {err.msg}", number) from None
        if not isinstance(obj, dict):
            raise DataFileError(path, "expected a JSON object per line", number)
        missing = [k for k in MOONCAKE_KEYS if k not in obj]
        if missing:
            raise DataFileError(path, f"missing key(s) {', '.join(missing)}", number)
        collected.add(number, obj)
        ids = obj["hash_ids"]
        if not isinstance(ids, list):
            raise DataFileError(path, "hash_ids: expected a list of block ids", number)
        hashes.append([nonneg_int(h, "hash_ids", path, number) for h in ids])
    return collected.rows("mooncake", "empty file (no requests)", hash_ids=hashes)


def mooncake_sessions(rows: RecordedRows, seed: int) -> tuple[IntArray, IntArray, Notes]:
    """Sessions from shared block prefixes; new tokens by the BurstGPT rule."""
    return derive_sessions(rows, True, seed, block_tokens=MOONCAKE_BLOCK_TOKENS)
