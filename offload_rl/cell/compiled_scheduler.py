"""The edge server's scheduler in machine code, on the arrays of a SequenceTable (numba).

:class:`~offload_rl.cell.edge_server.EdgeServer`'s Python methods are the reference; each
function here mirrors one of them and performs its float operations in its order (IEEE
doubles, no fast-math: no reassociation, no fused multiply-adds), so a compiled server computes
bit for bit what the Python one does. :func:`advance` is ``EdgeServer.advance`` whole: iterations
of the general scheduler (decodes, chunked prefill, FCFS admissions, evictions, recompute
preemptions, rejections) and decode-only stretches (with the closed-form jump), on
:class:`~offload_rl.cell.sequence_table.SequenceTable`'s arrays in place. What the Python side
must hear of (finishes, events, first tokens) goes into an output log; the kernel pauses
(returns True) before an iteration that might overflow it, and the server drains it and calls
again.

Importing this module imports numba; the server imports it only in compiled mode.
"""

from __future__ import annotations

import math

import numpy as np

from offload_rl.cell.compiled_decode import JUMP_MIN, affine_iterations
from offload_rl.cell.kernel_jit import hot, jit
from offload_rl.cell.sequence_table import (
    ADMIT_S,
    AREA,
    AREA_T,
    AT_ADMIT,
    BUSY,
    CACHED,
    CAPACITY,
    CLOCK,
    CLOSED_FORM,
    COMPUTED,
    EVICTIONS,
    FINISH_S,
    FIRST_TOKEN,
    GENERATED,
    HELD,
    IN_FLIGHT,
    ITER_END,
    ITERATIONS,
    K_BYTES,
    K_SPLIT,
    K_STAMP,
    K_TOKENS,
    KEEP,
    KEPT_BYTES,
    KNOWN,
    KV_BYTES,
    LAST_SIZE,
    LAST_TOKENS,
    MAX_SEQS,
    MAX_TOKENS,
    N_IN_SYSTEM,
    N_KEPT,
    N_OUT,
    N_RUNNING,
    N_SCHED,
    N_SUBS,
    N_WAITING,
    OUT_DONE,
    OUT_EVICTED,
    OUT_FIRST,
    OUT_PREEMPTED,
    OUT_REJECTED,
    OUTPUT,
    PREEMPTIONS,
    PREEMPTIONS_TOTAL,
    QUEUED_S,
    QUEUED_SINCE,
    READY_AT,
    ROUND_TRIP,
    RUNNING_BYTES,
    SESSION,
    SPLIT,
    ST_FINISHED,
    ST_REJECTED,
    ST_RUNNING,
    ST_WAITING,
    STAMP,
    STATUS,
    SUB_ERROR,
    W_HEAD,
    SequenceTable,
)

# the cost's coefficients, in the order EdgeServer._cost_terms lists them
C_KV, C_LIN, C_ATTN, C_HEAD_TOK, C_EMBED, C_HEAD_SMP, C_LAYER_FIXED, C_HEAD_FIXED = range(8)
C_EMBED_FIXED, C_SLOPE, C_N_LAYERS = 8, 9, 10
# what decode_stretch returns: hand back to the general scheduler, stop at the horizon, pause
HAND_BACK, AT_HORIZON, PAUSED = 0, 1, 2

A = np.ndarray  # every array argument
# In the decode loop's hottest accesses a row is indexed as ``np.uint64(j)``: numba gives each
# signed index a negative-index fix-up (a sign test and an add per array, before the address
# arithmetic) that an unsigned one skips; rows are never negative, so the same element is read
# (~0.1-0.3 us a step at N = 32, measured on recorded cells)


@hot
def _log(out_i: A, out_t: A, gi: A, code: int, j: int, t: float) -> None:
    n = gi[N_OUT]
    out_i[n, 0] = code
    out_i[n, 1] = j
    out_t[n] = t
    gi[N_OUT] = n + 1


@hot
def _log_full(out_i: np.ndarray, gi: np.ndarray, ints: np.ndarray, kept: np.ndarray) -> bool:
    """Whether one more iteration might not fit in the log (each row and kept entry can add
    at most three lines: a first token and a finish, a preemption, an eviction, a rejection)."""
    return gi[N_OUT] + 3 * (ints.shape[0] + kept.shape[0]) + 8 > out_i.shape[0]


