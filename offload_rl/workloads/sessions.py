"""Deriving sessions and new tokens from recorded rows.

Recorded files disagree on what a session is (labels in BurstGPT, shared KV-block prefixes in
Mooncake, none in Azure) and on what a prompt holds (BurstGPT and Mooncake inputs include the
session's history): the rules that turn them into sessions and new tokens live here, one each.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from offload_rl.workloads.distributions import (
    EmpiricalDist,
    GeometricMixtureTurns,
    LognormalDist,
    PmfTurns,
)
from offload_rl.workloads.params import default_workload_params
from offload_rl.workloads.request import FloatArray, IntArray
from offload_rl.workloads.rows import Notes, RecordedRows


def sessions_from_labels(labels: Sequence[str]) -> IntArray:
    """Dense session ids (order of first appearance) from session labels."""
    ids: dict[str, int] = {}
    return np.asarray([ids.setdefault(label, len(ids)) for label in labels], dtype=np.int64)


@dataclass
class PrefixSessions:
    """Sessions derived from shared KV-block prefixes (Mooncake)."""

    session: IntArray
    shared_blocks: IntArray
    """Leading blocks each request shares with the most recent earlier request on that path."""
    global_prefix_blocks: int
    """Length of the block prefix common to every request (a system prompt, not a session)."""


def sessions_from_hash_prefixes(hash_ids: Sequence[Sequence[int]]) -> PrefixSessions:
    """Link each request to the latest earlier request sharing more than the global prefix.

    A trie of block ids (keyed by parent node and block id, so equal ids at different positions
    never match) remembers the last request through each node.
    """
    n = len(hash_ids)
    common = list(hash_ids[0]) if n else []
    for ids in hash_ids[1:]:
        k = 0
        limit = min(len(common), len(ids))
        while k < limit and common[k] == ids[k]:
            k += 1
        del common[k:]
    global_len = len(common)
    children: dict[tuple[int, int], int] = {}
    last_request: list[int] = [-1]  # per trie node; node 0 is the root
    session = np.empty(n, dtype=np.int64)
    shared = np.zeros(n, dtype=np.int64)
    n_sessions = 0
    for i, ids in enumerate(hash_ids):
        node = 0
        depth = 0
        path_nodes: list[int] = []
        for block in ids:
            child = children.get((node, block))
            if child is None:
                break
            node = child
            depth += 1
            path_nodes.append(node)
        shared[i] = depth
        if depth > global_len:
            session[i] = session[last_request[node]]
        else:
            session[i] = n_sessions
            n_sessions += 1
        for block in ids[depth:]:
            child = len(last_request)
            children[(node, block)] = child
            last_request.append(i)
            node = child
            path_nodes.append(node)
        for visited in path_nodes:
            last_request[visited] = i
    return PrefixSessions(session, shared, global_len)


def synthesize_sessions(
    arrival_s: FloatArray,
    turns: GeometricMixtureTurns | PmfTurns,
    gap_s: LognormalDist | EmpiricalDist,
    rng: np.random.Generator,
) -> IntArray:
    """Chain unrelated rows (sorted by arrival) into sessions with given turns and gaps.

    Each unused row opens a session with a drawn number of turns; each next turn is the first
    unused row at or after the previous turn's arrival plus a drawn gap (none left: it ends).
    """
    n = len(arrival_s)
    times = arrival_s.tolist()
    session = [-1] * n
    free_next = list(range(n + 1))  # union-find: smallest unused row >= i

    def find(i: int) -> int:
        root = i
        while free_next[root] != root:
            root = free_next[root]
        while free_next[i] != root:
            free_next[i], i = root, free_next[i]
        return root

    planned = turns.sample(rng, n).tolist()
    gaps = gap_s.sample(rng, int(sum(planned)) - n + 1).tolist()
    g = 0
    n_sessions = 0
    for i in range(n):
        if session[i] >= 0:
            continue
        session[i] = n_sessions
        free_next[i] = i + 1
        t = times[i]
        for _ in range(planned[n_sessions] - 1):
            j = find(bisect.bisect_left(times, t + gaps[g]))
            g += 1
            if j >= n:
                break
            session[j] = n_sessions
            free_next[j] = j + 1
            t = times[j]
        n_sessions += 1
    return np.asarray(session, dtype=np.int64)


@dataclass
class HistorySplit:
    """New tokens of each turn when the recorded input includes the session's history."""

    new_tokens: IntArray
    appended_mask: npt.NDArray[np.bool_]
    """Turns whose new tokens were observed (not estimated)."""
    followups: int
    appended: int
    """Follow-ups with ``input - previous input - previous output >= 1``."""
    median_appended: float
    median_input_growth: float


