"""Edge server: batching, chunked prefill, the pool invariant, preemption, Little's law."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.cell.edge_server import FINISHED, REJECTED, EdgeRequest, EdgeServer
from offload_rl.model_shapes import get_arch
from offload_rl.roofline import get_hardware

COST = BatchRoofline.from_arch(get_arch("qwen2.5-0.5b"), get_hardware("l4"))
L = COST.n_layers
KV_TOKEN = L * COST.kv_bytes_per_token_layer  # bytes per token of a k = 0 request


def _req(
    rid: int,
    new: int = 100,
    out: int = 5,
    k: int = 0,
    *,
    context: int = 0,
    session_id: int | None = None,
    keep: bool = False,
    round_trip_s: float = 0.0,
) -> EdgeRequest:
    sid = rid if session_id is None else session_id
    return EdgeRequest(rid, sid, k, 0.0, context, new, out, keep=keep, round_trip_s=round_trip_s)


def _drain(server: EdgeServer, t: float = 1e9) -> list[EdgeRequest]:
    server.advance(t)
    return server.pop_finished()


def test_a_lone_request_costs_what_the_roofline_says():
    server = EdgeServer(COST, pool_bytes=10**9)
    server.submit(_req(1, new=300, out=4), 0.0)
    (r,) = _drain(server)
    prefill = COST.iteration_s([(0, 300, 0, True)])
    decodes = sum(COST.iteration_s([(0, 1, 300 + j, True)]) for j in range(3))
    assert r.first_token_s == pytest.approx(prefill)
    assert r.finish_s == pytest.approx(prefill + decodes)
    assert r.status == FINISHED and r.queued_s == 0.0 and r.preemptions == 0


def test_long_prompts_are_prefilled_in_chunks_of_the_token_budget():
    server = EdgeServer(COST, pool_bytes=10**9, max_num_batched_tokens=512)
    server.submit(_req(1, new=1200, out=1), 0.0)
    (r,) = _drain(server)
    assert server.iterations == 3  # 512 + 512 + 176
    chunks = [(0, 512, 0, False), (0, 512, 512, False), (0, 176, 1024, True)]
    assert r.finish_s == pytest.approx(sum(COST.iteration_s([c]) for c in chunks))


def test_a_request_arriving_mid_iteration_waits_for_the_next_one():
    server = EdgeServer(COST, pool_bytes=10**9)
    server.submit(_req(1, new=2000, out=2), 0.0)
    server.advance(1e-4)  # the first prefill is in flight
    server.submit(_req(2, new=10, out=1), 1e-4)
    done = {r.request_id: r for r in _drain(server)}
    first_iter = COST.iteration_s([(0, 2000, 0, True)])
    assert done[2].admit_s == pytest.approx(first_iter)
    assert done[2].queued_s == pytest.approx(first_iter - 1e-4)
    assert done[2].batch_at_admit == 1


def test_a_split_request_waits_out_its_round_trip_between_tokens():
    server = EdgeServer(COST, pool_bytes=10**9)
    server.submit(_req(1, new=50, out=3, k=12, round_trip_s=0.040), 0.0)
    (r,) = _drain(server)
    edge = COST.iteration_s([(12, 50, 0, True)]) + sum(
        COST.iteration_s([(12, 1, 50 + j, True)]) for j in range(2)
    )
    assert r.finish_s == pytest.approx(edge + 2 * 0.040)
    assert r.kv_bytes_per_token == (L - 12) * COST.kv_bytes_per_token_layer


def test_a_kept_session_is_claimed_by_its_next_turn_with_the_same_split():
    server = EdgeServer(COST, pool_bytes=10**9)
    server.submit(_req(1, new=400, out=10, keep=True, session_id=9), 0.0)
    _drain(server, 10.0)
    assert server.pool.peek(9).tokens == 409  # prompt + 9 fed-back outputs
    server.submit(_req(2, new=20, out=1, context=410, session_id=9), 10.0)
    (second,) = _drain(server)
    assert second.cached_tokens == 409 and server.pool.n_kept == 0
    assert second.finish_s - 10.0 == pytest.approx(COST.iteration_s([(0, 21, 409, True)]))


def test_an_admission_evicts_kept_entries_to_fit_its_prompt():
    server = EdgeServer(COST, pool_bytes=1000 * KV_TOKEN)
    server.submit(_req(1, new=500, out=1, keep=True), 0.0)
    _drain(server, 1.0)
    server.submit(_req(2, new=700, out=20), 1.0)
    (r,) = _drain(server)
    assert [e.kind for e in server.pop_events()] == ["evicted"] and r.preemptions == 0


def test_a_growing_decode_evicts_kept_entries_before_preempting():
    server = EdgeServer(COST, pool_bytes=1000 * KV_TOKEN)
    server.submit(_req(1, new=300, out=1, keep=True), 0.0)  # leaves 300 tokens kept
    server.submit(_req(2, new=400, out=400), 0.0)  # grows to 799 tokens: needs that memory
    done = _drain(server)
    assert [e.kind for e in server.pop_events()] == ["evicted"]
    assert [r.preemptions for r in done] == [0, 0]


class _Watched(EdgeServer):
    """Records the pool's state at every preemption and checks the invariant at each iteration.

    It hooks the Python scheduler's methods, so it runs the Python scheduler (the compiled one
    is checked against it, bit for bit, in ``test_compiled_decode.py``)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, compiled=False, **kw)  # type: ignore[arg-type]
        self.at_preemption: list[tuple[int, int, int]] = []
        self.split_preempted_in_round_trip = 0  # victims whose next activation was still out
        self._need = 0

    def _make_room(self, r: EdgeRequest, nbytes: int, s: float) -> bool:
        self._need = nbytes  # what the request that needs memory asks for
        return super()._make_room(r, nbytes, s)

    def _preempt(self, r: EdgeRequest, s: float) -> None:
        self.at_preemption.append((self.pool.free_bytes, self.pool.n_kept, self._need))
        self.split_preempted_in_round_trip += r.split > 0 and r.ready_at > s
        super()._preempt(r, s)

    def _start_iteration(self, s: float) -> bool:
        started = super()._start_iteration(s)
        pool = self.pool
        assert 0 <= pool.used_bytes <= pool.capacity_bytes
        assert pool.running_bytes == sum(pool.held_by(r.request_id) for r in self.running)
        for r in self.running:
            assert pool.held_by(r.request_id) >= r.computed * r.kv_bytes_per_token
        return started


