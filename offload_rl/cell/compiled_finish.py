"""The compiled simulator's advance, in one kernel call per decision (numba).

:meth:`~offload_rl.cell.simulator.CellSimulator._finish_python` is the reference: after the
edge server's iterations, per finished request it wakes the device's radio, keeps it
connected while the tokens stream down (``Device.receive``), closes the request in the cost
ledger and charges its SLO/cost penalty (:meth:`~offload_rl.cell.simulator.CellSimulator.
_edge_done`); then the requests whose first token came start streaming, the awake radios are
settled and their joules spent. :func:`advance_cell` does all of it, and the edge's
iterations (:func:`offload_rl.cell.compiled_scheduler.advance`) and both ledgers' collection,
in one call with the same operations in the same order: per decision ~6 kernel calls and
their Python glue (~157 Python calls per step at N = 32) became one. :func:`edge_done` is one
finished request's radio and ledger work. Importing this module imports numba.
"""

from __future__ import annotations

import struct

import numpy as np

from offload_rl.cell import sequence_table as tab
from offload_rl.cell.compiled_devices import keep_connected, settle_awake, stream_row, wake
from offload_rl.cell.compiled_ledger import charge, close_request, collect_pair, spread_pair
from offload_rl.cell.compiled_scheduler import advance as advance_edge
from offload_rl.cell.kernel_jit import hot, jit
from offload_rl.cell.ledger_table import LATENCY, N_HEAP, N_LUMPS, O_OPEN

A = np.ndarray  # every array argument
HEAP_FULL, LUMPS_FULL = 1, 2  # edge_done's flags: what the caller grows
# advance_cell's state between its calls (``cs``, int64): its phase, the scheduler's log read
# so far, the cell log's length, and the cell log's rows visited for first tokens
PHASE, OUT_POS, N_LOG, FIRST_POS = range(4)
N_STATE = 4
# phases: run the scheduler, read its last log, streams; done (the next call starts afresh)
START, DRAIN, STREAMS, FINISHED = range(4)
# what advance_cell returns first: done, or what the caller must do before calling again
DONE, ROOM_LOG, ROOM_LEDGER, ROOM_STREAMS, SUB_BEFORE_CLOCK, NOT_OPEN = range(6)
# the cell log's columns (8 bytes each; int64 ones written through the log's int64 view): the
# scheduler log's code and row (a session for an eviction), ints, and time; for a finish its
# end at the device, TTFT and whether it missed its SLO (1.0), then, once the call is done,
# its row's fields that ``SequenceTable.sync_row`` writes into its request (ints, then floats)
L_CODE, L_ROW, L_T, L_END, L_TTFT, L_VIOLATED = range(6)
L_COMPUTED, L_GENERATED, L_KNOWN, L_PREEMPTIONS, L_CACHED, L_AT_ADMIT = range(6, 12)
L_READY_AT, L_ROUND_TRIP, L_FIRST_TOKEN, L_ADMIT_S, L_FINISH_S, L_QUEUED_S, L_QUEUED_SINCE = range(
    12, 19
)
N_LOG_COLUMNS = 19
# one row of the cell log as the caller unpacks it (native: the kernel's int64s and doubles)
LOG_ROW = struct.Struct("=2q4d6q7d")


@jit
def edge_done(
    r: A, awake: A, levels: A, heap: A, gi: A, opened: A, lumps: A, j: int, last: float,
    lo: float, duration_s: float, key: int, end: float, penalty: float,
) -> int:  # fmt: skip
    """``_wake(j)``, ``Device.receive(lo, duration_s)``, ``ledger.close(key, end)`` and, when
    ``penalty`` is not 0, ``ledger.charge(end, penalty)``: -1 when ``key`` is not open (the
    radio changed, the ledger not), else the flags of what is now full."""
    wake(r, awake, levels, j, last)
    keep_connected(r, j, lo, 0.0 if duration_s < 0.0 else duration_s)  # max(duration_s, 0.0)
    if key >= opened.shape[0] or opened[key, O_OPEN] == 0.0:
        return -1
    flags = HEAP_FULL if close_request(heap, gi, opened, key, end) else 0
    if penalty != 0.0 and charge(gi, lumps, end, penalty):
        flags |= LUMPS_FULL
    return flags


