"""The schedule diff: the simulator's edge in lockstep with a runtime edge log.

The logs here are written by the runtime's own scheduler
(:class:`~validation.runtime.batch_scheduler.BatchScheduler`) driven like the runtime's loop:
the diff must find them identical, and must point at the first iteration of a log written by a
scheduler with one rule changed (the preemption victim, admission after a preemption).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from offload_rl.cli import main
from validation.runtime.batch_scheduler import BatchScheduler, EdgeSequence, Plan
from validation.schedule_diff import (
    Arrival,
    EdgeRun,
    RuntimeIteration,
    ScheduleDiffError,
    diff_run_folder,
    diff_schedule,
    load_level,
)

N_LAYERS = 2
KV_LAYER = 5  # bytes per token of one layer
BPT = N_LAYERS * KV_LAYER
SECONDS = 1.0  # every iteration of the synthetic logs


class OldestVictimScheduler(BatchScheduler):
    """A wrong rule: preemption takes the *oldest* admission instead of the newest."""

    def _victim(self) -> EdgeSequence:
        return self.running.pop(0)


class SkipBlockedHeadScheduler(BatchScheduler):
    """A wrong rule: a prompt that fits is admitted past a head of the queue that does not."""

    def schedule(self, s: float) -> Plan:
        plan = super().schedule(s)
        if len(self.waiting) >= 2 and not plan.preempted:
            head = self.waiting.popleft()
            self._admit(s, self.max_num_batched_tokens - plan.n_tokens, plan)
            self.waiting.appendleft(head)
        return plan


def runtime_log(
    arrivals: list[Arrival],
    pool_tokens: int,
    budget: int = 16,
    max_seqs: int = 8,
    scheduler: type[BatchScheduler] = BatchScheduler,
) -> EdgeRun:
    """An edge log as the runtime's loop writes it: take what arrived, schedule, run for
    :data:`SECONDS`, every sampling row getting token 7."""
    sched = scheduler(pool_tokens * BPT, BPT, budget, max_seqs, n_layers=N_LAYERS)
    pending = sorted(arrivals, key=lambda a: (a.arrival_s, a.request_id))
    iterations = []
    t = 0.0
    while pending or sched.has_work():
        while pending and pending[0].arrival_s <= t:
            a = pending.pop(0)
            ids = list(range(a.context_tokens + a.new_tokens))
            sched.submit(EdgeSequence(a.request_id, a.session, ids, a.output_tokens, a.keep, t), t)
        if not sched.has_ready():
            t = pending[0].arrival_s
            continue
        plan = sched.schedule(t)
        if not plan.sequences:
            if plan.preempted or plan.evicted:  # logged as cell_edge's empty_schedules are
                iterations.append(
                    RuntimeIteration(t, 0.0, [], len(plan.preempted), len(plan.evicted), [])
                )
            sched.finished.clear()
            t = pending[0].arrival_s if pending else t + SECONDS
            continue
        rows = [
            (n, r.computed, r.computed + n == r.known)
            for r, n in zip(plan.sequences, plan.tokens, strict=True)
        ]
        sampled = [7 if samples else None for _, _, samples in rows]
        sched.complete(plan, sampled, t + SECONDS)
        iterations.append(
            RuntimeIteration(
                t,
                SECONDS,
                rows,
                len(plan.preempted),
                len(plan.evicted),
                [r.request_id for r in plan.sequences],
            )
        )
        t += SECONDS
    return EdgeRun(N_LAYERS, KV_LAYER, pool_tokens * BPT, budget, max_seqs, arrivals, iterations)


def arrival(
    rid: int,
    t: float,
    new: int,
    out: int,
    session: int | None = None,
    ctx: int = 0,
    keep: bool = False,
) -> Arrival:
    return Arrival(rid, rid if session is None else session, t, ctx, new, out, keep)


# three long decodes filling a pool of 24 tokens: the newest is preempted, then re-admitted
PREEMPTING = [arrival(1, 0.0, 4, 6), arrival(2, 0.0, 4, 6), arrival(3, 0.0, 4, 6)]


def test_the_runtimes_own_schedule_agrees_with_the_simulators() -> None:
    run = runtime_log(PREEMPTING, pool_tokens=24)
    assert sum(it.preempted for it in run.iterations) >= 1  # the case exercises preemption
    d = diff_schedule(run)
    assert d.agrees and d.ids_compared and d.compared == len(run.iterations)
    assert d.preemptions[0] == d.preemptions[1] >= 1


# a long prompt holds most of the pool; the next head does not fit, a small one behind it would
BLOCKED_HEAD = [arrival(1, 0.0, 14, 8), arrival(2, 1.0, 12, 2), arrival(3, 1.0, 2, 2)]


@pytest.mark.parametrize(
    ("wrong", "arrivals"),
    [
        (OldestVictimScheduler, [*PREEMPTING, arrival(4, 0.0, 2, 2)]),
        (SkipBlockedHeadScheduler, BLOCKED_HEAD),
    ],
)
def test_a_different_rule_is_found_at_its_first_iteration(
    wrong: type[BatchScheduler], arrivals: list[Arrival]
) -> None:
    right = runtime_log(arrivals, pool_tokens=24)
    run = runtime_log(arrivals, pool_tokens=24, scheduler=wrong)
    assert diff_schedule(right).agrees
    first = next(
        i for i, (a, b) in enumerate(zip(right.iterations, run.iterations, strict=False)) if a != b
    )
    d = diff_schedule(run)
    assert not d.agrees and d.divergence is not None
    assert d.divergence.index == first and d.compared == first
    assert d.divergence.state["running"] or d.divergence.state["waiting"]


def test_a_log_with_a_changed_row_diverges_there_and_without_ids_by_shape() -> None:
    run = runtime_log(PREEMPTING, pool_tokens=24)
    its = list(run.iterations)
    n, c, s = its[3].rows[0]
    its[3] = RuntimeIteration(its[3].start_s, SECONDS, [(n + 1, c, s), *its[3].rows[1:]], 0, 0)
    shapes_only = [
        RuntimeIteration(i.start_s, SECONDS, i.rows, i.preempted, i.evicted) for i in its
    ]
    d = diff_schedule(EdgeRun(N_LAYERS, KV_LAYER, run.pool_bytes, 16, 8, run.arrivals, shapes_only))
    assert not d.ids_compared
    assert d.divergence is not None and d.divergence.index == 3
    assert d.divergence.what == "different batches"


def test_a_request_the_simulator_never_got_leaves_it_with_nothing_to_schedule() -> None:
    run = runtime_log([arrival(1, 0.0, 4, 2), arrival(2, 5.0, 4, 2)], pool_tokens=24)
    cut = EdgeRun(N_LAYERS, KV_LAYER, run.pool_bytes, 16, 8, run.arrivals[:1], run.iterations)
    d = diff_schedule(cut)
    assert d.divergence is not None and d.divergence.what == "the simulator has nothing to schedule"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 8),  # arrival (s)
            st.integers(1, 12),  # new tokens
            st.integers(1, 6),  # output tokens
            st.integers(0, 3),  # session
            st.booleans(),  # keep
        ),
        min_size=1,
        max_size=7,
    ),
    st.integers(12, 40),
    st.integers(4, 16),
)
# a decode that outgrows the whole pool: preempted (then rejected) in a schedule that runs nothing
@example([(0, 1, 1, 1, False), (0, 5, 1, 0, False), (0, 5, 3, 0, False), (0, 6, 1, 0, False),
          (7, 1, 1, 1, False)], 12, 4)  # fmt: skip
def test_property_the_runtimes_scheduler_and_the_simulators_agree(
    reqs: list[tuple[int, int, int, int, bool]], pool_tokens: int, budget: int
) -> None:
    """Any arrivals (sessions with kept KV claimed by later turns, a tight pool): the same
    schedule, iteration by iteration, with the runtime's instants and durations."""
    context: dict[int, int] = {}
    arrivals = []
    for rid, (t, new, out, session, keep) in enumerate(sorted(reqs)):
        ctx = context.get(session, 0)
        arrivals.append(arrival(rid, float(t), new, out, session, ctx, keep))
        context[session] = ctx + new + out
    run = runtime_log(arrivals, pool_tokens, budget)
    d = diff_schedule(run)
    assert d.agrees, d.divergence


