"""The compiled scan of who is ready for a decode equals ``EdgeServer._ready_decodes``.

``compiled_scheduler._ready_decodes`` runs once per decode iteration (the compiled server's
hottest loop) and is written with selects instead of the reference's if/elif chain, and finds
the reference's ``earliest`` and ``tie`` by a second pass only when nobody is ready. Both are
fed the same running requests' ``ready_at`` (drawn from a few instants, so that requests tie
on purpose: nobody ready and two round trips ending at the same instant is the case where the
scan must hand back every tied request; with inf, NaN and both zeros, where a min or a
compare could take the other one of equals) and must answer the same, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from offload_rl.cell.sequence_table import N_FLOAT_COLUMNS, READY_AT
from tests.offload_rl.cell.test_edge_server_fast import COST, KV_TOKEN, _snapshot

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

READY = st.sampled_from([-0.0, 0.0, 0.25, 0.5, 0.75, 1.0, math.inf, math.nan])


def _reference(ready_at: list[float], clock: float) -> tuple[float, list[int], float]:
    server = EdgeServer(COST, 10**9, compiled=False)
    server._running = [
        EdgeRequest(i, i, 1, 0.0, 0, 1, 2, ready_at=x) for i, x in enumerate(ready_at)
    ]
    s, batch, first = server._ready_decodes(clock)
    return s, [r.request_id for r in batch], first


def _compiled(ready_at: list[float], clock: float) -> tuple[float, list[int], float]:
    n = len(ready_at)
    floats = np.zeros((n + 3, N_FLOAT_COLUMNS))
    run = np.arange(n, dtype=np.int64) + 3  # rows 3.. (not the running order's indices)
    floats[run, READY_AT] = ready_at
    batch = np.full(n + 3, -1, dtype=np.int64)
    nb, s, first = cd.scheduler()._ready_decodes(floats, run, n, batch, clock)
    return s, (batch[:nb] - 3).tolist(), first


@settings(max_examples=300, deadline=None)
@given(st.lists(READY, min_size=1, max_size=12), st.sampled_from([-0.25, 0.0, 0.25, 0.5, 1.0]))
@example([0.5, 0.5], 0.0)  # nobody ready, two round trips end together: both run
@example([0.75, 0.5, 0.5, 1.0], 0.25)
@example([math.nan, math.inf, 0.5], 0.25)
@example([0.0, -0.0], -0.25)  # equal zeros: the first one's sign is ``first``
@example([math.nan, math.nan], 0.0)  # no round trip ends: the first row, at inf
def test_the_compiled_scan_equals_the_reference(ready_at, clock):
    # repr: NaN equals itself, and -0.0 differs from 0.0
    assert repr(_compiled(ready_at, clock)) == repr(_reference(ready_at, clock))


def test_split_requests_whose_round_trips_end_together_decode_together():
    """The tie in a whole server: two split requests in lockstep, nothing else to run."""
    servers = [EdgeServer(COST, 300 * KV_TOKEN, compiled=c) for c in (False, True)]
    for server in servers:
        for rid in (0, 1):
            server.submit(EdgeRequest(rid, rid, 4, 0.0, 0, 20, 10, round_trip_s=0.05), 0.0)
        server.advance(2.0)
    assert servers[0].iterations == 10  # one prefill, then nine decodes of both
    assert _snapshot(servers[0], 2.0) == _snapshot(servers[1], 2.0)
