"""Does the simulator's edge schedule what the runtime's edge scheduled, given the same times?

The cell validation's error back to back could be a *logic* difference between the runtime's
scheduler (:class:`~validation.runtime.batch_scheduler.BatchScheduler`, driving real tensors)
and the simulator's (:class:`~offload_rl.cell.edge_server.EdgeServer`), or *timing*: the same
rules, fed iterations a few percent apart, flipping which prompt a full pool blocks. This module
decides it from a run's logs alone (no transformer is run): the simulator's edge is driven in
lockstep with the runtime's edge log, every iteration starting at the instant the runtime's did,
lasting what it measured, with each request submitted at the time its prompt reached the
runtime's edge took it (logs from before that was recorded: when it reached the edge), each split
request's round trip ending when the runtime's edge took its ``STEP`` and each session's kept
entry dropped when it took the ``DROP``. Whatever the simulator then schedules differently is a
difference of rules.

Compared per iteration: each row's new tokens, context (tokens with KV before the iteration)
and whether it samples, in the scheduler's order (decodes, prefill chunks, admissions); the
number of preemptions and evictions; and the request ids where the runtime logged them (its
logs from before they were recorded compare by shape). The first divergence is reported with
both sides and the simulator's queue, running set and pool at that instant. A schedule of the
runtime that ran nothing but preempted or evicted (a decode that found no room, the only other
row waiting for its round trip) is logged apart (``empty_schedules``) and compared as an
iteration with no rows.

Split requests (``k > 0``) wait for their round trips: a log from before the edge recorded its
``STEP`` frames cannot be diffed with split requests in it (:class:`ScheduleDiffError`).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from offload_rl.errors import OffloadRLError

Row = tuple[int, int, bool]  # new tokens, context before the iteration, samples
KV_DTYPE_BYTES = 4  # the runtime keeps float32 keys and values (validation/runtime/cell_edge.py)


class ScheduleDiffError(OffloadRLError):
    """A run folder the diff cannot read (missing log, split requests)."""


@dataclass(frozen=True)
class RuntimeIteration:
    """One iteration of the runtime's edge log."""

    start_s: float
    measured_s: float
    rows: list[Row]
    preempted: int
    evicted: int
    request_ids: list[int] | None = None  # logged since the diff exists


@dataclass(frozen=True)
class Arrival:
    """A request as it reached the runtime's edge (its time on the edge's clock)."""

    request_id: int
    session: int
    arrival_s: float
    context_tokens: int
    new_tokens: int
    output_tokens: int
    keep: bool
    split: int = 0


@dataclass(frozen=True)
class EdgeRun:
    """One load level's edge: its configuration, arrivals and iterations."""

    n_layers: int
    kv_bytes_per_token_layer: int
    pool_bytes: int
    max_num_batched_tokens: int
    max_num_seqs: int
    arrivals: list[Arrival]
    iterations: list[RuntimeIteration]
    steps: list[tuple[int, float]] | None = None  # (request id, when taken) per STEP frame
    drops: list[tuple[int, float]] = field(default_factory=list)  # (session, when taken)


@dataclass(frozen=True)
class Divergence:
    """The first iteration the two schedulers disagree on, both sides and the sim's state."""

    index: int
    start_s: float
    runtime: RuntimeIteration | None  # None: the runtime had no such iteration
    simulated_rows: list[Row]
    simulated_ids: list[int]
    simulated_preempted: int
    simulated_evicted: int
    state: dict[str, Any]
    what: str


@dataclass
class ScheduleDiff:
    """The lockstep replay's verdict on one level."""

    iterations: int  # runtime iterations
    compared: int  # iterations that agreed before the first divergence (all if none)
    divergence: Divergence | None
    preemptions: tuple[int, int]  # runtime, simulated (over the compared prefix and beyond)
    evictions: tuple[int, int]
    ids_compared: bool
    notes: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return self.divergence is None


