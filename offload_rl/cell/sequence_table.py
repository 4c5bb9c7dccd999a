"""The compiled edge server's state: its sequences and its KV pool as flat arrays it owns.

With numba installed, :class:`~offload_rl.cell.edge_server.EdgeServer` keeps what it schedules
in one :class:`SequenceTable` (a struct of arrays, one row per request from its submission to
its finish, free rows reused) and runs whole :meth:`~offload_rl.cell.edge_server.EdgeServer.
advance` calls in machine code on it (:mod:`offload_rl.cell.compiled_scheduler`), in place:
nothing is copied in or out per call. The requests' objects are the interface: a finished
request's fields are written when it leaves, a first token's time as it lands on the server's
own advance; the fields of requests still in the server are written on
:meth:`SequenceTable.sync` (tests read them; the compiled simulator's advance,
:func:`offload_rl.cell.compiled_finish.advance_cell`, leaves even first tokens to it). A row
also holds the request's id, its device and its cell facts (arrival, SLO targets), which that
kernel reads when the request finishes.

The pool lives in the same arrays (running bytes per row, kept entries per session with an LRU
stamp), seen from outside through :class:`TablePool`, which answers as
:class:`~offload_rl.cell.kv_pool.KVPool` does. numpy only: the layout constants are read by the
compiled kernels, which import numba.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from offload_rl.cell.kv_pool import KeptEntry

if TYPE_CHECKING:
    from offload_rl.cell.edge_server import EdgeRequest

# integer columns of a request's row
(
    COMPUTED,
    GENERATED,
    OUTPUT,
    KV_BYTES,
    SPLIT,
    KNOWN,
    HELD,  # KV bytes the pool gives it
    SESSION,  # dense session index (a row of ``kept``)
    KEEP,
    PREEMPTIONS,
    CACHED,
    AT_ADMIT,
    STATUS,
    REQUEST,  # the request's id
    DEVICE,  # the cell's device it came from (0 outside a cell)
) = range(15)
N_INT_COLUMNS = 15
# float columns of a request's row
READY_AT, ROUND_TRIP, FIRST_TOKEN, ADMIT_S, FINISH_S, QUEUED_S, QUEUED_SINCE = range(7)
# the cell's facts of the request the compiled simulator reads when it finishes (0 outside a
# cell): when it arrived at its device, its SLO's TTFT and TPOT targets
CELL_ARRIVAL, SLO_TTFT, SLO_TPOT = range(7, 10)
N_FLOAT_COLUMNS = 10
# a request's cell facts: (device, arrival at the device, TTFT and TPOT targets)
CellFacts = tuple[int, float, float, float]
NO_CELL: CellFacts = (0, 0.0, 0.0, 0.0)
# columns of a session's kept entry (STAMP < 0: none; a larger stamp is more recently used)
K_SPLIT, K_TOKENS, K_BYTES, K_STAMP = range(4)
# the server's integer scalars
(
    N_RUNNING,
    W_HEAD,  # the waiting queue is a ring over ``wait``: its head and length
    N_WAITING,
    RUNNING_BYTES,
    KEPT_BYTES,
    N_KEPT,
    EVICTIONS,
    STAMP,
    PREEMPTIONS_TOTAL,
    ITERATIONS,
    CLOSED_FORM,
    LAST_SIZE,
    LAST_TOKENS,
    IN_FLIGHT,
    N_SCHED,
    N_IN_SYSTEM,
    N_OUT,
    CAPACITY,
    MAX_TOKENS,
    MAX_SEQS,
    N_SUBS,  # submissions scheduled (``subs``, ``sub_t``) and not yet taken by the kernel
    SUB_ERROR,  # 1: the kernel met a submission before the clock (the server raises)
) = range(22)
N_GLOBAL_INTS = 22
# the server's float scalars
CLOCK, BUSY, ITER_END, AREA, AREA_T = range(5)
N_GLOBAL_FLOATS = 5
# status codes (the strings of edge_server, in this order)
STATUS_NAMES = ("waiting", "running", "finished", "rejected")
ST_WAITING, ST_RUNNING, ST_FINISHED, ST_REJECTED = range(4)
# codes of the output log the kernel writes for the server: (code, row) and a time
OUT_DONE, OUT_EVICTED, OUT_PREEMPTED, OUT_REJECTED, OUT_FIRST = range(5)
FREE = -1  # ``STATUS`` of an unused row


# one row of ``ints`` (native int64s) and of ``floats`` (native doubles), as :meth:`stage`
# packs them into the arrays' bytes (both C-contiguous: built by np.zeros, copied whole)
_INT_ROW = struct.Struct(f"={N_INT_COLUMNS}q")
_FLOAT_ROW = struct.Struct(f"={N_FLOAT_COLUMNS}d")


class Deferred:
    """A row's object standing in for its :class:`EdgeRequest` until someone reads it: the
    compiled cell placement's request (``CellSimulator._run_edge_flat``), which makes its edge
    request at the first read of ``edge`` (training never reads it). The table's readers
    (:meth:`SequenceTable.request`) resolve it; the row keeps it until it is freed."""

    __slots__ = ()
    edge: EdgeRequest  # made at the first read


# the class and budgets of the last SequenceTable.fresh and a table made with them, untouched
_pristine: tuple[tuple[type, int, int, int], SequenceTable] | None = None


class SequenceTable:
    """Rows of requests in the server, kept entries of sessions, the server's scalars."""

    def __init__(self, capacity_bytes: int, max_num_batched_tokens: int, max_num_seqs: int):
        self.ints = np.zeros((0, N_INT_COLUMNS), dtype=np.int64)
        self.floats = np.zeros((0, N_FLOAT_COLUMNS))
        self.kept = np.zeros((0, 4), dtype=np.int64)
        self.gi = np.zeros(N_GLOBAL_INTS, dtype=np.int64)
        self.gf = np.zeros(N_GLOBAL_FLOATS)
        self.gi[CAPACITY] = capacity_bytes
        self.gi[MAX_TOKENS] = max_num_batched_tokens
        self.gi[MAX_SEQS] = max_num_seqs
        self.run = np.zeros(0, dtype=np.int64)  # rows running, admission order
        self.wait = np.zeros(0, dtype=np.int64)  # the waiting ring
        self.sched = np.zeros((2, 0), dtype=np.int64)  # the iteration in flight: rows, tokens
        self.batch = np.zeros(0, dtype=np.int64)  # the kernel's scratch
        self.out_i = np.zeros((0, 2), dtype=np.int64)
        self.out_t = np.zeros(0)
        self.subs = np.zeros(0, dtype=np.int64)  # rows scheduled for submission, in order
        self.sub_t = np.zeros(0)  # and their times
        # the kernel's arrays, in the order compiled_scheduler.advance takes them
        self.args: tuple[np.ndarray, ...] = ()
        # the object of each row: its request, or what stands for it (Deferred)
        self.requests: list[EdgeRequest | Deferred | None] = []
        self.row_of: dict[int, int] = {}  # request id -> row
        self._free: list[int] = []
        self.session_ids: list[int] = []  # dense index -> session id
        self._session_index: dict[int, int] = {}
        self._grow_rows(16)
        self._grow_sessions(16)

    @classmethod
    def fresh(
        cls, capacity_bytes: int, max_num_batched_tokens: int, max_num_seqs: int
    ) -> SequenceTable:
        """``SequenceTable(capacity_bytes, max_num_batched_tokens, max_num_seqs)``, field for
        field (its arrays copied from a pristine one kept for the last budgets: a simulator
        makes one table per episode with the same ones, at ~1/3 of the constructor's cost)."""
        global _pristine
        key = (cls, capacity_bytes, max_num_batched_tokens, max_num_seqs)
        if _pristine is None or _pristine[0] != key:
            _pristine = (key, cls(*key[1:]))  # never handed out: only copied
        p = _pristine[1]
        self = cls.__new__(cls)
        self.ints, self.floats, self.kept = p.ints.copy(), p.floats.copy(), p.kept.copy()
        self.gi, self.gf = p.gi.copy(), p.gf.copy()
        self.run, self.wait, self.sched = p.run.copy(), p.wait.copy(), p.sched.copy()
        self.batch, self.out_i, self.out_t = p.batch.copy(), p.out_i.copy(), p.out_t.copy()
        self.subs, self.sub_t = p.subs.copy(), p.sub_t.copy()
        self.args = (
            self.ints, self.floats, self.kept, self.gi, self.gf, self.run, self.wait, self.sched,
            self.batch, self.out_i, self.out_t, self.subs, self.sub_t,
        )  # fmt: skip
        self.requests = p.requests.copy()
        self.row_of = {}
        self._free = p._free.copy()
        self.session_ids = []
        self._session_index = {}
        return self

    # --- rows --------------------------------------------------------------------------------

    def add(self, r: EdgeRequest, t: float) -> int:
        """A submitted request's row (its fields as the server set them), queued at the back."""
        j = self.stage(r)
        gi = self.gi
        size = self.wait.shape[0]
        self.wait[(gi[W_HEAD] + gi[N_WAITING]) % size] = j
        gi[N_WAITING] += 1
        return j

    def schedule(self, r: EdgeRequest, t: float, cell: CellFacts = NO_CELL) -> None:
        """A request's row, submitted at ``t`` by the kernel's next call (after the ones
        scheduled before it): the row is written now, the queueing waits for the kernel."""
        j = self.stage(r, cell)
        gi = self.gi
        n = gi.item(N_SUBS)  # a Python int, without numpy's scalar object
        self.subs[n] = j
        self.sub_t[n] = t
        gi[N_SUBS] = n + 1

    def unschedule(self) -> None:
        """Drop the submissions the kernel has not taken (their rows freed): the server raised."""
        n = int(self.gi[N_SUBS])
        for j in self.subs[:n].tolist():
            r = self.request(j)
            assert r is not None
            self.requests[j] = None
            del self.row_of[r.request_id]
            self.ints[j, STATUS] = FREE
            self._free.append(j)
        self.gi[N_SUBS] = 0
        self.gi[SUB_ERROR] = 0

    def request(self, j: int) -> EdgeRequest | None:
        """Row ``j``'s request (a :class:`Deferred` one's made now, if not yet)."""
        r = self.requests[j]
        return r.edge if isinstance(r, Deferred) else r

    def take_row(self) -> int:
        """A free row, taken (the table grows when none is left), its object not set yet."""
        if not self._free:
            self._grow_rows(2 * len(self.requests))
        return self._free.pop()

    def stage(self, r: EdgeRequest, cell: CellFacts = NO_CELL) -> int:
        """A free row holding ``r``'s fields (as the server set them) and its ``cell`` facts,
        in no queue yet."""
        j = self.take_row()
        self.requests[j] = r
        self.row_of[r.request_id] = j
        session = self._session_index.get(r.session_id)  # session_index's seen-before case
        if session is None:
            session = self.session_index(r.session_id)
        # the rows' bytes packed in place (an ndarray is a writable buffer, which typeshed's
        # Buffer does not say): the same 64-bit values at ~half numpy's conversion cost
        try:
            _INT_ROW.pack_into(
                self.ints,  # type: ignore[arg-type]
                j * _INT_ROW.size, r.computed, r.generated, r.output_tokens, r.kv_bytes_per_token,
                r.split, r.known, 0, session, r.keep, r.preemptions, r.cached_tokens,
                r.batch_at_admit, ST_WAITING, r.request_id, cell[0],
            )  # fmt: skip
            _FLOAT_ROW.pack_into(
                self.floats,  # type: ignore[arg-type]
                j * _FLOAT_ROW.size, r.ready_at, r.round_trip_s, r.first_token_s,
                r.admit_s, r.finish_s, r.queued_s, r.queued_since, cell[1], cell[2], cell[3],
            )  # fmt: skip
        except struct.error:  # a value struct refuses (a float count, an int past 64 bits)
            self._write_rows(j, r, cell)
        return j

    def _write_rows(self, j: int, r: EdgeRequest, cell: CellFacts = NO_CELL) -> None:
        """:meth:`stage`'s row writes through numpy, which converts (or raises) as it always
        did where ``struct`` refuses a value; the same columns in the same order."""
        self.ints[j] = (
            r.computed, r.generated, r.output_tokens, r.kv_bytes_per_token, r.split, r.known,
            0, self.session_index(r.session_id), r.keep, r.preemptions, r.cached_tokens,
            r.batch_at_admit, ST_WAITING, r.request_id, cell[0],
        )  # fmt: skip
        self.floats[j] = (
            r.ready_at, r.round_trip_s, r.first_token_s, r.admit_s, r.finish_s, r.queued_s,
            r.queued_since, *cell[1:],
        )  # fmt: skip

    def release(self, j: int) -> EdgeRequest:
        """Write a finished (or rejected) request's row into its object and free the row."""
        r = self.request(j)
        assert r is not None
        self.sync_row(j, r)
        self.requests[j] = None
        del self.row_of[r.request_id]
        self.ints[j, STATUS] = FREE
        self._free.append(j)
        return r

    def sync_row(self, j: int, r: EdgeRequest) -> None:
        """Write row ``j``'s state into its request's fields (with ``EdgeServer._arrive``'s:
        the compiled placement's objects get them here, not at their arrival)."""
        (
            r.computed, r.generated, _, r.kv_bytes_per_token, _, r.known, _, _, _,
            r.preemptions, r.cached_tokens, r.batch_at_admit, status, _, _,
        ) = self.ints[j].tolist()  # fmt: skip
        (
            r.ready_at, r.round_trip_s, r.first_token_s, r.admit_s, r.finish_s, r.queued_s,
            r.queued_since, _, _, _,
        ) = self.floats[j].tolist()  # fmt: skip
        r.status = STATUS_NAMES[status]

    def sync(self) -> None:
        """Write every request still in the server into its object; not the submissions
        still scheduled: the compiled placement (``compiled_dispatch.place_edge``) writes a
        row before its request reaches the edge, whose object keeps what it had until then,
        as the reference's does (its arrival's fields are written here once it arrived)."""
        n = self.gi.item(N_SUBS)
        scheduled = set(self.subs[:n].tolist()) if n else ()
        for j, r in enumerate(self.requests):
            if r is not None and j not in scheduled:
                self.sync_row(j, r.edge if isinstance(r, Deferred) else r)

    def running(self) -> list[EdgeRequest]:
        """The running requests' objects, admission order."""
        rows = self.run[: self.gi[N_RUNNING]].tolist()
        return [self.request(j) for j in rows]  # type: ignore[misc]

    def waiting(self) -> deque[EdgeRequest]:
        """The waiting requests' objects, queue order."""
        head, n = int(self.gi[W_HEAD]), int(self.gi[N_WAITING])
        ring = self.wait.tolist()
        rows = ring[head : head + n] + ring[: max(head + n - len(ring), 0)]
        return deque([self.request(j) for j in rows])  # type: ignore[misc]

    def _grow_rows(self, n: int) -> None:
        """``n`` more free rows (the waiting ring unrolled to start at 0)."""
        old = len(self.requests)
        size = old + n
        head, waiting = int(self.gi[W_HEAD]), int(self.gi[N_WAITING])
        ring = [int(self.wait[(head + i) % old]) for i in range(waiting)] if old else []
        ints = np.zeros((size, N_INT_COLUMNS), dtype=np.int64)
        ints[:old] = self.ints
        ints[old:, STATUS] = FREE
        self.ints = ints
        floats = np.zeros((size, N_FLOAT_COLUMNS))
        floats[:old] = self.floats
        self.floats = floats
        run = np.zeros(size, dtype=np.int64)
        run[:old] = self.run
        self.run = run
        self.wait = np.zeros(size, dtype=np.int64)
        self.wait[:waiting] = ring
        self.gi[W_HEAD] = 0
        sched = np.zeros((2, size), dtype=np.int64)
        sched[:, :old] = self.sched
        self.sched = sched
        self.batch = np.zeros(size, dtype=np.int64)
        subs = np.zeros(size, dtype=np.int64)  # scheduled submissions: fewer than rows in use
        subs[:old] = self.subs
        self.subs = subs
        sub_t = np.zeros(size)
        sub_t[:old] = self.sub_t
        self.sub_t = sub_t
        self.requests += [None] * n
        self._free += range(size - 1, old - 1, -1)  # lowest row first
        self._size_output()

    # --- sessions and the pool ----------------------------------------------------------------

    def session_index(self, session_id: int) -> int:
        """The dense index of a session (a row of ``kept``), made on first sight."""
        idx = self._session_index.get(session_id)
        if idx is None:
            idx = len(self.session_ids)
            if idx == self.kept.shape[0]:
                self._grow_sessions(2 * idx)
            self._session_index[session_id] = idx
            self.session_ids.append(session_id)
        return idx

    def kept_row(self, session_id: int) -> int:
        """The row of ``kept`` holding the session's entry; -1 if none is kept."""
        idx = self._session_index.get(session_id)
        if idx is None or self.kept[idx, K_STAMP] < 0:
            return -1
        return idx

    def take_kept(self, session_id: int, split: int) -> int:
        """The tokens the session keeps at ``split``; -1 where it keeps none there, and an
        entry at another split is dropped (``pool.peek`` then ``pool.drop`` when the split
        differs, as a decision does, without building the :class:`KeptEntry`)."""
        idx = self._session_index.get(session_id)
        if idx is None:
            return -1
        kept = self.kept
        k, tokens, nbytes, stamp = kept[idx].tolist()
        if stamp < 0:
            return -1
        if k == split:
            return tokens
        gi = self.gi
        gi[KEPT_BYTES] -= nbytes  # TablePool.drop
        gi[N_KEPT] -= 1
        kept[idx, K_STAMP] = -1
        return -1

    def _grow_sessions(self, n: int) -> None:
        old = self.kept.shape[0]
        kept = np.zeros((old + n, 4), dtype=np.int64)
        kept[:old] = self.kept
        kept[old:, K_STAMP] = -1
        self.kept = kept
        self._size_output()

    def _size_output(self) -> None:
        """Room in the output log for one kernel call's worst iteration, several times over
        (the kernel pauses before an iteration that might not fit)."""
        size = 4 * (len(self.requests) + self.kept.shape[0]) + 64
        if self.out_t.shape[0] < size:
            self.out_i = np.zeros((size, 2), dtype=np.int64)
            self.out_t = np.zeros(size)
        self.args = (
            self.ints, self.floats, self.kept, self.gi, self.gf, self.run, self.wait, self.sched,
            self.batch, self.out_i, self.out_t, self.subs, self.sub_t,
        )  # fmt: skip


