"""KV pool: bytes change owner on keep and claim, eviction is LRU, growing past free is refused."""

from __future__ import annotations

import pytest

from offload_rl.cell.kv_pool import KVPool


def test_growing_past_the_free_bytes_is_refused():
    pool = KVPool(1000)
    pool.grow(1, 600)
    with pytest.raises(MemoryError, match="400 B free"):
        pool.grow(2, 401)
    assert pool.used_bytes == 600 and pool.free_bytes == 400


def test_keep_and_claim_move_bytes_without_new_memory():
    pool = KVPool(1000)
    pool.grow(1, 300)
    pool.keep(1, session_id=7, split=2, tokens=30)
    assert pool.running_bytes == 0 and pool.kept_bytes == 300 and pool.held_by(1) == 0
    assert pool.claim(7, split=3, request_id=2, max_tokens=100) == 0  # another split: miss
    assert pool.claim(7, split=2, request_id=2, max_tokens=29) == 0  # longer than the context
    assert pool.claim(7, split=2, request_id=2, max_tokens=100) == 30
    assert pool.kept_bytes == 0 and pool.held_by(2) == 300 and pool.used_bytes == 300


def test_eviction_is_least_recently_kept_first_and_ranks_recency():
    pool = KVPool(1000)
    for rid, sid in [(1, 10), (2, 20), (3, 30)]:
        pool.grow(rid, 100)
        pool.keep(rid, sid, split=0, tokens=10)
    assert [pool.recency_rank(s) for s in (30, 20, 10, 99)] == [0, 1, 2, -1]
    assert pool.evict_lru() == 10 and pool.evict_lru() == 20
    assert pool.evictions == 2 and pool.kept_bytes == 100
    pool.drop(30)
    assert pool.evict_lru() is None and pool.used_bytes == 0


def test_keeping_twice_replaces_the_session_entry():
    pool = KVPool(1000)
    pool.grow(1, 100)
    pool.keep(1, 5, split=0, tokens=10)
    pool.grow(2, 250)
    pool.keep(2, 5, split=0, tokens=25)
    assert pool.n_kept == 1 and pool.kept_bytes == 250 and pool.peek(5).tokens == 25
