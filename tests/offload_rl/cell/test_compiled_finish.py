"""The compiled finish path equals the calls it replaces, bit for bit.

:func:`offload_rl.cell.compiled_finish.edge_done` does in one kernel call what
``CellSimulator._edge_done`` did in four (the radio's wake, ``Device.receive``, the ledger's
close and charge); each of those is pinned to its Python reference elsewhere
(``test_compiled_devices.py``, ``test_compiled_ledger.py``), so this compares the fused call
with them, arrays equal (no tolerance), over any sequence of finishes. ``_hand_over``, the
kernel's last step, is compared with ``SequenceTable.sync_row``: the fields it copies into the
cell log are the ones ``sync_row`` writes, of the same types.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell import sequence_table as tab
from offload_rl.cell.edge_server import EdgeRequest
from offload_rl.cell.ledger_table import CompiledCostLedger
from offload_rl.cell.radio import RADIOS
from offload_rl.cell.radio_bank import RadioBank

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

finishes = st.lists(
    st.tuples(
        st.integers(0, 2),  # device
        st.floats(0.0, 5.0),  # the simulator's clock moves on by
        st.floats(-3.0, 3.0),  # first token at the device, from the clock
        st.floats(-1.0, 20.0) | st.just(0.0),  # finish, from the first token
        st.sampled_from([0.0, 1.0, 2.5]) | st.floats(0.0, 10.0),  # penalty
        st.integers(0, 40),  # request (keys > 24 are not open)
    ),
    max_size=40,
)


def _reference(bank: RadioBank, ledger: CompiledCostLedger, op: tuple, last: float) -> None:
    """``_edge_done``'s calls from its wake on, as the Python path makes them."""
    j, _, first, end, penalty, key = op
    lo = max(first, last)
    bank.wake(j, last)
    bank.radio(j).keep_connected(lo, max(end - lo, 0.0))
    ledger.close(key, end)
    if penalty:
        ledger.charge(end, penalty)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(RADIOS)), finishes)
def test_edge_done_equals_its_calls(name, ops):
    """Radio rows, awake list, levels and the ledger's arrays equal after every finish; a key
    that is not open raises in both (the radio changed in both)."""
    kernels = cd.kernels("compiled_finish")
    params = [RADIOS[name], RADIOS["wifi"], RADIOS[name]]
    bank = RadioBank(params)
    ledger = CompiledCostLedger()
    for key in range(25):
        ledger.open(key, 0.1 * key, 1.0 + key)
    fused_bank, fused = copy.deepcopy(bank), copy.deepcopy(ledger)
    last = 0.0
    for op in ops:
        j, dt, first_dt, end_dt, penalty, key = op
        last += dt
        first = last + first_dt
        end = first + end_dt
        op = (j, dt, first, end, penalty, key)
        try:
            _reference(bank, ledger, op, last)
            raised = False
        except KeyError:
            raised = True
        lo = first if not last > first else last
        t = fused._table
        flags = kernels.edge_done(
            fused_bank.table, fused_bank.awake, fused_bank.levels, t.heap, t.gi, t.opened,
            t.lumps, j, last, lo, end - lo, key, end, penalty,
        )  # fmt: skip
        assert (flags < 0) == raised
        if flags > 0 and flags & kernels.HEAP_FULL:
            t.grow_heap()
        if flags > 0 and flags & kernels.LUMPS_FULL:
            t.grow_lumps()
        for a, b in (
            (bank.table, fused_bank.table), (bank.awake, fused_bank.awake),
            (bank.levels, fused_bank.levels), (ledger._table.heap, t.heap),
            (ledger._table.gi, t.gi), (ledger._table.opened, t.opened),
            (ledger._table.lumps, t.lumps),
        ):  # fmt: skip
            assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


log_rows = st.lists(
    st.tuples(
        st.sampled_from(range(5)),  # the scheduler log's code (tab.OUT_*)
        st.integers(0, 7),  # its row (a session for an eviction)
        st.floats(allow_nan=False),  # its time
        st.tuples(st.floats(), st.floats(), st.sampled_from([0.0, 1.0])),  # end, TTFT, missed
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(log_rows, st.integers(0, 2**32 - 1))
def test_hand_over_moves_the_log_and_copies_what_sync_row_writes(rows, seed):
    """``_hand_over`` leaves the log's rows that are not first tokens at its front, in order
    and unchanged, and each finish's or rejection's row carries the fields ``sync_row`` would
    write into its request (types included) as the table holds them; those rows are FREE."""
    kernels = cd.kernels("compiled_finish")
    rng = np.random.default_rng(seed)
    table = tab.SequenceTable(1 << 30, 64, 8)
    table.ints[:8] = rng.integers(-(2**62), 2**62, size=(8, tab.N_INT_COLUMNS))
    table.ints[:8, tab.STATUS] = rng.integers(0, 4, size=8)
    table.floats[:8] = rng.standard_normal((8, tab.N_FLOAT_COLUMNS)) * 1e3
    refs = {}
    for j in range(8):
        refs[j] = EdgeRequest(j, 0, 0, 0.0, 0, 0, 0)
        table.sync_row(j, refs[j])
    before = table.ints.copy()
    log = np.zeros((len(rows) + 1, kernels.N_LOG_COLUMNS))
    ilog = log.view(np.int64)
    for k, (code, j, t, (end, ttft, missed)) in enumerate(rows):  # as _read_log writes them
        ilog[k, kernels.L_CODE], ilog[k, kernels.L_ROW], log[k, kernels.L_T] = code, j, t
        log[k, kernels.L_END], log[k, kernels.L_TTFT], log[k, kernels.L_VIOLATED] = (
            end,
            ttft,
            missed,
        )
    cs = np.zeros(kernels.N_STATE, dtype=np.int64)
    cs[kernels.N_LOG] = len(rows)
    n = kernels._hand_over(table.ints, table.floats, log, cs)
    kept = [r for r in rows if r[0] != tab.OUT_FIRST]
    assert n == len(kept)
    finished = set()
    for (code, j, t, (end, ttft, missed)), got in zip(
        kept, kernels.LOG_ROW.iter_unpack(log[:n]), strict=True
    ):
        assert repr(got[:6]) == repr((code, j, t, end, ttft, missed))
        if code in (tab.OUT_DONE, tab.OUT_REJECTED):
            finished.add(j)
            r = refs[j]
            fields = (
                r.computed, r.generated, r.known, r.preemptions, r.cached_tokens,
                r.batch_at_admit, r.ready_at, r.round_trip_s, r.first_token_s, r.admit_s,
                r.finish_s, r.queued_s, r.queued_since,
            )  # fmt: skip
            assert repr(got[6:]) == repr(fields)
    status = before[:, tab.STATUS].copy()
    status[sorted(finished)] = tab.FREE
    assert np.array_equal(table.ints[:, tab.STATUS], status)
    before[:, tab.STATUS] = status
    assert np.array_equal(table.ints, before)