@hot
def _count(gi: np.ndarray, gf: np.ndarray, t: float, delta: int) -> None:
    """``EdgeServer._count``."""
    gf[AREA] += gi[N_IN_SYSTEM] * (t - gf[AREA_T])
    gf[AREA_T] = t
    gi[N_IN_SYSTEM] += delta


# --- the pool (KVPool's methods on the kept table) -----------------------------------------------


@hot
def _free_bytes(gi: np.ndarray) -> int:
    return gi[CAPACITY] - gi[RUNNING_BYTES] - gi[KEPT_BYTES]


@hot
def _grow(ints: np.ndarray, gi: np.ndarray, j: int, nbytes: int) -> None:
    ints[j, HELD] += nbytes
    gi[RUNNING_BYTES] += nbytes


@hot
def _release(ints: np.ndarray, gi: np.ndarray, j: int) -> None:
    gi[RUNNING_BYTES] -= ints[j, HELD]
    ints[j, HELD] = 0


@hot
def _drop(kept: np.ndarray, gi: np.ndarray, sess: int) -> None:
    if kept[sess, K_STAMP] >= 0:
        gi[KEPT_BYTES] -= kept[sess, K_BYTES]
        gi[N_KEPT] -= 1
        kept[sess, K_STAMP] = -1


@hot
def _keep(ints: np.ndarray, kept: np.ndarray, gi: np.ndarray, j: int, tokens: int) -> None:
    """``KVPool.keep``: row ``j``'s bytes become its session's entry (the most recent)."""
    sess = ints[j, SESSION]
    _drop(kept, gi, sess)
    nbytes = ints[j, HELD]
    _release(ints, gi, j)
    gi[STAMP] += 1
    kept[sess, K_SPLIT] = ints[j, SPLIT]
    kept[sess, K_TOKENS] = tokens
    kept[sess, K_BYTES] = nbytes
    kept[sess, K_STAMP] = gi[STAMP]
    gi[KEPT_BYTES] += nbytes
    gi[N_KEPT] += 1


@hot
def _claim(ints: np.ndarray, kept: np.ndarray, gi: np.ndarray, j: int, max_tokens: int) -> int:
    """``KVPool.claim``: tokens reused from the session's entry made with row ``j``'s split."""
    sess = ints[j, SESSION]
    if kept[sess, K_STAMP] < 0 or kept[sess, K_SPLIT] != ints[j, SPLIT]:
        return 0
    if kept[sess, K_TOKENS] > max_tokens:
        return 0
    kept[sess, K_STAMP] = -1
    gi[N_KEPT] -= 1
    gi[KEPT_BYTES] -= kept[sess, K_BYTES]
    _grow(ints, gi, j, kept[sess, K_BYTES])
    return kept[sess, K_TOKENS]


@hot
def _evict_lru(kept: np.ndarray, gi: np.ndarray) -> int:
    """``KVPool.evict_lru``: the evicted session's index, -1 if none is kept."""
    if gi[N_KEPT] == 0:
        return -1
    best = -1
    for s in range(kept.shape[0]):
        if kept[s, K_STAMP] >= 0 and (best < 0 or kept[s, K_STAMP] < kept[best, K_STAMP]):
            best = s
    gi[KEPT_BYTES] -= kept[best, K_BYTES]
    gi[N_KEPT] -= 1
    gi[EVICTIONS] += 1
    kept[best, K_STAMP] = -1
    return best


# --- queues -------------------------------------------------------------------------------------


@hot
def _wait_popleft(wait: np.ndarray, gi: np.ndarray) -> None:
    gi[W_HEAD] = (gi[W_HEAD] + 1) % wait.shape[0]
    gi[N_WAITING] -= 1


@hot
def _wait_appendleft(wait: np.ndarray, gi: np.ndarray, j: int) -> None:
    gi[W_HEAD] = (gi[W_HEAD] - 1) % wait.shape[0]
    wait[gi[W_HEAD]] = j
    gi[N_WAITING] += 1


@hot
def _run_remove(run: np.ndarray, gi: np.ndarray, j: int) -> None:
    n = gi[N_RUNNING]
    i = 0
    while run[i] != j:
        i += 1
    for m in range(i, n - 1):
        run[m] = run[m + 1]
    gi[N_RUNNING] = n - 1


