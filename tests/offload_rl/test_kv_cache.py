"""Edge KV cache: hits need the same split; eviction is least-recently-used, by bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offload_rl.kv_cache import EdgeKVCache


def test_hit_only_with_the_same_split():
    cache = EdgeKVCache(1000)
    cache.store(1, split=3, tokens=50, nbytes=100)
    assert cache.lookup(1, 3) == 50
    assert cache.lookup(1, 4) == 0
    assert cache.lookup(2, 3) == 0


def test_eviction_by_bytes_is_lru():
    cache = EdgeKVCache(1000)
    cache.store(1, 0, 10, 400)
    cache.store(2, 0, 10, 400)
    cache.lookup(1, 0)  # session 1 is now the most recent
    cache.store(3, 0, 10, 400)  # needs 400: evicts session 2 only
    assert 2 not in cache and 1 in cache and 3 in cache
    assert cache.used_bytes == 800
    cache.store(4, 0, 10, 900)  # evicts both others
    assert len(cache) == 1 and cache.used_bytes == 900 and cache.evictions == 3


def test_an_entry_larger_than_the_cache_is_not_stored():
    cache = EdgeKVCache(100)
    cache.store(1, 0, 10, 50)
    assert cache.store(2, 0, 10, 101) is False
    assert 1 in cache and 2 not in cache


def test_restoring_a_session_replaces_its_entry():
    cache = EdgeKVCache(1000)
    cache.store(1, 2, 10, 300)
    cache.store(1, 5, 20, 500)
    assert cache.used_bytes == 500 and cache.lookup(1, 5) == 20 and cache.lookup(1, 2) == 0
    cache.drop(1)
    assert cache.used_bytes == 0 and cache.occupancy() == 0


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 400)), max_size=200))
def test_used_bytes_never_exceed_capacity(ops):
    cache = EdgeKVCache(1000)
    for sid, nbytes in ops:
        cache.store(sid, 0, 1, nbytes)
        assert 0 <= cache.used_bytes <= 1000
        assert cache.used_bytes == sum(cache.peek(s).nbytes for s in range(21) if s in cache)