class LockstepEdgeServer(EdgeServer):
    """The simulator's edge, told when each iteration starts and how long it takes."""

    def __init__(self, run: EdgeRun) -> None:
        zero = 0.0  # never priced: every iteration lasts what the runtime measured
        cost = BatchRoofline(
            run.n_layers, run.kv_bytes_per_token_layer, zero, zero, zero, zero, zero, zero,
            zero, zero, zero,
        )  # fmt: skip
        super().__init__(
            cost,
            run.pool_bytes,
            run.max_num_batched_tokens,
            run.max_num_seqs,
            fast=False,
            compiled=False,
        )
        self._seconds = 0.0
        self.by_id: dict[int, EdgeRequest] = {}
        self.last_rows: list[Row] = []
        self.last_ids: list[int] = []

    def run_iteration(self, s: float, seconds: float) -> bool:
        """Schedule at ``s`` and complete the batch ``seconds`` later; False if nothing ran."""
        self.clock = max(self.clock, s)  # the runtime's instant (its previous batch ended)
        self._seconds = seconds
        if not self._start_iteration(s):
            self.last_rows, self.last_ids = [], []
            return False
        self._complete_iteration()
        return True

    def step_arrived(self, request_id: int, t: float) -> None:
        """A split request's next input came up at ``t``: it may decode from then on."""
        self.by_id[request_id].ready_at = t

    def _batch_time(self) -> float:
        self.last_rows = [
            (n, r.computed, r.computed + n == r.known)
            for r, n in zip(self._sched, self._sched_n, strict=True)
        ]
        self.last_ids = [r.request_id for r in self._sched]
        self.last_batch_size = len(self._sched)
        self.last_batch_tokens = sum(self._sched_n)
        return self._seconds

    def describe(self) -> dict[str, Any]:
        """The queue, the running set and the pool, for a divergence report."""

        def row(r: EdgeRequest) -> dict[str, Any]:
            return {
                "request_id": r.request_id,
                "session": r.session_id,
                "known": r.known,
                "computed": r.computed,
                "generated": r.generated,
                "preemptions": r.preemptions,
            }

        pool = self._kv
        return {
            "running": [row(r) for r in self._running],
            "waiting": [row(r) for r in self._waiting],
            "pool_free_bytes": pool.free_bytes,
            "pool_kept_bytes": pool.kept_bytes,
            "pool_capacity_bytes": pool.capacity_bytes,
        }


def diff_schedule(run: EdgeRun) -> ScheduleDiff:
    """Replay ``run``'s arrivals through the simulator's edge in lockstep with its iterations."""
    if run.steps is None and any(a.split for a in run.arrivals):
        raise ScheduleDiffError(
            "the level has split requests and its edge log no STEP times (an older run)"
        )
    server = LockstepEdgeServer(run)
    events: list[tuple[float, int, int, Arrival | None]] = [
        (a.arrival_s, 0, a.request_id, a) for a in run.arrivals
    ]
    events += [(t, 1, rid, None) for rid, t in run.steps or []]
    events += [(t, 2, sid, None) for sid, t in run.drops]
    pending: deque[Event] = deque(sorted(events, key=lambda e: (e[0], e[1], e[2])))
    ids_compared = bool(run.iterations) and all(it.request_ids is not None for it in run.iterations)
    runtime_pre = runtime_ev = 0
    divergence = None
    compared = 0
    for i, it in enumerate(run.iterations):
        _submit_until(server, pending, it.start_s)
        pre, ev = server.preemptions, server.pool.evictions
        ran = server.run_iteration(it.start_s, it.measured_s)
        runtime_pre += it.preempted
        runtime_ev += it.evicted
        sim_pre, sim_ev = server.preemptions - pre, server.pool.evictions - ev
        what = _difference(it, ran, server, sim_pre, sim_ev, ids_compared)
        if what:
            divergence = Divergence(
                i, it.start_s, it, server.last_rows, server.last_ids, sim_pre, sim_ev,
                server.describe(), what,
            )  # fmt: skip
            break
        compared += 1
    if divergence is None:
        end = run.iterations[-1].start_s + run.iterations[-1].measured_s if run.iterations else 0
        _submit_until(server, pending, float("inf"))
        state = server.describe()
        if server.run_iteration(max(end, server.clock), 0.0) or pending:
            divergence = Divergence(
                len(run.iterations), end, None, server.last_rows, server.last_ids, 0, 0, state,
                "the simulator has work left after the runtime's last iteration",
            )  # fmt: skip
    return ScheduleDiff(
        iterations=len(run.iterations),
        compared=compared,
        divergence=divergence,
        preemptions=(runtime_pre, server.preemptions),
        evictions=(runtime_ev, server.pool.evictions),
        ids_compared=ids_compared,
    )