class TablePool:
    """The KV pool of a :class:`SequenceTable`, read as :class:`KVPool` is (and ``drop``)."""

    def __init__(self, table: SequenceTable) -> None:
        self._table = table
        self.capacity_bytes = int(table.gi[CAPACITY])

    @property
    def running_bytes(self) -> int:
        return int(self._table.gi[RUNNING_BYTES])

    @property
    def kept_bytes(self) -> int:
        return int(self._table.gi[KEPT_BYTES])

    @property
    def used_bytes(self) -> int:
        gi = self._table.gi
        return int(gi[RUNNING_BYTES] + gi[KEPT_BYTES])

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.used_bytes

    @property
    def n_kept(self) -> int:
        return int(self._table.gi[N_KEPT])

    @property
    def evictions(self) -> int:
        return int(self._table.gi[EVICTIONS])

    def occupancy(self) -> float:
        return self.used_bytes / self.capacity_bytes

    def held_by(self, request_id: int) -> int:
        j = self._table.row_of.get(request_id)
        return 0 if j is None else int(self._table.ints[j, HELD])

    def peek(self, session_id: int) -> KeptEntry | None:
        idx = self._table.kept_row(session_id)
        if idx < 0:
            return None
        split, tokens, nbytes, _ = self._table.kept[idx].tolist()
        return KeptEntry(split=split, tokens=tokens, nbytes=nbytes)

    def recency_rank(self, session_id: int) -> int:
        idx = self._table.kept_row(session_id)
        if idx < 0:
            return -1
        stamps = self._table.kept[:, K_STAMP]
        return int(np.count_nonzero(stamps > stamps[idx]))

    def drop(self, session_id: int) -> None:
        """Forget a session's kept entry, if any (not counted as an eviction)."""
        idx = self._table.kept_row(session_id)
        if idx >= 0:
            gi, kept = self._table.gi, self._table.kept
            gi[KEPT_BYTES] -= kept[idx, K_BYTES]
            gi[N_KEPT] -= 1
            kept[idx, K_STAMP] = -1