def split_history_included(
    session: IntArray, input_tokens: IntArray, output_tokens: IntArray
) -> HistorySplit:
    """``new = input - previous input - previous output`` when >= 1, else an estimate.

    Where the client trimmed or edited the history the increment is not >= 1 and the new
    message cannot be seen; it is estimated as the median appended message of the session (of
    the whole file when the session has none), at most the input.
    """
    n = len(session)
    sess = session.tolist()
    inp = input_tokens.tolist()
    out = output_tokens.tolist()
    new = [max(1, x) for x in inp]
    previous: dict[int, int] = {}
    pending: list[int] = []
    observed = np.zeros(n, dtype=bool)
    appended: dict[int, list[int]] = {}
    growth: list[int] = []
    for i in range(n):
        s = sess[i]
        j = previous.get(s)
        previous[s] = i
        if j is None:
            continue
        growth.append(inp[i] - inp[j])
        increment = inp[i] - inp[j] - out[j]
        if increment >= 1:
            new[i] = increment
            observed[i] = True
            appended.setdefault(s, []).append(increment)
        else:
            pending.append(i)
    every = [x for values in appended.values() for x in values]
    overall = float(np.median(every)) if every else 1.0
    for i in pending:
        values = appended.get(sess[i])
        estimate = float(np.median(values)) if values else overall
        new[i] = max(1, min(inp[i], round(estimate)))
    return HistorySplit(
        np.asarray(new, dtype=np.int64),
        observed,
        followups=len(growth),
        appended=len(every),
        median_appended=overall if every else float("nan"),
        median_input_growth=float(np.median(growth)) if growth else float("nan"),
    )


def split_notes(split: HistorySplit) -> Notes:
    """How many follow-ups showed their new message (the rest were estimated)."""
    share = split.appended / split.followups if split.followups else float("nan")
    return {
        "followup_turns": split.followups,
        "appended_turns": split.appended,
        "appended_share": round(share, 4),
        "median_new_tokens_appended": split.median_appended,
        "median_input_growth": split.median_input_growth,
    }


def prefix_notes(prefix: PrefixSessions, input_tokens: IntArray, block_tokens: int | None) -> Notes:
    """How much block reuse the file shows (the block-level view, reported not used)."""
    shared = prefix.shared_blocks
    continued = np.zeros(len(shared), dtype=bool)
    first_seen: set[int] = set()
    for i, s in enumerate(prefix.session.tolist()):
        continued[i] = s in first_seen
        first_seen.add(s)
    notes: Notes = {
        "global_prefix_blocks": prefix.global_prefix_blocks,
        "reuse_2plus_blocks_share": round(float((shared >= 2).mean()), 4),
        "continuing_requests": int(continued.sum()),
    }
    if block_tokens is not None:
        block_new = input_tokens - np.minimum(shared * block_tokens, input_tokens - 1)
        notes["median_new_tokens_by_blocks"] = (
            float(np.median(block_new[continued])) if continued.any() else float("nan")
        )
    return notes


def derive_sessions(
    rows: RecordedRows, input_includes_history: bool, seed: int, block_tokens: int | None = None
) -> tuple[IntArray, IntArray, Notes]:
    """Sessions and new tokens of recorded rows, by the first rule the rows allow.

    Session labels, else shared block prefixes, else sessions synthesised with the default
    workload's turns and gaps (seeded; each row's input is then its new tokens, since unrelated
    rows carry no history). With recorded sessions, new tokens are split off the input when it
    includes the history (:func:`split_history_included`), else the input is the new tokens.
    """
    notes: Notes = {}
    if rows.session_labels is not None:
        session = sessions_from_labels(rows.session_labels)
        notes["sessions"] = "recorded session ids"
    elif rows.hash_ids is not None:
        prefix = sessions_from_hash_prefixes(rows.hash_ids)
        session = prefix.session
        notes["sessions"] = "shared block-id prefixes"
        notes.update(prefix_notes(prefix, rows.input_tokens, block_tokens))
    else:
        defaults = default_workload_params()
        rng = np.random.default_rng(seed)
        session = synthesize_sessions(rows.arrival_s, defaults.turns, defaults.gap_s, rng)
        notes.update(sessions="synthesised (default turns and gaps), input = new tokens", seed=seed)
        return session, rows.input_tokens, notes
    if not input_includes_history:
        notes["new_tokens"] = "the recorded input (it holds no history)"
        return session, rows.input_tokens, notes
    split = split_history_included(session, rows.input_tokens, rows.output_tokens)
    notes.update(split_notes(split))
    return session, split.new_tokens, notes