# --- requests leaving or going back ---------------------------------------------------------


@hot
def _finish(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, out_i: A, out_t: A, j: int, e: float
) -> None:
    """``EdgeServer._finish``."""
    _run_remove(run, gi, j)
    if ints[j, KEEP]:
        _keep(ints, kept, gi, j, ints[j, COMPUTED])
    else:
        _release(ints, gi, j)
    ints[j, STATUS] = ST_FINISHED
    floats[j, FINISH_S] = e
    _count(gi, gf, e, -1)
    _log(out_i, out_t, gi, OUT_DONE, j, e)


@hot
def _preempt(ints: A, floats: A, gi: A, wait: A, out_i: A, out_t: A, j: int, s: float) -> None:
    """``EdgeServer._preempt``: recompute preemption, back to the front of the queue."""
    _release(ints, gi, j)
    ints[j, COMPUTED] = 0
    ints[j, STATUS] = ST_WAITING
    ints[j, PREEMPTIONS] += 1
    floats[j, QUEUED_SINCE] = s  # READY_AT stays: a split request's next activation is out
    gi[PREEMPTIONS_TOTAL] += 1
    _wait_appendleft(wait, gi, j)
    _log(out_i, out_t, gi, OUT_PREEMPTED, j, s)


@hot
def _reject(ints: A, floats: A, gi: A, gf: A, out_i: A, out_t: A, j: int, s: float) -> None:
    """``EdgeServer._reject``."""
    ints[j, STATUS] = ST_REJECTED
    floats[j, FINISH_S] = s
    floats[j, QUEUED_S] += s - floats[j, QUEUED_SINCE]
    _count(gi, gf, s, -1)
    _log(out_i, out_t, gi, OUT_REJECTED, j, s)


@hot
def _first_token(floats: A, gi: A, out_i: A, out_t: A, j: int, e: float) -> None:
    r = np.uint64(j)
    if floats[r, FIRST_TOKEN] < 0:
        floats[r, FIRST_TOKEN] = e
        _log(out_i, out_t, gi, OUT_FIRST, j, e)


@hot
def _token_sampled(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, out_i: A, out_t: A, j: int, e: float
) -> None:
    """Row ``j`` sampled a token at ``e``: it finishes, or a split one waits a round trip."""
    r = np.uint64(j)
    ints[r, GENERATED] += 1
    ints[r, KNOWN] += 1
    _first_token(floats, gi, out_i, out_t, j, e)
    if ints[r, GENERATED] >= ints[r, OUTPUT]:
        _finish(ints, floats, kept, gi, gf, run, out_i, out_t, j, e)
    elif ints[r, SPLIT] > 0:
        floats[r, READY_AT] = e + floats[r, ROUND_TRIP]


@hot
def _make_room(
    ints: A,
    floats: A,
    kept: A,
    gi: A,
    run: A,
    wait: A,
    out_i: A,
    out_t: A,
    j: int,
    nbytes: int,
    s: float,
) -> bool:
    """``EdgeServer._make_room``: evict kept entries, then preempt the newest admissions;
    False if ``j`` itself was preempted."""
    while _free_bytes(gi) < nbytes:
        sess = _evict_lru(kept, gi)
        if sess >= 0:
            _log(out_i, out_t, gi, OUT_EVICTED, sess, s)
            continue
        gi[N_RUNNING] -= 1
        victim = run[gi[N_RUNNING]]
        _preempt(ints, floats, gi, wait, out_i, out_t, victim, s)
        if victim == j:
            return False
    return True


# --- one iteration of the general scheduler ---------------------------------------------------


@hot
def _sched_add(sched: A, gi: A, j: int, n: int) -> None:
    sched[0, gi[N_SCHED]] = j
    sched[1, gi[N_SCHED]] = n
    gi[N_SCHED] += 1


@hot
def _sequence_s(cost: A, n_layers: int, split: int, n: int, context: int, samples: bool) -> float:
    """``BatchRoofline.sequence_s``, term by term in its order."""
    per_layer = (
        cost[C_KV] * (context + n) + cost[C_LIN] * n + cost[C_ATTN] * n * (2 * context + n + 1)
    )
    s = (n_layers - split) * per_layer + cost[C_HEAD_TOK] * n
    if split == 0:
        s += cost[C_EMBED] * n
    if samples:
        s += cost[C_HEAD_SMP]
    return s


