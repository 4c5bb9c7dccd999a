"""The edge's KV memory: one pool of bytes shared by running requests and kept sessions.

This is the cell's block manager, kept apart from the scheduler as vLLM keeps its block manager
apart from ``Scheduler``: the pool knows *who holds memory* and nothing about *who runs next*.
Two kinds of holders share one capacity:

* a **running** request holds the KV of the tokens it has computed so far (grown by the
  scheduler before each iteration, freed when it finishes or is preempted);
* a **kept** session entry holds the KV a finished request left behind for the session's next
  turn (the ``keep`` action). Kept entries are evictable, least recently used first: they are
  what vLLM's prefix cache holds in blocks whose reference count fell to zero.

The rule a newcomer gets wrong: a kept entry is usable only by a turn with the same split (its
tensors belong to layers ``[k, L)``), and *claiming* it moves its bytes to the running request
instead of copying them, so a hit costs no new memory.

Left out on purpose: paged blocks (memory is counted per token; block rounding wastes under one
16-token block per sequence, < 1% at the 2k-token contexts the cell serves), swapping to CPU
memory (the cell preempts by recompute, vLLM's default), sharing one prefix between sessions.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class KeptEntry:
    """KV one finished turn left at the edge for its session's next turn."""

    split: int
    tokens: int
    nbytes: int


class KVPool:
    """Bytes held by running requests and kept sessions; never more than ``capacity_bytes``."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be > 0, got {capacity_bytes}")
        self.capacity_bytes = int(capacity_bytes)
        self.running_bytes = 0
        self.kept_bytes = 0
        self._running: dict[int, int] = {}  # request id -> bytes held
        self._kept: OrderedDict[int, KeptEntry] = OrderedDict()  # LRU first
        self.evictions = 0

    # --- views ------------------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return self.running_bytes + self.kept_bytes

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.running_bytes - self.kept_bytes

    @property
    def n_kept(self) -> int:
        return len(self._kept)

    def occupancy(self) -> float:
        """Used share of the capacity, in [0, 1]."""
        return self.used_bytes / self.capacity_bytes

    def held_by(self, request_id: int) -> int:
        """Bytes a running request holds (0 if it holds none)."""
        return self._running.get(request_id, 0)

    def peek(self, session_id: int) -> KeptEntry | None:
        """A session's kept entry, without touching its recency."""
        return self._kept.get(session_id)

    def recency_rank(self, session_id: int) -> int:
        """0 for the most recently used kept entry, 1 for the next...; -1 if none is kept.

        O(kept entries): meant for one observation per decision, not for the hot path.
        """
        if session_id not in self._kept:
            return -1
        for rank, sid in enumerate(reversed(self._kept)):
            if sid == session_id:
                return rank
        return -1  # pragma: no cover - unreachable, the membership test above holds

    # --- running requests -------------------------------------------------------------------

    def grow(self, request_id: int, nbytes: int) -> None:
        """Give a running request ``nbytes`` more; the caller must have made room first."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if nbytes > self.capacity_bytes - self.running_bytes - self.kept_bytes:  # free_bytes
            raise MemoryError(
                f"request {request_id} asks {nbytes} B with {self.free_bytes} B free: "
                "evict or preempt before growing"
            )
        self._running[request_id] = self._running.get(request_id, 0) + nbytes
        self.running_bytes += nbytes

    def release(self, request_id: int) -> int:
        """Free everything a request holds (finish without keep, or preemption); returns bytes."""
        nbytes = self._running.pop(request_id, 0)
        self.running_bytes -= nbytes
        return nbytes

    # --- kept sessions ----------------------------------------------------------------------

    def keep(self, request_id: int, session_id: int, split: int, tokens: int) -> None:
        """Turn a finished request's bytes into its session's kept entry (most recent).

        No new memory: the bytes change owner. A previous entry of the session is dropped.
        """
        self.drop(session_id)
        nbytes = self._running.pop(request_id, 0)
        self.running_bytes -= nbytes
        self._kept[session_id] = KeptEntry(split=split, tokens=tokens, nbytes=nbytes)
        self.kept_bytes += nbytes

    def claim(self, session_id: int, split: int, request_id: int, max_tokens: int) -> int:
        """Hand a kept entry made with ``split`` to a running request; returns tokens reused.

        A miss (no entry, another split, or an entry longer than the request's context) returns
        0 and leaves the entry where it is, as :class:`offload_rl.kv_cache.EdgeKVCache` does.
        """
        entry = self._kept.get(session_id)
        if entry is None or entry.split != split or entry.tokens > max_tokens:
            return 0
        del self._kept[session_id]
        self.kept_bytes -= entry.nbytes
        self._running[request_id] = self._running.get(request_id, 0) + entry.nbytes
        self.running_bytes += entry.nbytes
        return entry.tokens

    def evict_lru(self) -> int | None:
        """Evict the least recently used kept entry; its session id, or None if none is kept."""
        if not self._kept:
            return None
        session_id, entry = self._kept.popitem(last=False)
        self.kept_bytes -= entry.nbytes
        self.evictions += 1
        return session_id

    def drop(self, session_id: int) -> None:
        """Forget a session's kept entry, if any (not counted as an eviction)."""
        entry = self._kept.pop(session_id, None)
        if entry is not None:
            self.kept_bytes -= entry.nbytes
