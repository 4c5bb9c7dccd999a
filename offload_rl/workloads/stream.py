"""Assembling a stream: raw requests of a window become :class:`Request` s that keep the
stream invariants (turn numbering, context = the session's history, caps of the scaling).

Both the synthetic generator and recorded files end here, so the invariants have one home.
"""

from __future__ import annotations

import numpy as np

from offload_rl.workloads import kernels
from offload_rl.workloads.request import (
    FloatArray,
    IntArray,
    Request,
    TokenScaling,
    requests_from_columns,
)


def group_by_key(key: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Stable grouping: ``order`` sorts by key, ``group`` is the group of each sorted position,
    ``first`` the sorted position where each group starts (groups in key order)."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.ones(len(key), dtype=bool)
    starts[1:] = sorted_key[1:] != sorted_key[:-1]
    group = np.cumsum(starts) - 1
    return order, group, np.flatnonzero(starts)


def assemble_stream(
    arrival: FloatArray,
    key: IntArray,
    new: IntArray,
    output: IntArray,
    prior_context: IntArray,
    gap: FloatArray,
    scaling: TokenScaling,
) -> list[Request]:
    """Turn a window of raw requests (sorted by arrival) into a consistent stream.

    ``key`` identifies sessions, ``prior_context`` is each request's raw context in its full
    session (folded into the new tokens of a session's first request in the window), ``gap`` is
    NaN where the session has no later turn in the window.
    """
    n = len(key)
    if n == 0:
        return []
    columns = _compiled_columns(key, new, output, prior_context, scaling)
    if columns is None:
        columns = _stream_columns(key, new, output, prior_context, scaling)
    session, turn, new_s, context, out_s = columns
    return stream_requests(arrival, session, turn, new_s, context, out_s, gap)


def stream_requests(
    arrival: FloatArray,
    session: IntArray,
    turn: IntArray,
    new: IntArray,
    context: IntArray,
    output: IntArray,
    gap: FloatArray,
) -> list[Request]:
    """The stream's :class:`Request` s from its final columns (Python floats and ints; a NaN
    gap becomes None: :func:`requests_from_columns`)."""
    return requests_from_columns(
        arrival.tolist(),
        session.tolist(),
        turn.tolist(),
        new.tolist(),
        context.tolist(),
        output.tolist(),
        gap.tolist(),
    )


Columns = tuple[IntArray, IntArray, IntArray, IntArray, IntArray]
"""A stream's session ids, turns, new tokens, context tokens and output tokens."""


def _stream_columns(
    key: IntArray, new: IntArray, output: IntArray, prior_context: IntArray, scaling: TokenScaling
) -> Columns:
    """The stream's integer columns in numpy (the reference of :func:`_compiled_columns`)."""
    n = len(key)
    order, group, first = group_by_key(key)
    turn = np.empty(n, dtype=np.int64)
    turn[order] = np.arange(n) - first[group]
    new_raw = new + np.where(turn == 0, prior_context, 0)
    new_s, out_s = scaling.scale_lengths(new_raw, output)
    tokens_sorted = (new_s + out_s)[order]
    before = np.cumsum(tokens_sorted) - tokens_sorted
    context = np.empty(n, dtype=np.int64)
    context[order] = before - before[first][group]
    context = np.maximum(np.minimum(context, scaling.max_context_tokens - new_s), 0)
    # Dense session ids in order of first appearance in the stream.
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(order[first], kind="stable")] = np.arange(len(first))
    session = np.empty(n, dtype=np.int64)
    session[order] = rank[group]
    return session, turn, new_s, context, out_s


def _compiled_columns(
    key: IntArray, new: IntArray, output: IntArray, prior_context: IntArray, scaling: TokenScaling
) -> Columns | None:
    """:func:`_stream_columns` in one compiled pass
    (:func:`~offload_rl.workloads.compiled_workload.stream_columns`, the same integers) where
    the workload's kernels run and the keys are small int64 ids (the synthetic draw's sessions:
    the kernel indexes arrays by key); None otherwise."""
    module = kernels.compiled()
    n = len(key)
    arrays = (key, new, output, prior_context)
    if module is None or any(a.dtype != np.int64 for a in arrays):
        return None
    if key.min() < 0 or key.max() > 16 * n + 4096:
        return None
    caps = scaling_caps(scaling)
    session, turn, new_s, context, out_s = (np.empty(n, dtype=np.int64) for _ in range(5))
    module.stream_columns(
        key, new, output, prior_context, float(scaling.scale), caps,
        turn, new_s, out_s, context, session,
    )  # fmt: skip
    return session, turn, new_s, context, out_s


def scaling_caps(scaling: TokenScaling) -> IntArray:
    """:func:`~offload_rl.workloads.compiled_workload.stream_columns`' caps: new tokens
    (``TokenScaling.scale_lengths``' cap), output tokens, context."""
    return np.array(
        [
            min(scaling.max_new_tokens, scaling.max_context_tokens),
            scaling.max_output_tokens,
            scaling.max_context_tokens,
        ],
        dtype=np.int64,
    )