@hot
def _batch_time(ints: A, gi: A, sched: A, cost: A) -> float:
    """``EdgeServer._batch_time`` (with ``BatchRoofline.fixed_s`` written out)."""
    n_layers = int(cost[C_N_LAYERS])
    total = 0.0
    tokens = 0
    min_split = n_layers
    any_ids = False
    any_samples = False
    for b in range(gi[N_SCHED]):
        j = sched[0, b]
        n = sched[1, b]
        c = ints[j, COMPUTED]
        k = ints[j, SPLIT]
        samples = c + n == ints[j, KNOWN]
        total += _sequence_s(cost, n_layers, k, n, c, samples)
        tokens += n
        min_split = min(min_split, k)
        any_ids = any_ids or k == 0
        any_samples = any_samples or samples
    gi[LAST_SIZE] = gi[N_SCHED]
    gi[LAST_TOKENS] = tokens
    fixed = (n_layers - min_split) * cost[C_LAYER_FIXED]
    if any_samples:
        fixed += cost[C_HEAD_FIXED]
    if any_ids:
        fixed += cost[C_EMBED_FIXED]
    return total + fixed


@hot
def _computable(ints: A, floats: A, j: int, s: float) -> int:
    """``EdgeServer._computable``: tokens of ``j`` whose inputs the edge holds at ``s``."""
    need = ints[j, KNOWN] - ints[j, COMPUTED]
    return need - 1 if floats[j, READY_AT] > s else need


@hot
def _admit(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, wait: A, sched: A, out_i: A, out_t: A,
    s: float, budget: int,
) -> None:  # fmt: skip
    """``EdgeServer._admit``: FCFS admissions into what is left of the budgets."""
    while gi[N_WAITING] > 0 and budget > 0 and gi[N_RUNNING] < gi[MAX_SEQS]:
        if gi[N_SCHED] >= gi[MAX_SEQS]:
            return
        j = wait[gi[W_HEAD]]
        if ints[j, KNOWN] * ints[j, KV_BYTES] > gi[CAPACITY]:
            _wait_popleft(wait, gi)
            _reject(ints, floats, gi, gf, out_i, out_t, j, s)
            continue
        hit = _claim(ints, kept, gi, j, ints[j, KNOWN] - 1)
        if hit:
            ints[j, COMPUTED] = hit
            if floats[j, ADMIT_S] < 0:
                ints[j, CACHED] = hit
        need = (ints[j, KNOWN] - ints[j, COMPUTED]) * ints[j, KV_BYTES]
        while _free_bytes(gi) < need:
            sess = _evict_lru(kept, gi)
            if sess < 0:
                break
            _log(out_i, out_t, gi, OUT_EVICTED, sess, s)
        if _free_bytes(gi) < need:  # head-of-line blocking; give the entry back
            if hit:
                _keep(ints, kept, gi, j, hit)
                ints[j, COMPUTED] = 0
            return
        _wait_popleft(wait, gi)
        _grow(ints, gi, j, need)
        ints[j, STATUS] = ST_RUNNING
        floats[j, QUEUED_S] += s - floats[j, QUEUED_SINCE]
        if floats[j, ADMIT_S] < 0:
            floats[j, ADMIT_S] = s
            ints[j, AT_ADMIT] = gi[N_RUNNING]
        run[gi[N_RUNNING]] = j
        gi[N_RUNNING] += 1
        n = min(_computable(ints, floats, j, s), budget)
        if n:  # 0: a preempted split request's only missing input is still on its way
            _sched_add(sched, gi, j, n)
            budget -= n


