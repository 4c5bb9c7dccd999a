"""The cell's cost ledger in machine code (numba), on :class:`~offload_rl.cell.ledger_table.
LedgerTable`'s arrays.

:class:`~offload_rl.reward.CostLedger` is the reference; each kernel mirrors one of its methods
and performs its float operations in their order (IEEE doubles, no fast-math), so a compiled
ledger collects bit for bit what the Python one does. The two rate timelines' heaps are rows of
one array ordered by ``(time, sequence number)``, the order of the reference's tuples (the
sequence number is unique, so the pop order, and with it every sum, is the same).

Importing this module imports numba; a ledger imports it only in compiled mode.
"""

from __future__ import annotations

import math

import numpy as np

from offload_rl.cell.kernel_jit import jit
from offload_rl.cell.ledger_table import (
    ACTIVE,
    H_DELTA,
    H_KEY,
    H_SEQ,
    H_STEP,
    H_TIME,
    LATENCY,
    N_HEAP,
    N_LUMPS,
    N_OPEN,
    O_END,
    O_OPEN,
    O_RATE,
    O_START,
    RATE,
    SEQ,
    SPREADS,
    T,
)
from offload_rl.reward import MIN_SPREAD_S

A = np.ndarray


@jit
def _before(heap: A, line: int, a: int, b: int) -> bool:
    """Row ``a`` pops before row ``b``: ``(time, seq)`` order, as the reference's tuples."""
    ta, tb = heap[line, a, H_TIME], heap[line, b, H_TIME]
    return ta < tb or (ta == tb and heap[line, a, H_SEQ] < heap[line, b, H_SEQ])


@jit
def _swap(heap: A, line: int, a: int, b: int) -> None:
    for c in range(heap.shape[2]):
        x = heap[line, a, c]
        heap[line, a, c] = heap[line, b, c]
        heap[line, b, c] = x


@jit
def push(heap: A, gi: A, line: int, when: float, delta: float, step: int, key: int) -> bool:
    """``_RateTimeline.change`` on timeline ``line``; True when the heap has room for fewer
    than two more rows (a spread pushes two: the caller grows it before the next call)."""
    gi[SEQ + line] += 1
    j = gi[N_HEAP + line]
    heap[line, j, H_TIME] = when
    heap[line, j, H_SEQ] = gi[SEQ + line]
    heap[line, j, H_DELTA] = delta
    heap[line, j, H_STEP] = step
    heap[line, j, H_KEY] = key
    gi[N_HEAP + line] = j + 1
    while j > 0:
        parent = (j - 1) // 2
        if not _before(heap, line, j, parent):
            break
        _swap(heap, line, j, parent)
        j = parent
    return gi[N_HEAP + line] + 2 > heap.shape[1]


@jit
def _pop(heap: A, gi: A, line: int) -> None:
    """Remove the heap's first row (the caller read it)."""
    n = gi[N_HEAP + line] - 1
    gi[N_HEAP + line] = n
    if n == 0:
        return
    _swap(heap, line, 0, n)
    j = 0
    while True:
        child = 2 * j + 1
        if child >= n:
            break
        if child + 1 < n and _before(heap, line, child + 1, child):
            child += 1
        if not _before(heap, line, child, j):
            break
        _swap(heap, line, j, child)
        j = child


@jit
def _integrate(heap: A, g: A, gi: A, opened: A, line: int, t0: float, t: float) -> float:
    """``_RateTimeline.integrate``; a stopping key's open entry is removed (``collect``'s
    ``del self._open[key]``, in the same order)."""
    total = 0.0
    at = t0
    rate = g[RATE + line]
    while gi[N_HEAP + line] > 0 and heap[line, 0, H_TIME] <= t:
        when = heap[line, 0, H_TIME]
        delta = heap[line, 0, H_DELTA]
        step = int(heap[line, 0, H_STEP])
        key = int(heap[line, 0, H_KEY])
        _pop(heap, gi, line)
        if when > at:
            total += rate * (when - at)
            at = when
        rate += delta
        gi[ACTIVE + line] += step
        if not gi[ACTIVE + line]:
            rate = 0.0
        if key >= 0:
            opened[key, O_OPEN] = 0.0
            gi[N_OPEN] -= 1
    if t > at:
        total += rate * (t - at)
    g[RATE + line] = rate
    return total