Event = tuple[float, int, int, "Arrival | None"]  # time, kind (request, step, drop), id, request
NEVER_S = 1e18  # a split request's round trip ends when the log's STEP says, not by itself


def _submit_until(server: LockstepEdgeServer, pending: deque[Event], t: float) -> None:
    """Everything the runtime's edge took before it scheduled at ``t``, in its order: requests
    submitted, split requests' round trips ended, sessions' kept entries dropped."""
    while pending and pending[0][0] <= t:
        when, kind, key, a = pending.popleft()
        if kind == 1:
            server.step_arrived(key, when)
            continue
        if kind == 2:
            server.pool.drop(key)
            continue
        assert a is not None
        req = EdgeRequest(
            request_id=a.request_id,
            session_id=a.session,
            split=a.split,
            arrival_s=a.arrival_s,
            context_tokens=a.context_tokens,
            new_tokens=a.new_tokens,
            output_tokens=a.output_tokens,
            keep=a.keep,
            round_trip_s=NEVER_S,
        )
        server.by_id[a.request_id] = req
        server.submit(req, max(a.arrival_s, server.clock))


def _difference(
    it: RuntimeIteration,
    ran: bool,
    server: LockstepEdgeServer,
    preempted: int,
    evicted: int,
    ids_compared: bool,
) -> str:
    """What differs in this iteration ('' if nothing)."""
    if not it.rows:  # the runtime's schedule ran nothing (it preempted or evicted)
        if ran:
            return "the simulator ran a batch where the runtime's schedule ran nothing"
    elif not ran:
        return "the simulator has nothing to schedule"
    if server.last_rows != it.rows:
        return "different batches"
    if ids_compared and server.last_ids != it.request_ids:
        return "same shapes, different requests"
    if preempted != it.preempted:
        return "different preemptions"
    if evicted != it.evicted:
        return "different evictions"
    return ""


# --- reading a run folder ------------------------------------------------------------------


def load_level(folder: Path) -> EdgeRun:
    """A level folder of ``validate --cell`` (``edge.json``, ``device<d>.json``,
    ``device<d>-job.json``): the edge's iterations and every request as it reached the edge."""
    edge_path = folder / "edge.json"
    if not edge_path.is_file():
        raise ScheduleDiffError(f"{edge_path}: no edge log (not a validate --cell level folder)")
    log = json.loads(edge_path.read_text())
    records: dict[int, dict[str, Any]] = {}
    arch: dict[str, Any] | None = None
    for path in sorted(folder.glob("device*.json")):
        if path.name.endswith("-job.json"):
            if arch is None:
                arch = json.loads(path.read_text())["arch"]["shape"]
            continue
        for rec in json.loads(path.read_text()):
            records[int(rec["request_id"])] = rec
    if arch is None:
        raise ScheduleDiffError(f"{folder}: no device<d>-job.json (the model's shape)")
    arrivals = []
    for er in log["requests"]:
        rid = int(er["request_id"])
        rec = records.get(rid)
        if rec is None:
            raise ScheduleDiffError(f"{folder}: request {rid} is in edge.json, in no device log")
        arrivals.append(
            Arrival(
                request_id=rid,
                session=int(er["session"]),
                arrival_s=float(
                    er["taken_s"] if er.get("taken_s") is not None else er["arrival_s"]
                ),
                context_tokens=int(rec["context_tokens"]),
                new_tokens=int(rec["new_tokens"]),
                output_tokens=int(rec["output_tokens"]),
                keep=bool(rec["keep"]),
                split=int(rec.get("split", 0)),
            )
        )
    iterations = [
        RuntimeIteration(
            start_s=float(it["start_s"]),
            measured_s=float(it["measured_s"]),
            rows=[(int(n), int(c), bool(s)) for n, c, s in it["sequences"]],
            preempted=int(it["preempted"]),
            evicted=int(it["evicted"]),
            request_ids=[int(x) for x in it["requests"]] if "requests" in it else None,
        )
        for it in log["iterations"]
    ]
    empty = [
        RuntimeIteration(float(e["start_s"]), 0.0, [], int(e["preempted"]), int(e["evicted"]), [])
        for e in log.get("empty_schedules", [])
    ]
    iterations = sorted(iterations + empty, key=lambda it: it.start_s)
    return EdgeRun(
        n_layers=int(arch["n_layers"]),
        kv_bytes_per_token_layer=2 * int(arch["n_kv_heads"]) * int(arch["head_dim"])
        * KV_DTYPE_BYTES,
        pool_bytes=int(log["pool_bytes"]),
        max_num_batched_tokens=int(log["max_num_batched_tokens"]),
        max_num_seqs=int(log["max_num_seqs"]),
        arrivals=arrivals,
        iterations=iterations,
        steps=[(int(r), float(t)) for r, _, t in log["steps"]] if "steps" in log else None,
        drops=[(int(sid), float(t)) for sid, t in log.get("drops", [])],
    )  # fmt: skip


