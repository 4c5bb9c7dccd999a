"""The cell runtime's scheduler: budgets, chunked prefill, the KV pool, eviction, preemption.

Hand-built cases, then a property: for the same arrivals it schedules exactly the batches the
simulator's :class:`~offload_rl.cell.edge_server.EdgeServer` does (the two are independent
implementations of the same rules; the validation compares their timing, so they must agree on
who runs when).
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from validation.runtime.batch_scheduler import (
    FINISHED,
    REJECTED,
    WAITING,
    BatchScheduler,
    EdgeSequence,
)

BPT = 10  # bytes per token


def seq(
    rid: int, known: int, out: int, keep: bool = False, session: int | None = None
) -> EdgeSequence:
    return EdgeSequence(
        rid, rid if session is None else session, list(range(known)), out, keep, 0.0
    )


def step(s: BatchScheduler, t: float) -> tuple[list[int], list[int]]:
    """One iteration at ``t`` (it ends at ``t + 1``), every sampling sequence getting token 7."""
    plan = s.schedule(t)
    sampled = [
        7 if r.computed + n == r.known else None
        for r, n in zip(plan.sequences, plan.tokens, strict=True)
    ]
    s.complete(plan, sampled, t + 1.0)
    return [r.request_id for r in plan.sequences], plan.tokens


def test_chunked_prefill_shares_the_token_budget_and_decodes_go_first() -> None:
    s = BatchScheduler(10_000, BPT, max_num_batched_tokens=8, max_num_seqs=8)
    s.submit(seq(1, 10, 3), 0.0)
    s.submit(seq(2, 4, 2), 0.0)
    assert step(s, 0.0) == ([1], [8])  # A's first chunk takes the whole budget
    assert step(s, 1.0) == ([1, 2], [2, 4])  # A's last chunk, then B is admitted: 2 + 4 <= 8
    assert step(s, 2.0) == ([1, 2], [1, 1])  # both decode
    ids, tokens = step(s, 3.0)
    assert (ids, tokens) == ([1], [1])  # B finished after 2 tokens
    assert [r.request_id for r in s.finished] == [2, 1]
    assert all(r.status == FINISHED for r in s.finished)


def test_sequence_budget_limits_admissions() -> None:
    s = BatchScheduler(10_000, BPT, max_num_batched_tokens=100, max_num_seqs=2)
    for rid in (1, 2, 3):
        s.submit(seq(rid, 3, 2), 0.0)
    assert step(s, 0.0) == ([1, 2], [3, 3])
    assert [r.request_id for r in s.waiting] == [3]


def test_a_prompt_larger_than_the_pool_is_rejected() -> None:
    s = BatchScheduler(5 * BPT, BPT, max_num_batched_tokens=100, max_num_seqs=8)
    s.submit(seq(1, 6, 2), 0.0)
    s.submit(seq(2, 3, 1), 0.0)
    assert step(s, 0.0) == ([2], [3])
    assert s.finished[0].request_id == 1 and s.finished[0].status == REJECTED


def test_kept_session_is_claimed_by_its_next_turn() -> None:
    s = BatchScheduler(10_000, BPT, max_num_batched_tokens=100, max_num_seqs=8)
    s.submit(seq(1, 5, 2, keep=True, session=9), 0.0)
    step(s, 0.0)
    step(s, 1.0)
    assert s.pool.peek(9) is not None and s.pool.peek(9).tokens == 6  # 5 prompt + 1 decoded
    assert s.kept[9].tokens == 6
    turn2 = EdgeSequence(2, 9, [*range(7), 1, 2, 3], 1, False, 0.0)  # context 7 + 3 new
    s.submit(turn2, 2.0)
    assert step(s, 2.0) == ([2], [4])  # only what the kept 6 tokens do not cover
    assert turn2.cached_tokens == 6
    assert s.pool.peek(9) is None and 9 not in s.kept  # finished without keep: released


def test_a_full_pool_evicts_kept_sessions_then_preempts_the_newest() -> None:
    # room for 11 tokens: a kept session of 4, then A and B (4 prompt + 4 out each)
    s = BatchScheduler(11 * BPT, BPT, max_num_batched_tokens=100, max_num_seqs=8)
    s.submit(seq(1, 3, 2, keep=True, session=50), 0.0)
    step(s, 0.0)
    step(s, 1.0)  # session 50 kept: 4 tokens
    assert s.pool.kept_bytes == 4 * BPT
    a, b = seq(2, 4, 4), seq(3, 4, 4)
    s.submit(a, 2.0)
    s.submit(b, 2.0)
    plan = s.schedule(2.0)  # A fits; B needs the kept entry's room
    assert [r.request_id for r in plan.sequences] == [2, 3] and plan.evicted == [50]
    s.complete(plan, [7, 7], 3.0)
    assert step(s, 3.0) == ([2, 3], [1, 1])  # pool: A 5 + B 5 = 10 of 11 tokens
    plan = s.schedule(4.0)  # A takes the 11th; B's decode finds no room: B, the newest, goes
    assert plan.preempted == [3] and [r.request_id for r in plan.sequences] == [2]
    assert b.status == WAITING and b.computed == 0 and b.preemptions == 1
    assert s.waiting[0] is b and b.known == 6  # re-prefills its prompt and its 2 tokens
    assert s.preemptions == 1


def test_a_split_sequence_waits_for_its_round_trip_and_holds_its_layers_kv() -> None:
    # 4 layers, 12 bytes per token over all of them: a split at layer 3 holds 3 bytes a token
    s = BatchScheduler(10_000, 12, max_num_batched_tokens=100, max_num_seqs=8, n_layers=4)
    a = EdgeSequence(1, 1, list(range(4)), 3, False, 0.0, split=3)
    b = seq(2, 2, 3)
    s.submit(a, 0.0)
    s.submit(b, 0.0)
    assert step(s, 0.0) == ([1, 2], [4, 2])
    assert s.pool.held_by(1) == 4 * 3 and s.pool.held_by(2) == 2 * 12
    assert a.awaiting and not b.awaiting  # A's token went down; B decodes on
    assert step(s, 1.0) == ([2], [1])
    s.arrived(a)
    assert step(s, 2.0) == ([1, 2], [1, 1])
    assert s.pool.held_by(1) == 5 * 3


def test_a_split_sequence_preempted_during_its_round_trip_waits_for_its_hidden_state() -> None:
    """As the simulator's ``_preempt`` (``ready_at`` kept): the wait goes on; re-admitted, the
    sequence recomputes the positions whose hidden states the edge holds, and its newest position
    runs only once its hidden state has arrived (it was once re-prefilled at once, that position
    included, before the device could have sent it)."""
    # room for 10 tokens of every layer: B (token ids) 4 + 4 out, A (split 2 of 4) 4 at half
    s = BatchScheduler(10 * 12, 12, max_num_batched_tokens=100, max_num_seqs=8, n_layers=4)
    b = seq(1, 4, 6)
    a = EdgeSequence(2, 2, list(range(8)), 3, False, 0.0, split=2)
    s.submit(b, 0.0)
    s.submit(a, 0.0)
    assert step(s, 0.0) == ([1, 2], [4, 8])  # pool: 4 x 12 + 8 x 6 = 96 of 120
    assert a.awaiting
    assert step(s, 1.0) == ([1], [1])  # 108
    assert step(s, 2.0) == ([1], [1])  # 120: full
    plan = s.schedule(3.0)  # B's next token needs 12 more: A, the newest, is preempted
    assert plan.preempted == [2] and a.awaiting and a.computed == 0
    assert s.waiting[0] is a and a.known == 9
    s.complete(plan, [7], 4.0)
    t = 4.0
    while b.status != FINISHED:  # A (9 x 6 bytes) waits for room
        assert step(s, t) == ([1], [1])
        t += 1.0
    assert step(s, t) == ([2], [8])  # its 8 positions here; the 9th is still on its way
    assert a.computed == 8 and a.generated == 1 and not s.has_ready()
    assert not s.schedule(t + 1.0).sequences
    s.arrived(a)
    assert step(s, t + 2.0) == ([2], [1]) and a.generated == 2


def test_a_kept_entry_serves_only_the_same_split_and_a_move_drops_it() -> None:
    s = BatchScheduler(10_000, 12, max_num_batched_tokens=100, max_num_seqs=8, n_layers=4)
    s.submit(EdgeSequence(1, 9, list(range(5)), 1, True, 0.0, split=2), 0.0)
    step(s, 0.0)
    assert s.pool.peek(9) is not None and s.pool.peek(9).split == 2 and s.kept[9].split == 2
    other = EdgeSequence(2, 9, [*range(6), 1], 1, True, 0.0, split=1)
    s.submit(other, 1.0)
    assert step(s, 1.0) == ([2], [7])  # another split: a miss, everything prefilled
    assert other.cached_tokens == 0
    s.drop_session(9)  # what the edge does when the device says the session moved
    assert s.pool.peek(9) is None and 9 not in s.kept and s.evictions == 0


def _layer_cost(n_layers: int = 4) -> BatchRoofline:
    """An iteration takes 0.25 s per layer its lowest split runs (binary fractions: exact)."""
    return BatchRoofline(
        n_layers=n_layers,
        kv_bytes_per_token_layer=BPT_LAYER,
        layer_fixed_s=0.25,
        kv_s_per_token=0.0,
        linear_s_per_token=0.0,
        attn_s_unit=0.0,
        embed_fixed_s=0.0,
        embed_s_per_token=0.0,
        head_fixed_s=0.0,
        head_s_per_sample=0.0,
        head_s_per_token=0.0,
    )


BPT_LAYER = 3  # bytes per token and layer of the property test's 4-layer model


class _Recording(EdgeServer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[tuple[float, list[tuple[int, int]]]] = []
        self.split_preempted_in_round_trip = 0

    def _preempt(self, r: EdgeRequest, s: float) -> None:
        self.split_preempted_in_round_trip += r.split > 0 and r.ready_at > s
        super()._preempt(r, s)

    def _batch_time(self) -> float:
        took = super()._batch_time()
        rows = [(r.request_id, n) for r, n in zip(self._sched, self._sched_n, strict=True)]
        self.batches.append((self.clock, rows))
        return took


request = st.tuples(
    st.integers(0, 6),  # arrival iteration
    st.integers(0, 3),  # session
    st.integers(1, 30),  # prompt tokens
    st.integers(1, 6),  # output tokens
    st.booleans(),  # keep
    st.integers(0, 3),  # split (first edge layer of 4)
    st.integers(0, 12),  # round trip, eighths of a second
)


def _run_runtime(
    reqs: list[tuple[int, int, int, int, bool, int, int]],
    run: BatchScheduler,
    cost: BatchRoofline,
) -> list[tuple[float, list[tuple[int, int]]]]:
    """Drive the runtime's scheduler as the edge process does, with the simulator's clock:
    prompts arrive at their times, a split sequence's next position when its round trip ends,
    and each iteration takes what ``cost`` prices."""
    events: list[tuple[float, int, EdgeSequence, bool]] = []  # (time, order, seq, is_arrival)
    trips: dict[int, float] = {}
    for rid, (at, session, new, out, keep, split, trip) in enumerate(reqs):
        r = EdgeSequence(rid, session, list(range(new)), out, keep, 0.0, split=split)
        events.append((float(at) + 0.5, rid, r, True))
        trips[rid] = trip / 8.0
    batches: list[tuple[float, list[tuple[int, int]]]] = []
    t = 0.0
    while events or run.has_work():
        events.sort(key=lambda x: (x[0], x[1]))
        while events and events[0][0] <= t:
            _, _, r, is_arrival = events.pop(0)
            if is_arrival:
                run.submit(r, t)
            else:
                run.arrived(r)
        plan = run.schedule(t) if run.has_ready() else None
        if plan is None or not plan.sequences:  # idle: all wait for a round trip or a prompt
            if not events:
                assert not run.has_work()
                break
            t = max(t, events[0][0])
            continue
        rows = [
            (r.split, n, r.computed, r.computed + n == r.known)
            for r, n in zip(plan.sequences, plan.tokens, strict=True)
        ]
        ids = [r.request_id for r in plan.sequences]
        batches.append((t, list(zip(ids, plan.tokens, strict=True))))
        e = t + cost.iteration_s(rows)
        sampled = [1 if smp else None for *_, smp in rows]
        for r in run.complete(plan, sampled, e):
            if r.awaiting:
                events.append((e + trips[r.request_id], len(reqs) + len(batches), r, False))
        t = e
    return batches


# B's decodes preempt A (split 2) during its 1.5 s round trip; A is re-admitted before its next
# position's hidden state has come up
SPLIT_PREEMPTED_IN_ROUND_TRIP = (
    [(0, 0, 19, 6, False, 0, 8), (0, 1, 1, 6, False, 2, 12)],
    20,
    32,
    4,
)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(request, min_size=1, max_size=8),
    st.integers(20, 80),
    st.integers(4, 32),
    st.integers(1, 4),
)
@example(*SPLIT_PREEMPTED_IN_ROUND_TRIP)
def test_schedules_the_batches_the_simulator_schedules(
    reqs: list[tuple[int, int, int, int, bool, int, int]],
    pool_tokens: int,
    budget: int,
    seqs: int,
) -> None:
    """Token-id and split sequences mixed: the same batches (who, how many tokens) at the same
    instants, the same preemptions and evictions."""
    _compare(reqs, pool_tokens, budget, seqs)


def test_the_example_preempts_a_split_sequence_during_its_round_trip() -> None:
    """A guard: the property's example holds the case it is there for."""
    assert _compare(*SPLIT_PREEMPTED_IN_ROUND_TRIP) >= 1


def _compare(
    reqs: list[tuple[int, int, int, int, bool, int, int]], pool_tokens: int, budget: int, seqs: int
) -> int:
    """Run both on ``reqs`` and compare; the simulator's preemptions of split requests during
    their round trip."""
    reqs = sorted(reqs, key=lambda r: r[0])
    cost = _layer_cost()
    pool = pool_tokens * 4 * BPT_LAYER
    sim = _Recording(cost, pool, budget, seqs, fast=False)
    # a session's turns run one after the other in both (arrivals are per iteration)
    for rid, (at, session, new, out, keep, split, trip) in enumerate(reqs):
        t = float(at) + 0.5
        sim.advance(t)
        er = EdgeRequest(rid, session, split, t, 0, new, out, keep=keep, round_trip_s=trip / 8.0)
        sim.submit(er, t)
    sim.advance(1e6)
    run = BatchScheduler(pool, 4 * BPT_LAYER, budget, seqs, n_layers=4)
    assert _run_runtime(reqs, run, cost) == sim.batches
    assert run.preemptions == sim.preemptions
    assert run.evictions == sim.pool.evictions
    return sim.split_preempted_in_round_trip