@hot
def _slo_violated_times(
    ttft_s: float, latency_s: float, output_tokens: int, ttft_slo_s: float, tpot_slo_s: float
) -> bool:
    """:func:`offload_rl.reward.slo_violated_times`, the same float operations."""
    n_dec = output_tokens - 1
    return ttft_s > ttft_slo_s or (n_dec > 0 and (latency_s - ttft_s) / n_dec > tpot_slo_s)


@hot
def _finish_row(
    ints: A, floats: A, r: A, awake: A, levels: A, streams: A, n_streams: int, heap: A,
    gi: A, opened: A, lumps: A, clog: A, k: int, j: int, last: float, half: float,
    w_slo: float, w_cost: float,
) -> int:  # fmt: skip
    """``CellSimulator._edge_done_compiled`` for the request in row ``j`` (finished or
    rejected), its outcome written in cell log row ``k``: the streams left (-1: the ledger
    had not opened it). Its stream row, if any, is removed keeping the rows in request order."""
    rid = ints[j, tab.REQUEST]
    rejected = ints[j, tab.STATUS] == tab.ST_REJECTED
    finish, first = floats[j, tab.FINISH_S], floats[j, tab.FIRST_TOKEN]
    end = finish + (0.0 if rejected else half)
    if first < 0:
        first = finish
    arrival = floats[j, tab.CELL_ARRIVAL]
    ttft = first + half - arrival
    for row in range(n_streams):  # RadioBank.drop_stream, in request order
        if streams[row, 0] == rid:
            n_streams -= 1
            for m in range(row, n_streams):
                for c in range(streams.shape[1]):
                    streams[m, c] = streams[m + 1, c]
            break
    lo = first + half
    if last > lo:  # max(first + half, last)
        lo = last
    violated = rejected or _slo_violated_times(
        ttft, end - arrival, ints[j, tab.OUTPUT], floats[j, tab.SLO_TTFT], floats[j, tab.SLO_TPOT]
    )
    penalty = w_slo * (1.0 if violated else 0.0) + w_cost * 0.0  # an edge request's usd is 0
    device = ints[j, tab.DEVICE]
    if edge_done(r, awake, levels, heap, gi, opened, lumps, device, last, lo, end - lo, rid, end,
                 penalty) < 0:  # fmt: skip
        return -1
    clog[k, L_END], clog[k, L_TTFT], clog[k, L_VIOLATED] = end, ttft, 1.0 if violated else 0.0
    return n_streams


@hot
def _read_log(
    ints: A, floats: A, gi: A, out_i: A, out_t: A, r: A, awake: A, levels: A, streams: A,
    n_streams: int, heap: A, lgi: A, opened: A, lumps: A, clog: A, cs: A, last: float,
    half: float, w_slo: float, w_cost: float,
) -> tuple[int, int]:  # fmt: skip
    """The scheduler's log from ``cs[OUT_POS]`` into the cell log, each finish done as it is
    read: (a status, the streams left). Stops, to be called again, where an array is full."""
    n_out = gi[tab.N_OUT]
    while cs[OUT_POS] < n_out:
        p = cs[OUT_POS]
        k = cs[N_LOG]
        if k >= clog.shape[0]:
            return ROOM_LOG, n_streams
        code = out_i[p, 0]
        if code == tab.OUT_DONE or code == tab.OUT_REJECTED:
            if lgi[N_HEAP + LATENCY] + 3 > heap.shape[1] or lgi[N_LUMPS] + 2 > lumps.shape[0]:
                return ROOM_LEDGER, n_streams
            n_streams = _finish_row(
                ints, floats, r, awake, levels, streams, n_streams, heap, lgi, opened, lumps,
                clog, k, out_i[p, 1], last, half, w_slo, w_cost,
            )  # fmt: skip
            if n_streams < 0:
                return NOT_OPEN, 0
        ilog = clog.view(np.int64)
        ilog[k, L_CODE], ilog[k, L_ROW], clog[k, L_T] = code, out_i[p, 1], out_t[p]
        cs[N_LOG] = k + 1
        cs[OUT_POS] = p + 1
    gi[tab.N_OUT] = 0
    cs[OUT_POS] = 0
    return DONE, n_streams