@hot
def _start_iteration(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, wait: A, sched: A, out_i: A, out_t: A,
    cost: A, s: float,
) -> bool:  # fmt: skip
    """``EdgeServer._start_iteration``: decodes, then prefill chunks, then admissions."""
    gi[N_SCHED] = 0
    budget = gi[MAX_TOKENS]
    max_seqs = gi[MAX_SEQS]
    preempted_before = gi[PREEMPTIONS_TOTAL]
    i = 0
    while i < gi[N_RUNNING] and budget > 0 and gi[N_SCHED] < max_seqs:
        j = run[i]
        i += 1
        if floats[j, READY_AT] > s or ints[j, KNOWN] - ints[j, COMPUTED] != 1:
            continue
        grow = (ints[j, COMPUTED] + 1) * ints[j, KV_BYTES] - ints[j, HELD]
        if grow > 0:
            if not _make_room(ints, floats, kept, gi, run, wait, out_i, out_t, j, grow, s):
                continue
            _grow(ints, gi, j, grow)
        _sched_add(sched, gi, j, 1)
        budget -= 1
    for i in range(gi[N_RUNNING]):
        if budget <= 0 or gi[N_SCHED] >= max_seqs:
            break
        j = run[i]
        need = ints[j, KNOWN] - ints[j, COMPUTED]
        if need > 1:
            n = min(_computable(ints, floats, j, s), budget)
            _sched_add(sched, gi, j, n)
            budget -= n
    if gi[PREEMPTIONS_TOTAL] == preempted_before or gi[N_SCHED] == 0:
        _admit(ints, floats, kept, gi, gf, run, wait, sched, out_i, out_t, s, budget)
    if gi[N_SCHED] == 0:
        return False
    gi[IN_FLIGHT] = 1
    gf[ITER_END] = s + _batch_time(ints, gi, sched, cost)
    return True


@hot
def _complete_iteration(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, sched: A, out_i: A, out_t: A
) -> None:
    """``EdgeServer._complete_iteration``: the batch's tokens land at the iteration's end."""
    e = gf[ITER_END]
    gi[IN_FLIGHT] = 0
    gf[BUSY] += e - gf[CLOCK]
    gf[CLOCK] = e
    gi[ITERATIONS] += 1
    for b in range(gi[N_SCHED]):
        j = sched[0, b]
        ints[j, COMPUTED] += sched[1, b]
        if ints[j, COMPUTED] == ints[j, KNOWN]:
            _token_sampled(ints, floats, kept, gi, gf, run, out_i, out_t, j, e)


# --- decode-only stretches ---------------------------------------------------------------------

_affine = hot(affine_iterations)


@hot
def _ready_decodes(
    floats: A, run: A, n_run: int, batch: A, clock: float
) -> tuple[int, float, float]:
    """``EdgeServer._ready_decodes``: ``batch[:n]`` ready (admission order), when the
    iteration starts, and when the earliest round trip still out ends (inf: none)."""
    first = math.inf
    nb = 0
    # the reference's if/elif chain as selects (whether a request is ready is a coin toss to
    # the branch predictor), and only its ``first`` here: the lowest ready_at of those not
    # ready, a strict ``<`` keeping the earlier of equals, NaN never taken (one compare and
    # select a row: the chain the whole scan waits on, ~half an iteration's time when it
    # also carried the reference's ``earliest`` and ``tie``, measured). Those two matter only
    # when nobody is ready, and then they name exactly the rows whose ready_at is ``first``
    for i in range(n_run):
        j = run[i]
        x = floats[np.uint64(j), READY_AT]
        ready = x <= clock
        batch[nb] = j  # kept when ready (else the next one overwrites it)
        nb += ready
        y = math.inf if ready else x
        first = y if y < first else first
    if nb > 0:
        return nb, clock, first
    # the server idles until the first round trip ends: the reference's ``earliest``, with
    # every one tied with it (the same rows, in order: nobody's ready_at is below ``first``)
    for i in range(n_run):
        if floats[np.uint64(run[i]), READY_AT] <= first:
            batch[nb] = run[i]
            nb += 1
    if nb == 0:  # every ready_at NaN: the reference's ``earliest`` stays the first row
        batch[0] = run[0]
        nb = 1
    return nb, first, first


@hot
def _decode_s(ints: A, cost: A, n_layers: int, j: int) -> float:
    """Row ``j``'s term in a decode iteration's time: its ``BatchRoofline.sequence_s`` for one
    token, term by term in its order, and its sample's (``EdgeServer._price_decodes``)."""
    r = np.uint64(j)
    c = ints[r, COMPUTED]
    k = ints[r, SPLIT]
    kv, lin, attn, head_tok = cost[C_KV], cost[C_LIN], cost[C_ATTN], cost[C_HEAD_TOK]
    seq = (n_layers - k) * (kv * (c + 1) + lin + attn * (2 * c + 2)) + head_tok
    if k == 0:
        seq += cost[C_EMBED]
    return seq + cost[C_HEAD_SMP]