def _write_level(folder: Path, run: EdgeRun) -> None:
    folder.mkdir(parents=True)
    iterations = [
        {
            "start_s": it.start_s,
            "measured_s": it.measured_s,
            "sequences": [list(r) for r in it.rows],
            "preempted": it.preempted,
            "evicted": it.evicted,
            "requests": it.request_ids,
        }
        for it in run.iterations
    ]
    requests = [
        {
            "request_id": a.request_id,
            "session": a.session,
            "arrival_s": a.arrival_s - 0.001,
            "taken_s": a.arrival_s,
            "split": 0,
        }
        for a in run.arrivals
    ]
    pool_tokens = run.pool_bytes // (N_LAYERS * run.kv_bytes_per_token_layer)
    log = {
        "t0": 0.0,
        "pool_bytes": pool_tokens * N_LAYERS * 8,
        "max_num_batched_tokens": 16,
        "max_num_seqs": 8,
        "iterations": iterations,
        "requests": requests,
        "steps": [],
        "drops": [],
    }
    (folder / "edge.json").write_text(json.dumps(log))
    shape = {"n_layers": N_LAYERS, "n_kv_heads": 1, "head_dim": 1}  # 2 x 1 x 1 x 4 = 8 bytes
    (folder / "device0-job.json").write_text(json.dumps({"arch": {"shape": shape}}))
    records = [
        {
            "request_id": a.request_id,
            "context_tokens": a.context_tokens,
            "new_tokens": a.new_tokens,
            "output_tokens": a.output_tokens,
            "keep": a.keep,
            "split": 0,
        }
        for a in run.arrivals
    ]
    (folder / "device0.json").write_text(json.dumps(records))