@hot
def _start_streams(
    ints: A, clog: A, cs: A, streams: A, n_streams: int, half: float
) -> tuple[int, int]:
    """``CellSimulator._start_streams`` from the first tokens in the cell log (rows from
    ``cs[FIRST_POS]``): each request not finished since starts streaming, its row inserted in
    request order (the order the reference's argsort visits). (A status, the streams.)"""
    ilog = clog.view(np.int64)
    while cs[FIRST_POS] < cs[N_LOG]:
        k = cs[FIRST_POS]
        if ilog[k, L_CODE] == tab.OUT_FIRST:
            j = ilog[k, L_ROW]
            status = ints[j, tab.STATUS]
            if status != tab.ST_FINISHED and status != tab.ST_REJECTED:
                if n_streams == streams.shape[0]:
                    return ROOM_STREAMS, n_streams
                rid = ints[j, tab.REQUEST]
                m = n_streams
                while m > 0 and streams[m - 1, 0] > rid:
                    for c in range(streams.shape[1]):
                        streams[m, c] = streams[m - 1, c]
                    m -= 1
                streams[m, 0] = rid
                streams[m, 1] = ints[j, tab.DEVICE]
                streams[m, 2] = clog[k, L_T] + half
                n_streams += 1
        cs[FIRST_POS] = k + 1
    return DONE, n_streams


@hot
def _hand_over(ints: A, floats: A, clog: A, cs: A) -> int:
    """The cell log made what the caller hands to objects, in the log's order: the rows that
    are not first tokens moved to its front (their number returned), each finish's or
    rejection's row fields (as ``SequenceTable.sync_row`` reads them now, the call's end)
    copied into its log row, and its table row marked FREE (the caller frees it)."""
    ilog = clog.view(np.int64)
    n = 0
    for k in range(cs[N_LOG]):
        code = ilog[k, L_CODE]
        if code == tab.OUT_FIRST:
            continue
        for c in range(L_COMPUTED):
            ilog[n, c] = ilog[k, c]  # the bytes, floats' too
        if code == tab.OUT_DONE or code == tab.OUT_REJECTED:
            j = ilog[n, L_ROW]
            ilog[n, L_COMPUTED] = ints[j, tab.COMPUTED]
            ilog[n, L_GENERATED] = ints[j, tab.GENERATED]
            ilog[n, L_KNOWN] = ints[j, tab.KNOWN]
            ilog[n, L_PREEMPTIONS] = ints[j, tab.PREEMPTIONS]
            ilog[n, L_CACHED] = ints[j, tab.CACHED]
            ilog[n, L_AT_ADMIT] = ints[j, tab.AT_ADMIT]
            clog[n, L_READY_AT] = floats[j, tab.READY_AT]
            clog[n, L_ROUND_TRIP] = floats[j, tab.ROUND_TRIP]
            clog[n, L_FIRST_TOKEN] = floats[j, tab.FIRST_TOKEN]
            clog[n, L_ADMIT_S] = floats[j, tab.ADMIT_S]
            clog[n, L_FINISH_S] = floats[j, tab.FINISH_S]
            clog[n, L_QUEUED_S] = floats[j, tab.QUEUED_S]
            clog[n, L_QUEUED_SINCE] = floats[j, tab.QUEUED_SINCE]
            ints[j, tab.STATUS] = tab.FREE
        n += 1
    return n


