"""The synthetic workload's per-request arithmetic in machine code (numba, the ``fast`` extra).

An EdgeCell-v0 reset draws ~4000 requests (the warm-up) to keep 257, and numpy's cost is per
operation over all of them. Kernels, each the numpy code it replaces, bit for bit
(``tests/offload_rl/test_workload_compiled.py``, ``test_workload_lazy_draw.py``):

* :func:`session_layout`: ``draw_sessions``' request layout (each request's session, turn and
  whether it opens its session, each session's first request) and arrivals (the inter-turn
  gaps summed in order within the draw, as ``np.cumsum`` sums them);
* :func:`interp_into`: ``np.interp`` on a short quantile table;
* :func:`mixture_turns`: a geometric mixture's turns per session, drawn from the generator
  (its ~10 numpy calls and ``geometric``'s per-element broadcasting, ~2/3 of their time);
* :func:`lazy_rows`, :func:`lazy_columns`: the lazy draw's columns
  (:func:`~offload_rl.workloads.lazy_draw.chosen_columns_lazy`: the rows the stream reads,
  their lengths' interpolation, rounding, prior context and next-turn gaps), around numpy's
  ``exp`` (kept: numba's ``exp`` is not numpy's SIMD one);
* :func:`draw_front`, :func:`stream_rows`, :func:`columns_of_rows`: the whole stream of the
  default workload's shape in three calls around numpy's ``exp`` (the kernels above on the
  generator's draws; the lazy draw's ~20 numpy and compiled calls each cost ~1-5 us, more
  after a played episode).

:meth:`EmpiricalDist.sample <offload_rl.workloads.distributions.EmpiricalDist.sample>` maps
thousands of uniforms through a table of ~15 quantiles per call. ``np.interp`` finds each point's
interval by a bisection whose branches a random point defeats; here the interval is a count of
the table's points below it, without branches, and the slopes are computed once per call
(3700 fresh uniforms through the gap table: ~16 us, ``np.interp`` ~78 us). The arithmetic is
numpy's (``compiled_base.c``'s ``arr_interp``), in its order: the slope of the interval, then
``slope * (x - xp[j]) + fp[j]``, the same special cases (a point on a table point, past either
end, NaN), IEEE doubles without fast-math. :mod:`offload_rl.workloads.quantile_interp` checks
it against ``np.interp`` once per process before it is used.

Importing this module imports numba; it is imported only in compiled mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from offload_rl.cell.compiled_reset import next_double, standard_exponential, state_words
from offload_rl.cell.device_seeding import pcg64_head

A = np.ndarray
jit = numba.njit(cache=True, nogil=True)  # fastmath off: IEEE order, bit-identical
hot = numba.njit(cache=True, nogil=True, forceinline=True)  # inlined into its callers


@hot
def between(v: float, xp: A, fp: A, j: int) -> float:
    """``np.interp``'s value at ``v`` strictly inside interval ``j`` (``xp[j] < v <
    xp[j + 1]``): the interval's slope, then ``slope * (v - xp[j]) + fp[j]``, and numpy's
    fallback where that is not finite (``arr_interp``, in its order)."""
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    r = slope * (v - xp[j]) + fp[j]
    if r != r:  # numpy's fallback for a non-finite interpolation
        r = slope * (v - xp[j + 1]) + fp[j + 1]
        if r != r and fp[j] == fp[j + 1]:
            r = fp[j]
    return float(r)


@hot
def interp_one(v: float, xp: A, fp: A) -> float:
    """``np.interp(v, xp, fp)`` for a strictly increasing ``xp`` of >= 2 points: the cases of
    :func:`interp_into` (the kernel :mod:`~offload_rl.workloads.quantile_interp` probes), for
    one point."""
    n = xp.shape[0]
    if v != v:  # NaN
        return v
    if v > xp[n - 1]:
        return float(fp[n - 1])
    if v < xp[0]:
        return float(fp[0])
    j = 0  # the last table point <= v (xp strictly increasing: a count)
    for k in range(1, n):
        j += xp[k] <= v
    if j == n - 1 or xp[j] == v:
        return float(fp[j])
    return between(v, xp, fp, j)


@jit
def interp_into(x: A, xp: A, fp: A, out: A) -> None:
    """``out[:] = np.interp(x, xp, fp)`` for a strictly increasing ``xp`` of >= 2 points:
    the slopes computed once per interval, as numpy does for more points than table points
    (the same division, so the same values), and each point's interval a count of the table
    points at or below it (no data-dependent branch: a bisection's defeat the branch
    predictor on random points)."""
    n = xp.shape[0]
    first = xp[0]
    last = xp[n - 1]
    slopes = np.empty(n - 1, dtype=np.float64)
    for j in range(n - 1):
        slopes[j] = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    for i in range(x.shape[0]):
        v = x[i]
        if v != v:  # NaN
            out[i] = v
            continue
        if v > last:
            out[i] = fp[n - 1]
            continue
        if v < first:
            out[i] = fp[0]
            continue
        j = 0  # the last table point <= v (xp strictly increasing: a count)
        for k in range(1, n):
            j += xp[k] <= v
        if j == n - 1 or xp[j] == v:
            out[i] = fp[j]
            continue
        slope = slopes[j]
        r = slope * (v - xp[j]) + fp[j]
        if r != r:  # numpy's fallback for a non-finite interpolation (as in between)
            r = slope * (v - xp[j + 1]) + fp[j + 1]
            if r != r and fp[j] == fp[j + 1]:
                r = fp[j]
        out[i] = r


@jit
def lazy_rows(
    chosen: A,
    session: A,
    offset: A,
    u_first: A,
    u_follow: A,
    u_out: A,
    xp_first: A,
    fp_first: A,
    xp_follow: A,
    fp_follow: A,
    xp_out: A,
    fp_out: A,
) -> tuple[A, A, A]:
    """:func:`~offload_rl.workloads.lazy_draw.needed_rows` (each chosen request's session from
    its first turn to its last chosen one, ascending) and the interpolated logs of their new
    and output tokens (``np.interp`` of their uniforms in the first-prompt, follow-up and
    output tables: their probabilities ``xp_*`` and log values ``fp_*``)."""
    n_sessions = offset.shape[0]
    end = np.full(n_sessions, -1, dtype=np.int64)
    for c in chosen:
        s = session[c]
        end[s] = max(end[s], c)
    total = 0
    for s in range(n_sessions):
        if end[s] >= 0:
            total += end[s] + 1 - offset[s]
    rows = np.empty(total, dtype=np.int64)
    log_new = np.empty(total, dtype=np.float64)
    log_out = np.empty(total, dtype=np.float64)
    k = 0
    for s in range(n_sessions):
        for r in range(offset[s], end[s] + 1):
            rows[k] = r
            if r == offset[s]:
                log_new[k] = interp_one(u_first[s], xp_first, fp_first)
            else:  # a later turn's place among the draw's later turns
                log_new[k] = interp_one(u_follow[r - s - 1], xp_follow, fp_follow)
            log_out[k] = interp_one(u_out[r], xp_out, fp_out)
            k += 1
    return rows, log_new, log_out


@hot
def rows_to_columns(
    chosen: A, session: A, turn: A, turns: A, arrival: A, rows: A, place: A, new_f: A, out_f: A
) -> tuple[A, A, A, A, A, A]:
    """The chosen requests' columns from the rows they need (each chosen request's session
    from its first turn to its last chosen one, ``rows``, in session order; ``place``: each
    draw row's place among them, -1 for none) and those rows'
    lengths (``new_f``, ``out_f``: the exponentiated logs): tokens ``max(rint(x), 1)``, the
    prior context (the session's earlier rows' tokens, summed in integers), the gap to a
    session's next turn where that turn is chosen (NaN otherwise), arrivals from the first
    chosen; (arrival, session, new, output, prior, gap). The one home of
    :func:`lazy_columns`' and :func:`columns_of_rows`' arithmetic."""
    n = chosen.shape[0]
    m = rows.shape[0]
    new_t = np.empty(m, dtype=np.int64)
    out_t = np.empty(m, dtype=np.int64)
    before = np.empty(m, dtype=np.int64)
    running = 0
    for k in range(m):
        if turn[rows[k]] == 0:
            running = 0
        new_t[k] = np.int64(max(np.rint(new_f[k]), 1.0))
        out_t[k] = np.int64(max(np.rint(out_f[k]), 1.0))
        before[k] = running
        running += new_t[k] + out_t[k]
    is_chosen = np.zeros(m, dtype=np.bool_)
    for c in chosen:
        is_chosen[place[c]] = True
    arrival_c = np.empty(n, dtype=np.float64)
    key = np.empty(n, dtype=np.int64)
    new = np.empty(n, dtype=np.int64)
    output = np.empty(n, dtype=np.int64)
    prior = np.empty(n, dtype=np.int64)
    gap = np.empty(n, dtype=np.float64)
    t0 = arrival[chosen[0]]
    for i in range(n):
        c = chosen[i]
        s = session[c]
        k = place[c]
        arrival_c[i] = arrival[c] - t0
        key[i] = s
        new[i] = new_t[k]
        output[i] = out_t[k]
        prior[i] = before[k]
        gap[i] = np.nan
        # the session's next turn (c + 1: a row of the stream where chosen) chosen too
        if turn[c] != turns[s] - 1 and place[c + 1] >= 0 and is_chosen[place[c + 1]]:
            gap[i] = arrival[c + 1] - arrival[c]
    return arrival_c, key, new, output, prior, gap


@jit
def lazy_columns(
    chosen: A, session: A, turn: A, turns: A, arrival: A, rows: A, new_f: A, out_f: A
) -> tuple[A, A, A, A, A, A]:
    """``chosen_columns_lazy``'s columns from :func:`lazy_rows`' rows and their lengths
    (``new_f``, ``out_f``: the exponentiated logs): :func:`rows_to_columns` on the rows'
    places."""
    place = np.full(arrival.shape[0] + 1, -1, dtype=np.int64)
    for k in range(rows.shape[0]):
        place[rows[k]] = k
    return rows_to_columns(chosen, session, turn, turns, arrival, rows, place, new_f, out_f)


@jit
def session_layout(
    turns: A, starts: A, gaps: A, session: A, offset: A, turn: A, is_first: A, arrival: A
) -> None:
    """``draw_sessions``' numpy, fused: ``session = repeat(arange(len(turns)), turns)``,
    ``offset = cumsum(turns) - turns``, ``turn = arange(total) - offset[session]``,
    ``is_first = turn == 0``, ``gaps[is_first] = 0`` (in place), ``elapsed = cumsum(gaps)``
    (sequential, as ``np.add.accumulate``) and
    ``arrival = starts[session] + elapsed - elapsed[offset][session]``."""
    i = 0
    elapsed = 0.0
    for s in range(turns.shape[0]):
        offset[s] = i
        first = 0.0
        for k in range(turns[s]):
            session[i] = s
            turn[i] = k
            is_first[i] = k == 0
            if k == 0:
                gaps[i] = 0.0
            elapsed = gaps[i] if i == 0 else elapsed + gaps[i]
            if k == 0:
                first = elapsed
            arrival[i] = starts[s] + elapsed - first
            i += 1


def _uniform(src: Any) -> float:
    """``src.random()`` for a numba ``Generator``, :func:`~offload_rl.cell.compiled_reset.
    next_double` (the same draw: numpy's ``pcg64_next_double``) for a ``PCG64``'s state words
    (:func:`~offload_rl.cell.compiled_reset.state_words`). Compiled only (its overload)."""
    raise NotImplementedError


def _exponential(src: Any) -> float:
    """``src.standard_exponential()`` for a numba ``Generator``,
    :func:`~offload_rl.cell.compiled_reset.standard_exponential` (the same algorithm) for a
    ``PCG64``'s state words. Compiled only (its overload)."""
    raise NotImplementedError


def _either(
    from_generator: Callable[[Any], float], from_words: Callable[[Any], float]
) -> Callable[[Any], Callable[[Any], float]]:
    """A draw's overload: ``from_generator`` for a numba ``Generator``, ``from_words`` for a
    ``PCG64``'s state words (numba compares the chosen function's parameters, annotations
    included, with the stub's: each takes ``src: Any``)."""

    def chosen(src: Any) -> Callable[[Any], float]:
        return from_generator if isinstance(src, types.NumPyRandomGeneratorType) else from_words

    return chosen


def _generator_random(src: Any) -> float:
    return float(src.random())


def _words_random(src: Any) -> float:
    return next_double(src)


def _generator_exponential(src: Any) -> float:
    return float(src.standard_exponential())


def _words_exponential(src: Any) -> float:
    return standard_exponential(src)


overload(_uniform)(_either(_generator_random, _words_random))
overload(_exponential)(_either(_generator_exponential, _words_exponential))


@hot
def turns_into(src: Any, cdf: A, means: A, max_turns: int, out: A) -> None:
    """:func:`mixture_turns` from ``src``: a numba ``Generator``, or the state words of a
    ``PCG64`` (numpy's draws on them inline: no call through the bit generator's pointers)."""
    components = means.shape[0]
    p = np.empty(components, dtype=np.float64)
    log_q = np.empty(components, dtype=np.float64)
    for c in range(components):
        p[c] = 1.0 / means[c]
        log_q[c] = np.log1p(-p[c])
    for i in range(out.shape[0]):
        out[i] = np.searchsorted(cdf, _uniform(src), side="right")
    for i in range(out.shape[0]):
        c = out[i]
        pc = p[c]
        if pc >= 0.333333333333333333333333:
            x = 1
            total = prod = pc
            q = 1.0 - pc
            u = _uniform(src)
            while u > total:
                prod *= q
                total += prod
                x += 1
            out[i] = min(x, max_turns)
        else:
            z = np.ceil(-_exponential(src) / log_q[c])
            out[i] = max_turns if z >= 9.223372036854776e18 else min(np.int64(z), max_turns)


@jit
def mixture_turns(rng: np.random.Generator, cdf: A, means: A, max_turns: int, out: A) -> None:
    """``out[:] = GeometricMixtureTurns.sample(rng, len(out))`` from ``cdf`` (its
    ``choice_cdf`` of the weights) and ``means`` (float64, finite): numpy's calls in their
    order on the same bit generator: one uniform per session searched in ``cdf``
    (``choice_indices``), then one geometric per session with ``p = 1 / means[component]``
    (``rng.geometric``'s element by element), at most ``max_turns``. The geometric is numpy's
    ``random_geometric`` (``distributions.c``, as numba ports it): a search on one uniform for
    ``p >= 1/3``, else ``ceil(-E / log1p(-p))`` of a standard exponential ``E`` (numpy's
    ziggurat: numba's ``standard_exponential``), at least ``2**63`` read as ``INT64_MAX``;
    ``p`` and ``log1p(-p)`` computed once per component (the same operations on the same
    values as per draw). The arithmetic: :func:`turns_into`."""
    turns_into(rng, cdf, means, max_turns, out)


@jit
def stream_columns(
    key: A,
    new: A,
    output: A,
    prior: A,
    scale: float,
    caps: A,
    turn: A,
    new_s: A,
    out_s: A,
    context: A,
    session: A,
) -> None:
    """``assemble_stream``'s numpy in one pass over the stream (``key`` >= 0, int64):
    each request's turn (its place among its key's requests), new tokens (the raw context
    folded into a first turn), ``TokenScaling.scale_lengths`` (``rint(x * scale)`` unless
    ``scale`` is 1, then clipped to ``caps[0]`` new and ``caps[1]`` output tokens), context
    (its key's earlier scaled tokens, capped at ``caps[2]`` minus its new tokens, >= 0) and
    dense session id (keys in order of first appearance). Integer sums: exactly the sorted
    cumulative sums' values."""
    size = 0
    for i in range(key.shape[0]):
        size = max(size, key[i] + 1)
    group = np.full(size, -1, dtype=np.int64)
    count = np.zeros(size, dtype=np.int64)
    tokens = np.zeros(size, dtype=np.int64)
    groups = 0
    for i in range(key.shape[0]):
        k = key[i]
        if group[k] < 0:
            group[k] = groups
            groups += 1
        t = count[k]
        count[k] = t + 1
        turn[i] = t
        raw = new[i] + prior[i] if t == 0 else new[i]
        out = output[i]
        if scale != 1.0:
            raw = np.int64(np.rint(raw * scale))
            out = np.int64(np.rint(out * scale))
        n_new = min(max(raw, 1), caps[0])
        n_out = min(max(out, 1), caps[1])
        new_s[i] = n_new
        out_s[i] = n_out
        context[i] = max(min(tokens[k], caps[2] - n_new), 0)
        tokens[k] += n_new + n_out
        session[i] = group[k]


@jit
def draw_front(
    head: int,
    n_sessions: int,
    low: float,
    horizon: float,
    cdf: A,
    means: A,
    max_turns: int,
    xp_gap: A,
    fp_gap: A,
) -> tuple[A, A, A, A]:
    """``draw_sessions_lazy``'s generator calls after the session count, in their order, for
    geometric-mixture turns and empirical gaps and lengths, on the ``PCG64`` whose
    ``pcg64_state`` is at ``head`` (:func:`~offload_rl.cell.device_seeding.pcg64_head`),
    its state words advanced in place as numpy's calls advance them (``random`` and
    ``standard_exponential`` leave the buffered 32-bit word alone): the session starts
    (``rng.uniform(low, horizon, n_sessions)``: numpy's ``low + (horizon - low) *
    next_double``), the turns (:func:`turns_into`), the gaps' uniforms (``rng.random(total)``)
    through :func:`interp_into` (the gap table's probabilities and log values: the logs of the
    gaps, for numpy's ``exp``), then the first prompts', follow-ups' and outputs' uniforms
    (``rng.random`` of ``n_sessions``, ``total - n_sessions``, ``total``: one block, in that
    order). Inline draws, not numba's ``Generator`` (a call through the bit generator's
    function pointer per draw, ~13,000 a reset: ~3/4 of this kernel's time)."""
    pcg = state_words(head)
    starts = np.empty(n_sessions, dtype=np.float64)
    span = horizon - low
    for i in range(n_sessions):
        starts[i] = low + span * next_double(pcg)  # numpy's random_uniform(low, horizon - low)
    turns = np.empty(n_sessions, dtype=np.int64)
    turns_into(pcg, cdf, means, max_turns, turns)
    total = 0
    for i in range(n_sessions):
        total += turns[i]
    log_gaps = np.empty(total, dtype=np.float64)
    for i in range(total):
        log_gaps[i] = next_double(pcg)
    interp_into(log_gaps, xp_gap, fp_gap, log_gaps)  # in place: each point read, then written
    u = np.empty(2 * total, dtype=np.float64)
    for i in range(2 * total):
        u[i] = next_double(pcg)
    return starts, turns, log_gaps, u


@jit
def stream_rows(
    turns: A,
    starts: A,
    gaps: A,
    u: A,
    horizon: float,
    n: int,
    xp_first: A,
    fp_first: A,
    xp_follow: A,
    fp_follow: A,
    xp_out: A,
    fp_out: A,
) -> tuple[A, A, A, A, A, A, A]:
    """A draw's layout (:func:`session_layout`; ``gaps`` the exponentiated logs), the stream's
    requests (``SyntheticWorkload.sample``'s ``chosen``: the first ``n`` of those arriving in
    ``[0, horizon)``, stably sorted by arrival; none where fewer arrive: the caller draws
    again), :func:`lazy_rows`' rows (each chosen request's session up to its last chosen
    turn), each draw row's place among them (-1: none), and their new and output tokens'
    interpolated logs, concatenated (``u``: :func:`draw_front`'s lengths' uniforms)."""
    n_sessions = turns.shape[0]
    total = gaps.shape[0]
    session = np.empty(total, dtype=np.int64)
    turn = np.empty(total, dtype=np.int64)
    is_first = np.empty(total, dtype=np.bool_)
    arrival = np.empty(total, dtype=np.float64)
    offset = np.empty(n_sessions, dtype=np.int64)
    session_layout(turns, starts, gaps, session, offset, turn, is_first, arrival)
    keep = np.empty(total, dtype=np.int64)  # the requests arriving in [0, horizon)
    kept = 0
    for i in range(total):  # without branches: ~1 request in 10 (in no order) is kept
        keep[kept] = i
        kept += (arrival[i] >= 0.0) & (arrival[i] < horizon)
    keep = keep[:kept]
    # a stable sort, as numpy's kind="stable": equal arrivals keep their order in the draw
    order = np.argsort(arrival[keep], kind="mergesort")
    chosen = keep[order[:n]] if kept >= n else keep[:0]
    # lazy_rows' rows: each chosen request's session from its first turn to its last chosen
    end = np.full(n_sessions, -1, dtype=np.int64)
    for c in chosen:
        end[session[c]] = max(end[session[c]], c)
    place = np.full(total, -1, dtype=np.int64)  # each such row's place among them
    m = 0
    for s in range(n_sessions):
        for r in range(offset[s], end[s] + 1):
            place[r] = m
            m += 1
    rows = np.empty(m, dtype=np.int64)
    logs = np.empty(2 * m, dtype=np.float64)
    # the rows' uniforms, each table's together for interp_into (~5 ns a point; interp_one
    # inlined in this loop took ~20): the first prompts' from the front of logs[:m], the
    # follow-ups' from its back, their rows' places in ``of``; the outputs' in logs[m:]
    of = np.empty(m, dtype=np.int64)
    front = 0
    back = m
    for s in range(n_sessions):
        for r in range(offset[s], end[s] + 1):
            k = place[r]
            rows[k] = r
            # u: the first prompts' uniforms (one a session), the follow-ups' (a later turn's
            # place among the draw's later turns: r - s - 1), the outputs' (one a row)
            if r == offset[s]:
                logs[front] = u[s]
                of[front] = k
                front += 1
            else:
                back -= 1
                logs[back] = u[n_sessions + r - s - 1]
                of[back] = k
            logs[m + k] = u[total + r]
    firsts, follows, outs = logs[:front], logs[front:m], logs[m:]
    interp_into(firsts, xp_first, fp_first, firsts)  # in place: each point read, then written
    interp_into(follows, xp_follow, fp_follow, follows)
    interp_into(outs, xp_out, fp_out, outs)
    interpolated = logs[:m].copy()
    for i in range(m):  # each row's to its place
        logs[of[i]] = interpolated[i]
    return chosen, session, turn, arrival, rows, place, logs


@jit
def columns_of_rows(
    chosen: A,
    session: A,
    turn: A,
    turns: A,
    arrival: A,
    rows: A,
    place: A,
    lengths: A,
    scale: float,
    caps: A,
) -> tuple[A, A, A, A, A, A, A]:
    """The stream's columns from :func:`stream_rows`' arrays (``lengths``: its logs,
    exponentiated): :func:`rows_to_columns` on the rows' places
    (``chosen_columns_lazy``'s columns), then :func:`stream_columns` (``assemble_stream``'s,
    keyed by the draw's session index): arrival, dense session id, turn, new tokens, context,
    output tokens, gap (NaN: none)."""
    n = chosen.shape[0]
    m = rows.shape[0]
    arrival_c, key, new, output, prior, gap = rows_to_columns(
        chosen, session, turn, turns, arrival, rows, place, lengths[:m], lengths[m:]
    )
    turn_s = np.empty(n, dtype=np.int64)
    new_s = np.empty(n, dtype=np.int64)
    out_s = np.empty(n, dtype=np.int64)
    context = np.empty(n, dtype=np.int64)
    session_s = np.empty(n, dtype=np.int64)
    stream_columns(key, new, output, prior, scale, caps, turn_s, new_s, out_s, context, session_s)
    return arrival_c, session_s, turn_s, new_s, context, out_s, gap


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels for the types the workload passes."""
    xp = np.array([0.0, 1.0])
    interp_into(xp, xp, xp, np.empty(2))
    turns = np.array([1, 2], dtype=np.int64)
    ints = [np.empty(3, dtype=np.int64) for _ in range(2)]
    session_layout(
        turns,
        xp,
        np.ones(3),
        ints[0],
        np.empty(2, dtype=np.int64),
        ints[1],
        np.empty(3, dtype=np.bool_),
        np.empty(3),
    )
    u = np.array([0.5])
    one = np.zeros(1, dtype=np.int64)
    rows, log_new, log_out = lazy_rows(one, one, one, u, u, u, *([xp] * 6))
    lazy_columns(one, one, one, one + 1, u, rows, log_new, log_out)
    mixture_turns(np.random.default_rng(0), xp, xp + 1.0, 64, np.empty(2, dtype=np.int64))
    # the fused sample's kernels, for the types FusedPlan.sample passes (their entry points'
    # one specialization)
    caps = np.ones(3, dtype=np.int64)
    rng = np.random.default_rng(0)
    head = pcg64_head(rng)
    if head is not None:  # else the fused sample does not run here (fused_draw.runs_here)
        st, tu, lg, uu = draw_front(head, 3, 0.0, 1e9, xp, xp + 1.0, 64, xp, xp)
        ch, se, tn, ar, ro, pl, lo = stream_rows(
            tu, st, np.exp(lg), uu, 1e9, 1, xp, xp, xp, xp, xp, xp
        )
        columns_of_rows(ch, se, tn, tu, ar, ro, pl, np.exp(lo), 1.0, caps)
    for scale in (1.0, 0.5):
        cols = [np.zeros(2, dtype=np.int64) for _ in range(5)]
        stream_columns(turns, turns, turns, turns, scale, np.ones(3, dtype=np.int64), *cols)
