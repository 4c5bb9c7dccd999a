"""``EdgeServer.decision_view``: a compiled server's one-call view equals the Python server's.

A decision reads the pool's bytes, the queue's and the batch's sizes and tokens, the session's
kept entry and its recency rank, and the busy seconds. The Python server composes them from
:meth:`~EdgeServer.queue_view`, ``pool.peek``, ``pool.recency_rank`` and ``busy_s`` (the
reference); a compiled server reads them in one kernel call. Both servers run the same random
arrivals (sessions collide on purpose, so entries are kept, claimed, evicted and ranked) and
every session's view must be equal, to the last bit, at every horizon.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from tests.offload_rl.cell.test_edge_server_fast import COST, KV_TOKEN, arrivals, server_sizes

SESSIONS = range(-1, 6)  # the arrivals' sessions are 0..4; -1 and 5 never have an entry


def _views(server: EdgeServer) -> list[tuple[Any, ...]]:
    return [server.decision_view(sid) for sid in SESSIONS]


@settings(max_examples=80, deadline=None)
@given(arrivals, *server_sizes)
def test_compiled_view_equals_python(
    reqs: list[tuple[Any, ...]], pool_tokens: int, budget: int, seqs: int
) -> None:
    python = EdgeServer(COST, pool_tokens * KV_TOKEN, budget, seqs, compiled=False)
    compiled = EdgeServer(COST, pool_tokens * KV_TOKEN, budget, seqs, compiled=True)
    if not compiled.compiled:
        pytest.skip("numba is not installed: no compiled server")
    t = 0.0
    for rid, (gap, new, out, k, keep, sid, ctx, rtt, probe, _) in enumerate(reqs):
        t += gap
        for server in (python, compiled):
            server.schedule(EdgeRequest(rid, sid, k, 0.0, ctx, new, out, keep, rtt), t)
            server.advance(t + probe * 0.3)
        assert _views(python) == _views(compiled)
        t += probe * 0.3
    for server in (python, compiled):
        server.advance(t + 5.0)
    assert _views(python) == _views(compiled)


def test_a_kept_entry_is_seen_with_its_rank() -> None:
    """Two sessions finish with keep: the newer has rank 0, the older rank 1 (a guard that the
    property above sees entries at all)."""
    for compiled in (False, True):
        server = EdgeServer(COST, 4000 * KV_TOKEN, 2048, 8, compiled=compiled)
        server.schedule(EdgeRequest(0, 1, 0, 0.0, 0, 10, 2, True, 0.0), 0.0)
        server.advance(5.0)
        server.schedule(EdgeRequest(1, 2, 0, 0.0, 0, 10, 2, True, 0.0), 5.0)
        server.advance(10.0)
        used, _, _, _, _, _, split1, tokens1, bytes1, rank1, busy = server.decision_view(1)
        rank2 = server.decision_view(2)[9]
        assert (split1, rank1, rank2) == (0, 1, 0)
        assert tokens1 == 11 and bytes1 == 11 * KV_TOKEN and used == 2 * bytes1
        assert busy > 0 and server.decision_view(3)[6:10] == (-1, 0, 0, -1)
