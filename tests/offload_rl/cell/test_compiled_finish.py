"""The compiled finish path equals the calls it replaces, bit for bit.

:func:`offload_rl.cell.compiled_finish.edge_done` does in one kernel call what
``CellSimulator._edge_done`` did in four (the radio's wake, ``Device.receive``, the ledger's
close and charge); each of those is pinned to its Python reference elsewhere
(``test_compiled_devices.py``, ``test_compiled_ledger.py``), so this compares the fused call
with them, arrays equal (no tolerance), over any sequence of finishes.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
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