@hot
def _price_decodes(
    ints: A, batch: A, nb: int, priced: A, n_layers: int
) -> tuple[int, float, int, int]:
    """``EdgeServer._price_decodes``: KV bytes, the sequences' seconds (each row's
    :func:`_decode_s`, read from ``priced[row]``, added in the batch's order), lowest/highest
    split."""
    need = 0
    total = 0.0
    min_split = n_layers
    max_split = 0
    for b in range(nb):
        j = np.uint64(batch[b])
        need += ints[j, KV_BYTES]
        k = ints[j, SPLIT]
        total += priced[j]
        if k < min_split:
            min_split = k
        if k > max_split:
            max_split = k
    return need, total, min_split, max_split


@hot
def _jump(
    ints: A, floats: A, gi: A, out_i: A, out_t: A, batch: A, nb: int, s: float, d0: float,
    g: float, room: int, t: float, first: float,
) -> tuple[int, float]:  # fmt: skip
    """``EdgeServer._jump``: ``n`` iterations of a fixed token-id batch at once, and their
    end, when ``n`` reaches JUMP_MIN (else ``n`` and nothing done)."""
    left = ints[batch[0], OUTPUT] - ints[batch[0], GENERATED]
    for b in range(1, nb):
        left = min(left, ints[batch[b], OUTPUT] - ints[batch[b], GENERATED])
    n = _affine(s, d0, g, min(left - 1, room), t, first)
    if n < JUMP_MIN:
        return n, s
    e = s + (n * d0 + g * (n * (n - 1) // 2))
    for b in range(nb):
        j = batch[b]
        ints[j, COMPUTED] += n
        ints[j, GENERATED] += n
        ints[j, KNOWN] += n
        _grow(ints, gi, j, n * ints[j, KV_BYTES])
        _first_token(floats, gi, out_i, out_t, j, s + d0)
    return n, e


@hot
def _decodes_only(ints: A, gi: A, run: A) -> bool:
    """``EdgeServer._decodes_only``: nothing queued, every running request one token short of
    a decode and holding exactly its computed tokens' KV."""
    if gi[N_RUNNING] == 0 or gi[N_WAITING] > 0:
        return False
    for i in range(gi[N_RUNNING]):
        j = run[i]
        c = ints[j, COMPUTED]
        if ints[j, KNOWN] - c != 1 or ints[j, HELD] != c * ints[j, KV_BYTES]:
            return False
    return True


@hot
def _decode_stretch(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, sched: A, batch: A, out_i: A, out_t: A,
    cost: A, fixed: A, t: float,
) -> int:  # fmt: skip
    """``EdgeServer._decode_run``: HAND_BACK to the general scheduler, AT_HORIZON, or PAUSED
    (the log is nearly full)."""
    if not _decodes_only(ints, gi, run):
        return HAND_BACK
    cap = min(gi[MAX_TOKENS], gi[MAX_SEQS])  # decodes take 1 token each
    n_layers = int(cost[C_N_LAYERS])
    # each running row's next decode priced ahead (:func:`_decode_s`), and again after each
    # of its tokens, rather than after the scan that picks the batch: the same doubles, added
    # in the same order, off the chain an iteration waits on (scan, price, end, next scan;
    # ~0.25 us a step at N = 32, measured on recorded cells). They live in ``sched``'s second
    # row seen as doubles, a row's at its index: nothing is in flight inside a stretch (the
    # iteration it may leave in flight overwrites them; the next stretch prices anew)
    priced = sched.view(np.float64)[1]
    for i in range(gi[N_RUNNING]):
        priced[run[i]] = _decode_s(ints, cost, n_layers, run[i])
    # the server's clock, busy time, iterations and last batch size in locals, as the
    # reference's loop keeps them (nothing inside reads them from the arrays), stored back
    # at every exit: a store to ``ints`` would otherwise reload them (the arrays may alias)
    clock, busy, iterations = gf[CLOCK], gf[BUSY], gi[ITERATIONS]
    last, last_tokens = gi[LAST_SIZE], gi[LAST_TOKENS]
    done = HAND_BACK
    while gi[N_RUNNING] > 0:
        if _log_full(out_i, gi, ints, kept):
            done = PAUSED
            break
        nb, s, first = _ready_decodes(floats, run, gi[N_RUNNING], batch, clock)
        if s >= t:
            done = AT_HORIZON
            break
        whole = nb <= cap
        if not whole:
            nb = cap
        need, total, min_split, max_split = _price_decodes(ints, batch, nb, priced, n_layers)
        if need > _free_bytes(gi):
            clock = s  # eviction or preemption: the general scheduler decides
            break
        d0 = total + fixed[min_split]
        last = last_tokens = nb
        if max_split == 0 and whole and first - s > JUMP_MIN * d0:
            room = _free_bytes(gi) // need
            n, e = _jump(ints, floats, gi, out_i, out_t, batch, nb, s, d0, nb * cost[C_SLOPE],
                         room, t, first)  # fmt: skip
            if n >= JUMP_MIN:
                for b in range(nb):  # n tokens each
                    priced[batch[b]] = _decode_s(ints, cost, n_layers, batch[b])
                busy += e - s
                clock = e
                iterations += n
                gi[CLOSED_FORM] += n
                continue
        e = s + d0
        if e > t:
            for b in range(nb):
                _grow(ints, gi, batch[b], ints[batch[b], KV_BYTES])
                sched[0, b] = batch[b]
                sched[1, b] = 1
            gi[N_SCHED] = nb
            gi[IN_FLIGHT] = 1
            gf[ITER_END] = e
            clock = s
            done = AT_HORIZON
            break
        busy += e - s
        clock = e
        iterations += 1
        # the tokens (``_decode_run``'s inner loop), each row grown just before its own
        # rather than all first: integer sums, the same pool bytes whatever their order,
        # and a finish reads only its own row's bytes
        for b in range(nb):
            j = batch[b]
            r = np.uint64(j)
            _grow(ints, gi, r, ints[r, KV_BYTES])
            ints[r, COMPUTED] += 1
            _token_sampled(ints, floats, kept, gi, gf, run, out_i, out_t, j, e)
            priced[r] = _decode_s(ints, cost, n_layers, j)  # (unread if it finished)
    gf[CLOCK], gf[BUSY], gi[ITERATIONS] = clock, busy, iterations
    gi[LAST_SIZE], gi[LAST_TOKENS] = last, last_tokens
    return done


@hot
def _next_start(ints: A, floats: A, gi: A, gf: A, run: A) -> float:
    """``EdgeServer._next_start``; -1.0 for None (nothing queued or running)."""
    if gi[N_WAITING] > 0:
        return gf[CLOCK]
    if gi[N_RUNNING] == 0:
        return -1.0
    first_ready = math.inf
    for i in range(gi[N_RUNNING]):
        j = run[i]
        # a prefill (more than one token to compute) can always go on now: its inputs are here
        x = floats[j, READY_AT] if ints[j, KNOWN] - ints[j, COMPUTED] == 1 else 0.0
        first_ready = min(first_ready, x)
    return gf[CLOCK] if gf[CLOCK] >= first_ready else first_ready


@jit
def _run_to(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, wait: A, sched: A, batch: A, out_i: A,
    out_t: A, cost: A, fixed: A, t: float,
) -> bool:  # fmt: skip
    """``EdgeServer.advance`` to ``t`` (Python's loop); True when it paused with the log
    nearly full (drain it and call again)."""
    while True:
        if _log_full(out_i, gi, ints, kept):
            return True
        if gi[IN_FLIGHT]:
            if gf[ITER_END] > t:
                return False
            _complete_iteration(ints, floats, kept, gi, gf, run, sched, out_i, out_t)
            continue
        if gi[N_WAITING] == 0:
            done = _decode_stretch(
                ints, floats, kept, gi, gf, run, sched, batch, out_i, out_t, cost, fixed, t
            )
            if done == AT_HORIZON:
                return False
            if done == PAUSED:
                return True
        start = _next_start(ints, floats, gi, gf, run)
        if start < 0 or start >= t:
            if start < 0 and t > gf[CLOCK]:
                gf[CLOCK] = t
            return False
        gf[CLOCK] = start
        if not _start_iteration(
            ints, floats, kept, gi, gf, run, wait, sched, out_i, out_t, cost, start
        ):
            later = math.inf
            for i in range(gi[N_RUNNING]):
                x = floats[run[i], READY_AT]
                if start < x < later:
                    later = x
            if later == math.inf or later >= t:
                gf[CLOCK] = t  # idle until a round trip ends or a request arrives
                return False
            gf[CLOCK] = later


@hot
def submit(ints: A, floats: A, gi: A, gf: A, wait: A, j: int, t: float) -> bool:
    """``EdgeServer.submit``'s part on the server for row ``j`` (written already); False and
    nothing done when ``t`` is before the clock with no iteration in flight."""
    if t < gf[CLOCK] and not gi[IN_FLIGHT]:
        return False
    _count(gi, gf, t, 1)
    if not gi[IN_FLIGHT] and t > gf[CLOCK]:
        gf[CLOCK] = t
    wait[(gi[W_HEAD] + gi[N_WAITING]) % wait.shape[0]] = j
    gi[N_WAITING] += 1
    return True


@jit
def advance(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, wait: A, sched: A, batch: A, out_i: A,
    out_t: A, subs: A, sub_t: A, cost: A, fixed: A, t: float,
) -> bool:  # fmt: skip
    """``EdgeServer.advance`` to ``t`` with the scheduled submissions first, in order: each
    one's time reached (``advance``), then it is submitted (``submit``), as the simulator did
    with one call each. True when it paused with the log nearly full (drain it and call
    again); a submission before the clock stops it with ``SUB_ERROR`` set (the server raises,
    as ``EdgeServer.submit`` does). Submissions after ``t`` stay scheduled."""
    n = gi[N_SUBS]
    done = 0
    while True:
        submitting = done < n and sub_t[done] <= t
        horizon = sub_t[done] if submitting else t
        paused = _run_to(
            ints, floats, kept, gi, gf, run, wait, sched, batch, out_i, out_t, cost, fixed, horizon
        )
        if paused or not submitting:
            break
        if not submit(ints, floats, gi, gf, wait, subs[done], horizon):
            gi[SUB_ERROR] = 1
            break
        done += 1
    for i in range(done, n):  # the ones left move to the front
        subs[i - done] = subs[i]
        sub_t[i - done] = sub_t[i]
    gi[N_SUBS] = n - done
    return paused


@jit
def totals(ints: A, gi: A, run: A, wait: A) -> tuple[int, int]:
    """Prompt tokens still to prefill over the queue, and KV tokens of the running requests
    (``EdgeServer.state``'s sums)."""
    waiting = 0
    for i in range(gi[N_WAITING]):
        j = wait[(gi[W_HEAD] + i) % wait.shape[0]]
        waiting += ints[j, KNOWN] - ints[j, COMPUTED]
    running = 0
    for i in range(gi[N_RUNNING]):
        running += ints[run[i], COMPUTED]
    return waiting, running


@jit
def decision_view(
    ints: A, gi: A, gf: A, run: A, wait: A, kept: A, row: int
) -> tuple[int, int, int, int, int, int, int, int, int, int, float]:
    """``EdgeServer.decision_view``: what a decision reads of the edge, in one call (``row``:
    the session's kept row, -1 if none; then split -1, tokens and bytes 0, rank -1)."""
    waiting, running = totals(ints, gi, run, wait)
    split, tokens, nbytes, rank = -1, 0, 0, -1
    if row >= 0:
        split, tokens, nbytes = kept[row, K_SPLIT], kept[row, K_TOKENS], kept[row, K_BYTES]
        stamp = kept[row, K_STAMP]
        rank = 0
        for s in range(kept.shape[0]):
            if kept[s, K_STAMP] > stamp:
                rank += 1
    return (
        gi[RUNNING_BYTES] + gi[KEPT_BYTES], gi[CAPACITY], gi[N_WAITING], waiting,
        gi[N_RUNNING], running, split, tokens, nbytes, rank, gf[BUSY],
    )  # fmt: skip


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, on an empty server."""
    table = SequenceTable(1, 1, 1)
    cost = np.zeros(C_N_LAYERS + 1)
    advance(*table.args, cost, np.zeros(1), 1.0)
    submit(table.ints, table.floats, table.gi, table.gf, table.wait, 0, 1.0)
    totals(table.ints, table.gi, table.run, table.wait)
    decision_view(table.ints, table.gi, table.gf, table.run, table.wait, table.kept, -1)