@jit
def collect(heap: A, g: A, gi: A, lumps: A, opened: A, t: float) -> tuple[float, float]:
    """``CostLedger.collect``: ``(latency cost, other cost)`` of ``(last collection, t]``."""
    t0 = g[T]
    latency = _integrate(heap, g, gi, opened, LATENCY, t0, t)
    other = _integrate(heap, g, gi, opened, SPREADS, t0, t)
    n = gi[N_LUMPS]
    if n:
        now = 0.0
        kept = 0
        for j in range(n):
            if lumps[j, 0] <= t:
                now += lumps[j, 1]
            else:
                lumps[kept, 0] = lumps[j, 0]
                lumps[kept, 1] = lumps[j, 1]
                kept += 1
        gi[N_LUMPS] = kept
        other += now
    g[T] = t
    return latency, other


@jit
def collect_pair(
    heap: A, g: A, gi: A, lumps: A, opened: A, heap2: A, g2: A, gi2: A, lumps2: A,
    opened2: A, t: float,
) -> tuple[float, float, float, float]:  # fmt: skip
    """:func:`collect` on two ledgers: both ``(latency cost, other cost)`` pairs."""
    latency, other = collect(heap, g, gi, lumps, opened, t)
    latency2, other2 = collect(heap2, g2, gi2, lumps2, opened2, t)
    return latency, other, latency2, other2


@jit
def open_request(heap: A, gi: A, opened: A, key: int, start: float, rate: float) -> bool:
    """``CostLedger.open``; True when the latency heap is now full."""
    if opened[key, O_OPEN] == 0.0:
        gi[N_OPEN] += 1
    opened[key, O_START] = start
    opened[key, O_RATE] = rate
    opened[key, O_END] = math.inf
    opened[key, O_OPEN] = 1.0
    return push(heap, gi, LATENCY, start, rate, 1, -1)


@jit
def close_request(heap: A, gi: A, opened: A, key: int, end: float) -> int:
    """``CostLedger.close``: 1 when the heap is now full, -1 when ``key`` is not open."""
    if opened[key, O_OPEN] == 0.0:
        return -1
    opened[key, O_END] = end
    return 1 if push(heap, gi, LATENCY, end, -opened[key, O_RATE], -1, key) else 0


@jit
def spread(heap: A, gi: A, lumps: A, start: float, end: float, total: float) -> bool:
    """``CostLedger.spread``; True when the spreads' heap or the lumps are now full."""
    if end - start <= MIN_SPREAD_S:
        return charge(gi, lumps, start, total)
    rate = total / (end - start)
    full = push(heap, gi, SPREADS, start, rate, 1, -1)
    return push(heap, gi, SPREADS, end, -rate, -1, -1) or full


@jit
def spread_pair(
    heap: A, gi: A, lumps: A, heap2: A, gi2: A, lumps2: A, start: float, end: float,
    total: float, total2: float,
) -> bool:  # fmt: skip
    """:func:`spread` on two ledgers; True when either needs to grow."""
    full = spread(heap, gi, lumps, start, end, total)
    return spread(heap2, gi2, lumps2, start, end, total2) or full


@jit
def charge(gi: A, lumps: A, t: float, amount: float) -> bool:
    """``CostLedger.charge``; True when the lumps are now full."""
    n = gi[N_LUMPS]
    lumps[n, 0] = t
    lumps[n, 1] = amount
    gi[N_LUMPS] = n + 1
    return n + 1 >= lumps.shape[0]


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, on a scratch table."""
    from offload_rl.cell.ledger_table import LedgerTable

    table = LedgerTable()
    heap, g, gi, lumps, opened = table.heap, table.g, table.gi, table.lumps, table.opened
    open_request(heap, gi, opened, 0, 0.0, 1.0)
    close_request(heap, gi, opened, 0, 1.0)
    spread(heap, gi, lumps, 0.0, 1.0, 1.0)
    spread_pair(heap, gi, lumps, heap, gi, lumps, 0.0, 1.0, 1.0, 2.0)
    charge(gi, lumps, 0.5, 1.0)
    collect(heap, g, gi, lumps, opened, 2.0)
    collect_pair(heap, g, gi, lumps, opened, heap, g, gi, lumps, opened, 3.0)
