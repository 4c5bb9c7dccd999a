"""The edge's session KV cache: least-recently-used eviction by bytes.

An entry holds the KV of the layers the edge ran for one session, made with one split. A later
turn of that session hits only when the entry is still there *and* the turn uses the same split
(the cached tensors belong to layers ``[k, L)``; another split needs other layers).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class CacheEntry:
    """KV of one session at the edge."""

    split: int
    tokens: int
    nbytes: int


class EdgeKVCache:
    """LRU cache of session KV entries bounded by ``capacity_bytes``."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.capacity_bytes = int(capacity_bytes)
        self.used_bytes = 0
        self._entries: OrderedDict[int, CacheEntry] = OrderedDict()
        self.evictions = 0
        self.last_evicted: list[int] = []  # sessions the latest store() evicted

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._entries

    def by_recency(self) -> list[tuple[int, CacheEntry]]:
        """The kept entries, most recently used first (what a runtime reports of itself)."""
        return list(reversed(self._entries.items()))

    def peek(self, session_id: int) -> CacheEntry | None:
        """The entry of a session without touching its recency."""
        return self._entries.get(session_id)

    def lookup(self, session_id: int, split: int) -> int:
        """Cached tokens usable by ``split`` (0 on a miss); a hit makes the entry most recent."""
        entry = self._entries.get(session_id)
        if entry is None or entry.split != split:
            return 0
        self._entries.move_to_end(session_id)
        return entry.tokens

    def store(self, session_id: int, split: int, tokens: int, nbytes: int) -> bool:
        """Keep a session's KV, evicting least-recently-used entries until it fits.

        Returns False (and stores nothing) if the entry alone exceeds the capacity. The evicted
        sessions are in :attr:`last_evicted` until the next call.
        """
        self.drop(session_id)
        self.last_evicted = []
        if nbytes > self.capacity_bytes:
            return False
        while self.used_bytes + nbytes > self.capacity_bytes:
            sid, evicted = self._entries.popitem(last=False)
            self.used_bytes -= evicted.nbytes
            self.evictions += 1
            self.last_evicted.append(sid)
        self._entries[session_id] = CacheEntry(split=split, tokens=tokens, nbytes=nbytes)
        self.used_bytes += nbytes
        return True

    def drop(self, session_id: int) -> None:
        """Forget a session's entry, if any."""
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            self.used_bytes -= entry.nbytes

    def occupancy(self) -> float:
        """Used share of the capacity, in [0, 1]."""
        return self.used_bytes / self.capacity_bytes if self.capacity_bytes else 0.0

    def clear(self) -> None:
        """Empty the cache (start of an episode)."""
        self._entries.clear()
        self.used_bytes = 0
        self.evictions = 0