@jit
def advance_cell(
    ints: A, floats: A, kept: A, gi: A, gf: A, run: A, wait: A, sched: A, batch: A,
    out_i: A, out_t: A, subs: A, sub_t: A, cost: A, fixed: A, r: A, awake: A, levels: A,
    heap: A, g: A, lgi: A, lumps: A, opened: A, heap2: A, g2: A, gi2: A, lumps2: A, opened2: A,
    streams: A, n_streams: int, clog: A, cs: A, t: float, last: float, half: float,
    w_energy: float, w_slo: float, w_cost: float, collect: bool,
) -> tuple[int, int, int, float, float, float, float, float, bool]:  # fmt: skip
    """``CellSimulator.advance(t)`` after its submissions are scheduled, and ``collect(t)``
    when ``collect``: the edge server's advance (:func:`compiled_scheduler.advance`), each
    finished request's :func:`_finish_row`, the new token streams, the log handed over
    (:func:`_hand_over`), the radios settled and their joules spent (``_stream_and_settle``,
    ``_spend``), then both ledgers collected.

    Returns (status, streams, the cell log's rows to hand out (0 when there were first
    tokens only), the two ledgers' collected (latency, other) costs, the radios' joules, a
    ledger full). A status other than DONE asks the caller to grow an array (or to raise) and
    call again: the call goes on where it stopped (``cs``). The cell log (``clog``) says what
    the caller hands to objects: finishes (with their rows' fields), events; the next call
    after a DONE starts it afresh."""
    if cs[PHASE] == FINISHED:
        cs[PHASE] = START
        cs[N_LOG] = cs[FIRST_POS] = 0
    while cs[PHASE] != STREAMS:
        status, n_streams = _read_log(
            ints, floats, gi, out_i, out_t, r, awake, levels, streams, n_streams, heap, lgi,
            opened, lumps, clog, cs, last, half, w_slo, w_cost,
        )  # fmt: skip
        if status != DONE:
            return status, n_streams, 0, 0.0, 0.0, 0.0, 0.0, 0.0, False
        if cs[PHASE] == DRAIN:
            cs[PHASE] = STREAMS
            break
        paused = advance_edge(
            ints, floats, kept, gi, gf, run, wait, sched, batch, out_i, out_t, subs, sub_t,
            cost, fixed, t,
        )  # fmt: skip
        if gi[tab.SUB_ERROR]:
            return SUB_BEFORE_CLOCK, n_streams, 0, 0.0, 0.0, 0.0, 0.0, 0.0, False
        if not paused:
            cs[PHASE] = DRAIN
    status, n_streams = _start_streams(ints, clog, cs, streams, n_streams, half)
    if status != DONE:
        return status, n_streams, 0, 0.0, 0.0, 0.0, 0.0, 0.0, False
    cs[PHASE] = FINISHED
    n_log = _hand_over(ints, floats, clog, cs)
    for k in range(n_streams):  # in request order: the rows are kept sorted
        stream_row(r, awake, levels, streams, k, t, last)
    energy = settle_awake(r, awake, levels, t, last)
    full = False
    if energy != 0.0:  # `if energy:`
        full = spread_pair(heap, lgi, lumps, heap2, gi2, lumps2, t, t, w_energy * energy, energy)
    latency = other = latency2 = other2 = 0.0
    if collect:
        latency, other, latency2, other2 = collect_pair(
            heap, g, lgi, lumps, opened, heap2, g2, gi2, lumps2, opened2, t
        )
    return DONE, n_streams, n_log, latency, other, latency2, other2, energy, full


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel, on a scratch radio and ledger."""
    from offload_rl.cell.ledger_table import LedgerTable
    from offload_rl.cell.radio_bank import S_LEVEL

    r = np.zeros((1, S_LEVEL + 1))
    awake, levels = np.zeros(2, dtype=np.int64), np.ones((1, 2))
    table = LedgerTable()
    edge_done(
        r, awake, levels, table.heap, table.gi, table.opened, table.lumps, 0, 0.0, 0.0, 1.0, 0,
        1.0, 0.5,
    )  # fmt: skip
    other = LedgerTable()
    edge = tab.SequenceTable(1, 1, 1)
    cost = np.zeros(11)
    advance_cell(
        *edge.args, cost, np.zeros(1), r, awake, levels, table.heap, table.g, table.gi,
        table.lumps, table.opened, other.heap, other.g, other.gi, other.lumps, other.opened,
        np.zeros((1, 3)), 0, np.zeros((1, N_LOG_COLUMNS)), np.zeros(N_STATE, np.int64),
        4.0, 3.0, 0.01, 0.5, 1.0, 0.0, True,
    )  # fmt: skip
