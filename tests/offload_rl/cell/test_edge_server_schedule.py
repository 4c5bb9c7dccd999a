"""Scheduled submissions: ``schedule(req, t)`` then one ``advance`` equals the calls it replaces.

The simulator hands the edge a decision's arrivals with :meth:`EdgeServer.schedule` and runs it
with one :meth:`EdgeServer.advance` (one kernel call on a compiled server) instead of
``advance(when); submit(req, when)`` per arrival. The reference here is a Python server driven
the old way; a Python server and a compiled one driven by ``schedule`` must match it exactly
(``==``, floats to the last bit) after every call, through the same random arrivals as
``test_edge_server_fast.py`` (round trips changed while a request is still scheduled, horizons
that leave later submissions scheduled, iterations in flight at a submission).
"""

from __future__ import annotations

import operator
from typing import Any

import pytest
from hypothesis import example, given, settings

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from tests.offload_rl.cell.test_edge_server_fast import (
    COST,
    KV_TOKEN,
    SPLIT_PREEMPTED_IN_ROUND_TRIP,
    _accounting,
    _snapshot,
    arrivals,
    server_sizes,
)


class Reference:
    """A Python server fed as the simulator fed it before ``schedule``: pending arrivals in a
    list, each one ``advance(when); submit(req, when)`` once a horizon passes it."""

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.pending: list[tuple[float, EdgeRequest]] = []

    def schedule(self, req: EdgeRequest, t: float) -> None:
        self.pending.append((t, req))

    def advance(self, t: float) -> None:
        while self.pending and self.pending[0][0] <= t:
            when, req = self.pending.pop(0)
            self.server.advance(when)
            self.server.submit(req, when)
        self.server.advance(t)


def _servers(pool_tokens: int, budget: int, seqs: int) -> list[EdgeServer]:
    """The reference's server, a Python one and (with numba) a compiled one."""
    servers = [
        EdgeServer(COST, pool_tokens * KV_TOKEN, budget, seqs, compiled=False) for _ in range(2)
    ]
    compiled = EdgeServer(COST, pool_tokens * KV_TOKEN, budget, seqs, compiled=True)
    return [*servers, compiled] if compiled.compiled else servers


def drive_scheduled(reqs: list[tuple[Any, ...]], pool_tokens: int, budget: int, seqs: int) -> int:
    """Feed ``reqs`` (the ``arrivals`` rows) by ``schedule``, advancing at some of them (before,
    at or after the last one scheduled); every server's snapshot must equal the reference's.
    Returns how many requests were still scheduled at an advance (a guard)."""
    servers = _servers(pool_tokens, budget, seqs)
    ref = Reference(servers[0])
    drivers: list[Reference | EdgeServer] = [ref, *servers[1:]]
    requests: list[list[EdgeRequest]] = [[] for _ in servers]
    t = horizon = 0.0
    left_scheduled = 0
    for rid, (gap, new, out, k, keep, sid, ctx, rtt, probe, change) in enumerate(reqs):
        t = max(t + gap, horizon)  # arrivals come in time order, none before a past horizon
        for server, driver, mine in zip(servers, drivers, requests, strict=True):
            if 0 <= change < len(mine):  # possibly one still scheduled
                server.set_round_trip(mine[change], rtt / 2)
            req = EdgeRequest(rid, sid, k, 0.0, ctx, new, out, keep=keep, round_trip_s=rtt)
            driver.schedule(req, t)
            mine.append(req)
        if probe < 0.5:  # an advance: before this arrival (it stays scheduled), or after it
            horizon = t - gap * probe if probe < 0.2 else t + probe * 0.2
            left_scheduled += horizon < t
            for driver in drivers:
                driver.advance(horizon)
            _compare(servers, horizon)
    for horizon in (t + 0.01, t + 0.5, t + 3.0):
        for driver in drivers:
            driver.advance(horizon)
        _compare(servers, horizon)
    for server in servers:
        server.sync_requests()
    for others in requests[1:]:
        for a, b in zip(requests[0], others, strict=True):
            assert _accounting(a) == _accounting(b)
    return left_scheduled


def _compare(servers: list[EdgeServer], t: float) -> None:
    ref = _snapshot(servers[0], t)
    for server in servers[1:]:
        assert operator.eq(ref, _snapshot(server, t))


@settings(max_examples=100, deadline=None)
@given(arrivals, *server_sizes)
@example(*SPLIT_PREEMPTED_IN_ROUND_TRIP)
def test_scheduled_submissions_equal_advance_then_submit(reqs, pool_tokens, budget, seqs):
    drive_scheduled(reqs, pool_tokens, budget, seqs)


def test_the_examples_leave_submissions_scheduled_across_an_advance():
    """Guard: a horizon before the newest arrival leaves it scheduled, and it still matches."""
    rows = [
        (0.0, 40, 30, 0, True, 0, 0, 0.0, 0.9, -1),
        (0.01, 8, 20, 5, False, 1, 0, 0.02, 0.1, 1),  # advance before it: stays scheduled
        (0.02, 300, 10, 0, False, 0, 50, 0.0, 0.3, 1),
    ]
    assert drive_scheduled(rows, 400, 64, 8) == 1


@pytest.mark.parametrize("compiled", [False, True])
def test_a_scheduled_submission_before_the_clock_raises_and_drops_the_rest(compiled):
    """As ``submit`` before the clock: ValueError, with the server as it was at that submission
    (those before it taken), and nothing left scheduled."""
    server = EdgeServer(COST, 10**9, compiled=compiled)
    if compiled and not server.compiled:
        pytest.skip("numba is not installed (the fast extra)")
    ref = EdgeServer(COST, 10**9, compiled=False)
    server.advance(1.0)
    ref.advance(1.0)
    for rid, when in enumerate((1.5, 0.5, 2.0)):
        server.schedule(EdgeRequest(rid, rid, 0, 0.0, 0, 10, 5), when)
    ref.advance(1.5)
    ref.submit(EdgeRequest(0, 0, 0, 0.0, 0, 10, 5), 1.5)
    with pytest.raises(ValueError, match="before the server's clock"):
        ref.submit(EdgeRequest(1, 1, 0, 0.0, 0, 10, 5), 0.5)
    with pytest.raises(ValueError, match=r"submit at 0\.5 is before the server's clock"):
        server.advance(3.0)
    assert _snapshot(server, 1.5) == _snapshot(ref, 1.5)
    for s in (server, ref):
        s.advance(3.0)
    assert _snapshot(server, 3.0) == _snapshot(ref, 3.0)
    assert server.n_in_system == 0 and server.iterations > 0


def test_a_compiled_server_takes_a_decision_in_one_kernel_call(monkeypatch):
    """What the scheduling is for: three arrivals and the advance past them, one call."""
    server = EdgeServer(COST, 10**9, compiled=True)
    if not server.compiled:
        pytest.skip("numba is not installed (the fast extra)")
    kernel = cd.scheduler()
    calls = [0]
    advance = kernel.advance

    def counted(*args: Any) -> bool:
        calls[0] += 1
        return bool(advance(*args))

    monkeypatch.setattr(kernel, "advance", counted)
    for rid, when in enumerate((0.1, 0.2, 0.25)):
        server.schedule(EdgeRequest(rid, rid, 3 * rid, 0.0, 0, 30, 99, round_trip_s=0.01), when)
    server.advance(0.3)
    assert calls[0] == 1
    assert server.n_in_system == 3 and server.iterations > 3
