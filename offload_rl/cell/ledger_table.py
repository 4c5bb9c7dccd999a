"""The cost ledger's state as flat numpy arrays, for the compiled ledger (numba).

:class:`~offload_rl.reward.CostLedger` keeps two heaps of tuples, a dict of open requests and a
list of lumps; :class:`CompiledCostLedger` keeps the same in :class:`LedgerTable`'s arrays and
runs each method as one call into :mod:`offload_rl.cell.compiled_ledger` (the simulator calls
the ledger ~15 times per decision: the Python heaps cost more than the arithmetic). Plain
arrays deep-copy, so a forked simulator's ledger is its own. Keys must be integers >= 0 (the
simulator's request indices).
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

from offload_rl import reward
from offload_rl.cell import compiled_decode as cd

_K: ModuleType  # compiled_ledger, set by the first CompiledCostLedger

# the heap's rows: [timeline, slot, column]; timeline 0 = requests in the system, 1 = spreads
LATENCY, SPREADS = 0, 1
H_TIME, H_SEQ, H_DELTA, H_STEP, H_KEY = range(5)  # H_KEY: -1 = no key
# g (float64): the collection time, each timeline's running rate
T, RATE = 0, 1  # RATE + timeline
# gi (int64): each timeline's heap size, active count and sequence number; lumps; open keys
N_HEAP, ACTIVE, SEQ, N_LUMPS, N_OPEN = 0, 2, 4, 6, 7  # the first three: + timeline
# opened: per key [start, rate, end, open (1.0) or not (0.0)]
O_START, O_RATE, O_END, O_OPEN = range(4)
_KEEP_SEQ = np.array([0, 0, 0, 0, 1, 1, 0, 0], dtype=np.int64)


class LedgerTable:
    """The arrays of one ledger, grown when a kernel reports one full."""

    def __init__(self, heap_rows: int = 64, lumps: int = 32, keys: int = 64) -> None:
        self.heap = np.zeros((2, heap_rows, 5))
        self.g = np.zeros(3)
        self.gi = np.zeros(8, dtype=np.int64)
        self.lumps = np.zeros((lumps, 2))
        self.opened = np.zeros((keys, 4))

    def grow_heap(self) -> None:
        self.heap = np.concatenate([self.heap, np.zeros_like(self.heap)], axis=1)

    def grow_lumps(self) -> None:
        self.lumps = np.concatenate([self.lumps, np.zeros_like(self.lumps)])

    def make_room(self, key: int, heap_rows: int, lumps: int) -> None:
        """Grow until ``key`` has a row, each heap ``heap_rows`` more rows and the lumps
        ``lumps`` more (a compiled caller that pushes several at once checks first)."""
        if key >= self.opened.shape[0]:
            self.grow_keys(key)
        while max(self.gi[N_HEAP], self.gi[N_HEAP + 1]) + heap_rows > self.heap.shape[1]:
            self.grow_heap()
        while self.gi[N_LUMPS] + lumps > self.lumps.shape[0]:
            self.grow_lumps()

    def grow_keys(self, key: int) -> None:
        rows = max(key + 1, 2 * self.opened.shape[0])
        more = np.zeros((rows - self.opened.shape[0], 4))
        self.opened = np.concatenate([self.opened, more])


class CompiledCostLedger(reward.CostLedger):
    """:class:`~offload_rl.reward.CostLedger` on a :class:`LedgerTable`, each method compiled.

    Bit for bit the reference (``tests/offload_rl/cell/test_compiled_ledger.py`` drives both
    with the same operations and compares with ``==``).
    """

    def __init__(self) -> None:
        self._table = LedgerTable()
        self.latency_cost = self.other_cost = 0.0  # collected so far, by kind
        global _K
        _K = cd.ledger()  # compiled once per process (the ledger holds no module: it copies)

    def reset(self, t: float = 0.0) -> None:
        table = self._table
        table.gi *= _KEEP_SEQ  # the sequence numbers go on, as the reference's do
        table.g[:] = 0.0
        table.g[T] = t
        table.opened[:, O_OPEN] = 0.0
        self.latency_cost = self.other_cost = 0.0

    def open(self, key: int, start: float, rate: float) -> None:
        table = self._table
        if key >= table.opened.shape[0]:
            table.grow_keys(key)
        if _K.open_request(table.heap, table.gi, table.opened, key, start, rate):
            table.grow_heap()

    def close(self, key: int, end: float) -> None:
        table = self._table
        if key >= table.opened.shape[0]:
            raise KeyError(key)
        full = _K.close_request(table.heap, table.gi, table.opened, key, end)
        if full < 0:
            raise KeyError(key)
        if full:
            table.grow_heap()

    def spread(self, start: float, end: float, total: float) -> None:
        table = self._table
        if _K.spread(table.heap, table.gi, table.lumps, start, end, total):
            self._grow_both()

    def spread_pair(self, other: CompiledCostLedger, start: float, end: float, total: float,
                    other_total: float) -> None:  # fmt: skip
        """``self.spread(start, end, total)`` then ``other.spread(start, end, other_total)``
        in one kernel call (the simulator's energy: weighted cost and raw joules)."""
        if other is self:
            self.spread(start, end, total)
            self.spread(start, end, other_total)
            return
        a, b = self._table, other._table
        full = _K.spread_pair(
            a.heap, a.gi, a.lumps, b.heap, b.gi, b.lumps, start, end, total, other_total
        )
        if full:
            self._grow_both()
            other._grow_both()

    def charge(self, t: float, amount: float) -> None:
        table = self._table
        if _K.charge(table.gi, table.lumps, t, amount):
            table.grow_lumps()

    def collect(self, t: float) -> tuple[float, float]:
        table = self._table
        latency, other = _K.collect(table.heap, table.g, table.gi, table.lumps, table.opened, t)
        self.latency_cost += latency
        self.other_cost += other
        return latency, other

    def collect_pair(
        self, other: CompiledCostLedger, t: float
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """``(self.collect(t), other.collect(t))`` in one kernel call (the simulator's cost
        and raw joules, collected at every decision)."""
        if other is self:
            return self.collect(t), self.collect(t)
        a, b = self._table, other._table
        latency, rest, latency2, rest2 = _K.collect_pair(
            a.heap, a.g, a.gi, a.lumps, a.opened, b.heap, b.g, b.gi, b.lumps, b.opened, t
        )
        self.latency_cost += latency
        self.other_cost += rest
        other.latency_cost += latency2
        other.other_cost += rest2
        return (latency, rest), (latency2, rest2)

    def _grow_both(self) -> None:
        """A spread filled the heap or the lumps (which one: grow what is full)."""
        table = self._table
        if table.gi[N_HEAP + SPREADS] + 2 > table.heap.shape[1]:
            table.grow_heap()
        if table.gi[N_LUMPS] >= table.lumps.shape[0]:
            table.grow_lumps()

    @property
    def n_open(self) -> int:
        return int(self._table.gi[N_OPEN])

    def open_until(self) -> float:
        opened = self._table.opened
        ends = opened[opened[:, O_OPEN] == 1.0, O_END]
        return float(ends.max()) if ends.size else -math.inf


def cost_ledger(compiled: bool | None = None) -> reward.CostLedger:
    """A :class:`CompiledCostLedger` when numba is there (``compiled`` None or True, see
    :mod:`~offload_rl.cell.compiled_decode`), else the reference
    :class:`~offload_rl.reward.CostLedger`; a kernel that fails to compile falls back for good."""
    if cd.AVAILABLE if compiled is None else compiled and cd.AVAILABLE:
        try:
            return CompiledCostLedger()
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
    return reward.CostLedger()