def test_preemption_only_when_the_pool_is_full_and_it_does_happen():
    server = _Watched(COST, pool_bytes=1500 * KV_TOKEN)
    for i in range(6):  # 6 x 200-token prompts fit; their 400-token outputs do not
        server.submit(_req(i, new=200, out=400), 0.0)
    done = _drain(server)
    assert len(done) == 6 and all(r.status == FINISHED for r in done)
    assert server.at_preemption, "the scenario must preempt, or the test checks nothing"
    for free, kept, need in server.at_preemption:
        assert kept == 0 and free < need
    # the newest admissions are the victims; the oldest request never is
    assert min(done, key=lambda r: r.request_id).preemptions == 0


def test_a_prompt_larger_than_the_pool_is_rejected_not_lost():
    server = EdgeServer(COST, pool_bytes=100 * KV_TOKEN)
    server.submit(_req(1, new=101, out=1), 0.0)
    (r,) = _drain(server)
    assert r.status == REJECTED and server.n_in_system == 0


arrivals = st.lists(
    st.tuples(
        st.floats(0.0, 0.2),  # gap to the previous arrival, s
        st.integers(1, 900),  # new tokens
        st.integers(1, 60),  # output tokens
        st.integers(0, L - 1),  # split
        st.booleans(),  # keep
        st.integers(0, 5),  # session id: turns of the same session collide on purpose
        st.floats(0.0, 0.05) | st.floats(0.05, 1.0),  # round trip of a split request (long
        # ones: preemptions during a round trip)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(arrivals, st.integers(400, 4000), st.integers(16, 2048), st.integers(1, 16))
@example(  # B's decodes outgrow the pool: they preempt A (k = L - 1) during its 1 s round trip
    [(0.0, 390, 60, 0, False, 0, 0.0), (0.0, 10, 20, L - 1, False, 1, 1.0)], 400, 2048, 16
)
def test_random_arrivals_never_break_the_pool_or_lose_a_request(reqs, pool_tokens, budget, seqs):
    server = _Watched(
        COST, pool_tokens * KV_TOKEN, max_num_batched_tokens=budget, max_num_seqs=seqs
    )
    t = 0.0
    for rid, (gap, new, out, k, keep, sid, rtt) in enumerate(reqs):
        t += gap
        server.advance(t)
        server.submit(
            _req(rid, new=new, out=out, k=k, keep=keep, session_id=sid, round_trip_s=rtt), t
        )
    done = _drain(server)
    assert sorted(r.request_id for r in done) == list(range(len(reqs)))
    assert server.n_in_system == 0 and not server.running and not server.waiting
    assert server.pool.running_bytes == 0
    for r in done:
        if r.status == FINISHED:
            assert r.generated == r.output_tokens
            assert r.arrival_s <= r.admit_s <= r.first_token_s <= r.finish_s
        else:  # its prompt, or prompt + what it generated before a preemption, outgrew the pool
            assert r.known * r.kv_bytes_per_token > pool_tokens * KV_TOKEN
        if r.status == FINISHED and r.split > 0:  # every next token waits out a round trip,
            # preempted or not: its input comes up from the device
            rtts = (r.output_tokens - 1) * r.round_trip_s
            assert r.finish_s >= r.first_token_s + rtts - 1e-9 * (1 + r.finish_s)
    for free, kept, need in server.at_preemption:
        assert kept == 0 and free < need


def test_littles_law_holds_on_the_simulated_edge():
    """Time-average number in system = arrival rate x mean time in system, within 2%."""
    rng = random.Random(13)
    # 25 req/s on a 7000-token pool: loaded and stable (about 21 in system, a few preemptions)
    server = EdgeServer(COST, pool_bytes=7000 * KV_TOKEN, max_num_batched_tokens=512)
    horizon, rate = 120.0, 25.0
    t, rid = 0.0, 0
    while True:
        t += rng.expovariate(rate)
        if t > horizon:
            break
        server.advance(t)
        split = rng.choice([0, 0, 6, 18])
        req = _req(
            rid,
            new=rng.randint(20, 600),
            out=1 + int(rng.expovariate(1 / 40)),
            k=split,
            round_trip_s=0.03 if split else 0.0,
        )
        server.submit(req, t)
        rid += 1
    server.advance(horizon)
    done = [r for r in server.pop_finished() if r.finish_s <= horizon]
    time_avg_in_system = server.area_in_system(horizon) / horizon
    arrival_rate = rid / horizon
    mean_time_in_system = sum(r.finish_s - r.arrival_s for r in done) / len(done)
    assert server.preemptions > 0 and 3 < time_avg_in_system < 100  # loaded, not diverging
    assert time_avg_in_system == pytest.approx(arrival_rate * mean_time_in_system, rel=0.02)


def test_a_prompt_s_last_token_uses_the_memory_reserved_at_admission():
    """A chunk that leaves a prompt one token short must not charge that token's KV twice: a
    100-token prompt on a 100-token pool with a 99-token budget finishes without preemption
    (charging the last prompt token as a decode's new token once made it preempt itself
    forever)."""
    for fast in (True, False):
        server = EdgeServer(COST, 100 * KV_TOKEN, max_num_batched_tokens=99, fast=fast)
        server.submit(_req(0, new=100, out=1), 0.0)
        server.advance(10.0)
        done = server.pop_finished()
        assert [r.request_id for r in done] == [0], f"fast={fast}"
        assert done[0].preemptions == 0
        assert server.pool.used_bytes == 0


@pytest.mark.parametrize("kind", ["reference", "fast", "compiled"])
def test_a_split_request_preempted_during_its_round_trip_waits_for_its_activation(kind):
    """A split request preempted while its next activation is on its way up from the device is
    recomputed on re-admission only up to the positions the edge has inputs for: its newest
    position runs when the activation arrives (it once ran at once: ``ready_at`` was reset).

    A (k = 1, 10 s round trip) and B (token ids) fill a tiny pool; B's decodes preempt A during
    its first round trip (its first token at 1 s), B outgrows the pool and is rejected at 4 s, and
    A is re-admitted at once: it may recompute its 3 prompt positions at 4 s, but its 4th
    position's activation arrives at 11 s, so its 2nd token comes at 11.5 s, its 3rd 10 s later.
    """
    if kind == "compiled" and not cd.AVAILABLE:
        pytest.skip("numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0")
    cost = BatchRoofline(
        n_layers=2, kv_bytes_per_token_layer=1, layer_fixed_s=0.5, kv_s_per_token=0.0,
        linear_s_per_token=0.0, attn_s_unit=0.0, embed_fixed_s=0.0, embed_s_per_token=0.0,
        head_fixed_s=0.0, head_s_per_sample=0.0, head_s_per_token=0.0,
    )  # fmt: skip
    # the pool: B's 4 tokens x 2 layers and A's 4 tokens x 1 layer
    server = EdgeServer(
        cost, 2 * 4 + 1 * 4, 64, 8, fast=kind != "reference", compiled=kind == "compiled"
    )
    assert server.compiled == (kind == "compiled")
    b = EdgeRequest(0, 0, 0, 0.0, 0, 3, 6)
    a = EdgeRequest(1, 1, 1, 0.0, 0, 3, 3, round_trip_s=10.0)
    server.submit(b, 0.0)
    server.submit(a, 0.0)
    server.advance(11.0)
    server.sync_requests()
    assert a.preemptions == 1 and a.first_token_s == 1.0 and b.status == REJECTED
    assert a.generated == 1 and a.computed == 3  # its prompt recomputed; the 4th not yet
    server.advance(30.0)
    assert server.pop_finished()[-1] is a
    assert a.finish_s == 11.5 + 10.0 + 0.5