def test_a_run_folder_is_read_and_the_cli_exits_1_on_a_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kv_layer = 8  # the shape written by _write_level (the pool keeps its tokens)
    arrivals = [*PREEMPTING, arrival(4, 0.0, 2, 2)]
    good = runtime_log(arrivals, pool_tokens=24)
    bad = runtime_log(arrivals, pool_tokens=24, scheduler=OldestVictimScheduler)
    _write_level(tmp_path / "same" / "level0", good)
    _write_level(tmp_path / "diff" / "run0" / "level0", good)
    _write_level(tmp_path / "diff" / "run1" / "level0", bad)
    loaded = load_level(tmp_path / "same" / "level0")
    assert loaded.kv_bytes_per_token_layer == kv_layer and loaded.steps == []
    assert [a.arrival_s for a in loaded.arrivals] == [a.arrival_s for a in arrivals]  # taken_s
    diffs, lines = diff_run_folder(tmp_path / "diff")
    assert [d.agrees for d in diffs] == [True, False]
    assert lines[0].startswith("run0/level0") and any("FIRST DIVERGENCE" in x for x in lines)
    assert main(["validate", "--cell", "--diff-schedule", str(tmp_path / "same")]) == 0
    assert main(["validate", "--cell", "--diff-schedule", str(tmp_path / "diff")]) == 1
    out = capsys.readouterr().out
    assert "agree on all" in out and "FIRST DIVERGENCE" in out


def test_a_folder_without_an_edge_log_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--cell", "--diff-schedule", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no edge.json" in err and "Traceback" not in err
    with pytest.raises(ScheduleDiffError):
        diff_run_folder(tmp_path)
