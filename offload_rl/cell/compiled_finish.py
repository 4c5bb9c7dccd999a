"""The compiled simulator's work when an edge request finishes, in one kernel call (numba).

:meth:`~offload_rl.cell.simulator.CellSimulator._edge_done` is the reference: per finished
request it wakes the device's radio, keeps it connected while the tokens stream down
(``Device.receive``), closes the request in the cost ledger and charges its SLO/cost penalty,
four kernel calls behind ~8 Python frames (~3 us of glue per finished request at N = 32).
:func:`edge_done` does the same operations, in the same order, on the radio bank's and the
ledger's arrays; :func:`settle_and_spend` does each advance's radio settlement and the
charge of its joules in one call. Importing this module imports numba.
"""

from __future__ import annotations

import numpy as np

from offload_rl.cell.compiled_devices import keep_connected, stream_and_settle, wake
from offload_rl.cell.compiled_ledger import charge, close_request, spread_pair
from offload_rl.cell.kernel_jit import jit, jit_alloc
from offload_rl.cell.ledger_table import O_OPEN

A = np.ndarray  # every array argument
HEAP_FULL, LUMPS_FULL = 1, 2  # edge_done's flags: what the caller grows


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


@jit
def stream_done(
    r: A, awake: A, levels: A, streams: A, row: int, n_left: int, heap: A, gi: A, opened: A,
    lumps: A, j: int, last: float, lo: float, duration_s: float, key: int, end: float,
    penalty: float,
) -> tuple[int, int]:  # fmt: skip
    """``RadioBank.drop_stream(row)`` (``row`` >= 0; ``n_left`` streams stay), then
    :func:`edge_done`: (its flags, the request whose stream moved into ``row``, -1 if none)."""
    moved = -1
    if 0 <= row < n_left:  # the last row moves into the freed one
        for c in range(streams.shape[1]):
            streams[row, c] = streams[n_left, c]
        moved = int(streams[row, 0])
    flags = edge_done(
        r, awake, levels, heap, gi, opened, lumps, j, last, lo, duration_s, key, end, penalty
    )
    return flags, moved


@jit_alloc  # stream_and_settle's argsort allocates
def settle_and_spend(
    r: A, awake: A, levels: A, streams: A, n: int, t: float, last: float, heap: A, gi: A,
    lumps: A, heap2: A, gi2: A, lumps2: A, w_energy: float,
) -> tuple[float, bool]:  # fmt: skip
    """``RadioBank.stream_and_settle`` then, when the radios spent anything, the simulator's
    ``_spend(t, t, joules)`` on its two ledgers (``spread_pair``): the joules, and True when
    a ledger is full (the caller grows both, as ``spread_pair``'s caller does)."""
    energy = stream_and_settle(r, awake, levels, streams, n, t, last)
    if energy != 0.0:  # `if energy:`
        full = spread_pair(heap, gi, lumps, heap2, gi2, lumps2, t, t, w_energy * energy, energy)
        return energy, full
    return energy, False


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
    stream_done(
        r, awake, levels, np.zeros((2, 3)), 0, 1, table.heap, table.gi, table.opened,
        table.lumps, 0, 0.0, 0.0, 1.0, 0, 1.0, 0.5,
    )  # fmt: skip
    other = LedgerTable()
    settle_and_spend(
        r, awake, levels, np.zeros((1, 3)), 1, 3.0, 2.0, table.heap, table.gi, table.lumps,
        other.heap, other.gi, other.lumps, 0.5,
    )  # fmt: skip