def level_folders(path: Path) -> list[Path]:
    """``path`` itself if it is a level folder, else its ``level<i>`` folders, or with repeats
    its ``run<r>/level<i>`` folders (run-major, as ``validation.json`` lists them)."""
    if (path / "edge.json").is_file():
        return [path]

    def numbered(parent: Path, prefix: str) -> list[Path]:
        found = [p for p in parent.glob(f"{prefix}*") if p.name[len(prefix) :].isdigit()]
        return sorted(found, key=lambda p: int(p.name[len(prefix) :]))

    levels = [p for p in numbered(path, "level") if (p / "edge.json").is_file()]
    if not levels:
        levels = [
            p
            for run in numbered(path, "run")
            for p in numbered(run, "level")
            if (p / "edge.json").is_file()
        ]
    if not levels:
        raise ScheduleDiffError(
            f"{path}: no edge.json here nor in level*/ or run*/level*/ (a validate --cell --out)"
        )
    return levels


def format_diff(name: str, d: ScheduleDiff) -> list[str]:
    """A few lines for one level: the verdict, and the first divergence with both sides."""
    by = "request ids and shapes" if d.ids_compared else "shapes (no request ids in this log)"
    lines = [
        f"{name}: {d.iterations} runtime iterations; compared by {by}; preemptions runtime "
        f"{d.preemptions[0]} / simulated {d.preemptions[1]}, evictions {d.evictions[0]} / "
        f"{d.evictions[1]}"
    ]
    if d.divergence is None:
        lines.append(
            f"  the schedules agree on all {d.compared} iterations: same rules, so what is left "
            "is timing"
        )
        return lines
    v = d.divergence
    lines.append(
        f"  FIRST DIVERGENCE at iteration {v.index} (t = {v.start_s:.3f} s, after "
        f"{d.compared} agreeing): {v.what}"
    )
    if v.runtime is not None:
        lines.append(
            f"    runtime:   rows {v.runtime.rows} ids {v.runtime.request_ids} preempted "
            f"{v.runtime.preempted} evicted {v.runtime.evicted}"
        )
    lines.append(
        f"    simulator: rows {v.simulated_rows} ids {v.simulated_ids} preempted "
        f"{v.simulated_preempted} evicted {v.simulated_evicted}"
    )
    lines.append(f"    simulator state: {json.dumps(v.state)}")
    return lines


def diff_run_folder(path: Path) -> tuple[list[ScheduleDiff], list[str]]:
    """Every level under ``path``: the diffs and their report lines."""
    diffs, lines = [], []
    for folder in level_folders(path):
        d = diff_schedule(load_level(folder))
        diffs.append(d)
        name = folder.name if folder.parent == path else f"{folder.parent.name}/{folder.name}"
        lines.extend(format_diff(name, d))
    return diffs, lines


def all_agree(diffs: Sequence[ScheduleDiff]) -> bool:
    return all(d.agrees for d in diffs)
