"""The fast edge server computes exactly what the general scheduler computes.

``EdgeServer(fast=False)`` runs every iteration through the general scheduler (the reference);
the default fast path runs decode-only stretches in a specialised loop. Both are driven through
the same random arrivals (lengths, splits, keeps, sessions with context, round trips, pool
sizes, budgets, horizons that leave an iteration in flight, round trips changed between calls)
and must agree *exactly* (``==`` on floats): the fast path performs the same float operations
in the same order, so there is no tolerance to state.
"""

from __future__ import annotations

from dataclasses import fields

from hypothesis import example, given, settings
from hypothesis import strategies as st

from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from offload_rl.model_shapes import get_arch
from offload_rl.roofline import get_hardware

COST = BatchRoofline.from_arch(get_arch("qwen2.5-0.5b"), get_hardware("l4"))
L = COST.n_layers
KV_TOKEN = L * COST.kv_bytes_per_token_layer

arrivals = st.lists(
    st.tuples(
        st.floats(0.0, 0.1) | st.just(0.0),  # gap to the previous arrival, s (ties on purpose)
        st.integers(1, 8) | st.integers(1, 700),  # new tokens
        st.integers(1, 40),  # output tokens
        st.sampled_from([0, 0, 1, L - 1]) | st.integers(0, L - 1),  # split
        st.booleans(),  # keep
        st.integers(0, 4),  # session id: turns of the same session collide on purpose
        st.integers(0, 900),  # context tokens (a kept entry is claimed when it fits)
        st.floats(0.0, 0.05) | st.just(0.0),  # round trip of a split request
        st.floats(0.0, 1.0),  # where between arrivals an extra advance probes the state
        st.integers(-1, 39),  # a request whose round trip changes here (-1: none)
    ),
    min_size=1,
    max_size=30,
)


def _snapshot(server: EdgeServer, t: float) -> tuple[object, ...]:
    """Everything observable from outside, and the in-flight iteration."""
    return (
        server.state(),
        server.clock,
        server.busy_s,
        server.iterations,
        server.preemptions,
        server.n_in_system,
        server.area_in_system(t),
        server._in_flight,
        server._iter_end if server._in_flight else None,
        [r.request_id for r in server.running],
        [r.request_id for r in server.waiting],
        [(r.request_id, r.status, r.finish_s) for r in server.pop_finished()],
        server.pop_events(),
        server.pool.capacity_bytes - server.pool.free_bytes,
    )


def _accounting(r: EdgeRequest) -> tuple[object, ...]:
    return tuple(getattr(r, f.name) for f in fields(r))


@settings(max_examples=150, deadline=None)
@given(
    arrivals,
    st.integers(60, 3000),  # pool, tokens of a k = 0 request
    st.integers(1, 6) | st.integers(1, 2048) | st.just(2048),  # max_num_batched_tokens
    st.integers(1, 16),  # max_num_seqs
)
@example(  # more decodes ready than the token budget: two round trips end behind a k = 0 decode
    [
        (0.0, 1, 5, 6, False, 0, 0, 0.05, 0.5, -1),
        (0.0, 1, 5, 6, False, 1, 0, 0.05, 0.5, -1),
        (0.0, 1, 200, 0, False, 2, 0, 0.0, 0.5, -1),
    ],
    3000,
    2,
    8,
)
def test_fast_path_matches_the_general_scheduler_exactly(reqs, pool_tokens, budget, seqs):
    servers = [
        EdgeServer(COST, pool_tokens * KV_TOKEN, budget, seqs, fast=fast) for fast in (False, True)
    ]
    requests: list[list[EdgeRequest]] = [[], []]
    t = 0.0
    for rid, (gap, new, out, k, keep, sid, ctx, rtt, probe, change) in enumerate(reqs):
        for server, mine in zip(servers, requests, strict=True):
            if 0 <= change < len(mine):
                server.set_round_trip(mine[change], rtt / 2)
            server.advance(t + probe * gap)
        assert _snapshot(servers[0], t + probe * gap) == _snapshot(servers[1], t + probe * gap)
        t += gap
        for server, mine in zip(servers, requests, strict=True):
            server.advance(t)
            req = EdgeRequest(rid, sid, k, 0.0, ctx, new, out, keep=keep, round_trip_s=rtt)
            server.submit(req, t)
            mine.append(req)
        assert _snapshot(servers[0], t) == _snapshot(servers[1], t)
    # finite horizons: the model itself can thrash forever (a prompt that fills the pool and is
    # chunked down to one token re-preempts itself), and that must match too, up to a point
    for horizon in (t + 0.01, t + 0.5, t + 3.0):
        for server in servers:
            server.advance(horizon)
        assert _snapshot(servers[0], horizon) == _snapshot(servers[1], horizon)
    for ref, fast in zip(*requests, strict=True):
        assert _accounting(ref) == _accounting(fast)


def test_the_fast_path_runs_and_the_reference_does_not():
    """Guard for the test above: the scenario it compares must exercise the fast loop."""
    calls = {True: 0, False: 0}

    class Counted(EdgeServer):
        def _start_iteration(self, s: float) -> bool:
            calls[self.fast] += 1
            return super()._start_iteration(s)

    for fast in (False, True):
        server = Counted(COST, 10**9, fast=fast)
        server.submit(EdgeRequest(0, 0, 6, 0.0, 0, 50, 40, round_trip_s=0.01), 0.0)
        server.submit(EdgeRequest(1, 1, 0, 0.0, 0, 80, 40), 0.0)
        server.advance(1e9)
        assert server.iterations > 40
    assert calls[False] > 40 and calls[True] <= 2


def test_a_finish_inside_a_decode_stretch_frees_only_its_own_memory():
    """One long advance: A finishes mid-stretch, B then decodes into a pool it fills (preempts)."""
    servers = [EdgeServer(COST, 100 * KV_TOKEN, fast=fast) for fast in (False, True)]
    for server in servers:
        server.submit(EdgeRequest(0, 0, 0, 0.0, 0, 20, 10), 0.0)  # A: finishes at 29 tokens
        server.submit(EdgeRequest(1, 1, 0, 0.0, 0, 52, 60), 0.0)  # B: then outgrows the pool
        server.advance(10.0)
    assert servers[0].preemptions > 0
    assert _snapshot(servers[0], 10.0) == _snapshot(servers[1], 10.0)
