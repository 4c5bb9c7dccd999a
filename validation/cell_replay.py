"""The cell runtime's requests replayed through ``EdgeCell-v0``'s simulator, same decisions.

:class:`~offload_rl.cell.simulator.CellSimulator` (the core ``envs/edge_cell.py`` wraps) runs
unmodified; only what a run of the runtime fixes is set on it: each device's link (its traces
and offset), the requests as the devices started them (session, tokens, start time), their
device, and the action each one got (recorded in the runtime: split 0, keep or not). Thermal
throttling and the radio's state machine are off (the runtime's devices are processes on a
paced loopback link, with no radio and no heat); the SLO class is the scenario's first. The
edge's pool and budgets are the run's configuration.

The edge is the simulator's :class:`~offload_rl.cell.edge_server.EdgeServer` with ``fast=False``
(every iteration through the general scheduler, the reference the fast path is tested against),
subclassed only to record each iteration's batch, tokens and priced seconds.

**Closed loop** (``closed_loop=True``, what ``validate --cell`` scores): a runtime device sends
one request at a time, due at its target time or when its previous request ends, whichever is
later. Replaying the runtime's *start* times open loop hands the simulator a load that the
runtime's own latencies shaped: a request the simulator finishes late still overlaps its
device's next one (which the runtime started only once it had ended), and one it finishes early
leaves a gap the runtime did not have, so back to back an error of a few percent per request
feeds itself through the queue (runs E and F: the simulator's same-device requests overlapped
by up to 4 s, or left up to 7 s idle). Closed loop, each device's request starts at
``max(target, the simulator's end of its previous request)`` plus the device-side lag the
runtime measured for it (its decision call and loop, milliseconds), which is the workload's own
rule applied to the simulator's times: nothing is fitted. The link is an input recorded per
request: each request reads its device's traces from the instant it started in the runtime
(the device's offset shifted by the difference), so that a start moved by the closed loop does
not move it into another stretch of the trace (an outage it did not meet, or the reverse).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.cell.config import CellConfig
from offload_rl.cell.edge_server import EdgeServer
from offload_rl.cell.simulator import CellRequest, CellSimulator
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import ResolvedScenario, scenario_facts
from offload_rl.traces import Trace
from offload_rl.workloads import Request

REPLAY_HORIZON_S = 24 * 3600.0  # advance this far past the last start: everything finishes


class RecordingEdgeServer(EdgeServer):
    """The simulator's edge, every iteration recorded: (start, batch size, tokens, seconds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[float, int, int, float]] = []
        self.failed_starts = 0  # schedules that found nothing to run (a blocked queue)

    def _start_iteration(self, s: float) -> bool:
        started = super()._start_iteration(s)
        self.failed_starts += not started
        return started

    def _batch_time(self) -> float:
        took = super()._batch_time()
        self.log.append((self.clock, self.last_batch_size, self.last_batch_tokens, took))
        return took

    def next_end_s(self) -> float | None:
        """When the iteration in flight ends (None: none is), the next instant a request
        can finish."""
        return self._iter_end if self._in_flight else None

    def next_start_s(self) -> float | None:
        """When the next iteration can start if none is in flight (None: nothing to run; a
        split request's round trip may hold it back)."""
        return None if self._in_flight else self._next_start()

    def wake_s(self, t: float) -> float | None:
        """The next round trip to end after ``t``: what can unblock a queue blocked at ``t``
        besides an arrival."""
        later = [r.ready_at for r in self._running if r.ready_at > t]
        return min(later) if later else None


@dataclass(frozen=True)
class DeviceLink:
    """One device's link in both worlds: its traces and its offset into them."""

    uplink: Trace
    downlink: Trace
    offset_s: float


@dataclass
class SimulatedCell:
    """What the simulator predicts for the replayed requests (in the records' order)."""

    requests: list[CellRequest]
    iterations: list[tuple[float, int, int, float]]
    preemptions: int
    evictions: int


def simulate(
    scenario: Scenario,
    records: Sequence[dict[str, Any]],
    links: Sequence[DeviceLink],
    batch_cost: BatchRoofline,
    pool_bytes: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    closed_loop: bool = False,
) -> SimulatedCell:
    """Replay ``records`` (the devices' request records, any order) through the simulator;
    ``closed_loop`` (records with ``target_s`` and ``latency_s``): see the module docstring."""
    facts = scenario_facts(scenario)
    resolved = ResolvedScenario(
        facts=facts, uplinks=[x.uplink for x in links], downlinks=[x.downlink for x in links]
    )
    cell = CellConfig(
        n_devices=len(links),
        kv_pool_bytes=float(pool_bytes),
        max_num_batched_tokens=max_num_batched_tokens,
        max_num_seqs=max_num_seqs,
        thermal=False,
        radio_state_machine=False,
    )
    sim = CellSimulator(resolved, cell, batch_cost=batch_cost)
    order = sorted(range(len(records)), key=lambda j: (records[j]["start_s"], j))
    sim.reset(np.random.default_rng(0), 1, 0, 0.0)
    sessions = {int(records[j]["session"]) for j in order}
    dense = {sid: i for i, sid in enumerate(sorted(sessions))}
    sim.requests = [_request(records[j], dense) for j in order]
    sim.device_of = [int(records[j]["device"]) for j in order]
    n = len(order)
    sim.private = [False] * len(dense)
    sim.slo_class = [0] * len(dense)
    sim.k_mem = [0] * n
    sim.cloud_queue = [0.0] * n
    for d, link in zip(sim.devices, links, strict=True):
        d.link = facts.link(link.uplink, link.downlink)
        d.uplink = d.link.uplink
        d.offset_s = link.offset_s
    edge = RecordingEdgeServer(
        batch_cost, int(pool_bytes), max_num_batched_tokens, max_num_seqs, fast=False
    )
    sim.edge = edge
    out: list[CellRequest | None] = [None] * n
    if closed_loop:
        last = _dispatch_closed_loop(sim, edge, records, order, out)
    else:
        for i, j in enumerate(order):
            rec = records[j]
            sim.advance(sim.requests[i].arrival_s)
            out[j] = sim.dispatch(i, int(rec["split"]), bool(rec["keep"]))
        last = sim.requests[-1].arrival_s if n else 0.0
    sim.advance(last + REPLAY_HORIZON_S)
    done = [cr for cr in out if cr is not None]
    return SimulatedCell(done, edge.log, edge.preemptions, edge.pool.evictions)


def device_lags(records: Sequence[dict[str, Any]]) -> dict[int, float]:
    """Per request id: how long after it was free to start (its target, or its device's
    previous request's end) the runtime's device started it: the decision call and the
    device's loop, as measured (never negative)."""
    lags: dict[int, float] = {}
    by_device: dict[int, list[dict[str, Any]]] = {}
    for rec in records:
        by_device.setdefault(int(rec["device"]), []).append(rec)
    for recs in by_device.values():
        prev_end = float("-inf")
        for rec in sorted(recs, key=lambda r: float(r["start_s"])):
            start = float(rec["start_s"])
            lags[int(rec["request_id"])] = max(start - max(float(rec["target_s"]), prev_end), 0.0)
            prev_end = start + float(rec["latency_s"])
    return lags


def _dispatch_closed_loop(
    sim: CellSimulator,
    edge: RecordingEdgeServer,
    records: Sequence[dict[str, Any]],
    order: Sequence[int],
    out: list[CellRequest | None],
) -> float:
    """Dispatch every request when its device is free in the simulator (module docstring);
    the cell is advanced no further than the next instant a request can finish, so that no
    device starts late. Returns the last start."""
    lags = device_lags(records)
    queues: dict[int, deque[int]] = {}
    for i, j in enumerate(order):  # per device, in the order the runtime's device ran them
        queues.setdefault(int(records[j]["device"]), deque()).append(i)
    base_offset = [d.offset_s for d in sim.devices]
    busy: dict[int, CellRequest] = {}  # device -> its request in flight in the simulator
    free_at = {d: float("-inf") for d in queues}
    last = t = 0.0
    blocked = False  # the last advance found the edge's queue blocked (nothing could run)
    while any(queues.values()):
        for d, cr in list(busy.items()):
            if cr.finish_s >= 0:
                free_at[d] = cr.finish_s
                del busy[d]
        due = [
            (max(float(records[order[q[0]]]["target_s"]), free_at[d]) + lags[
                int(records[order[q[0]]]["request_id"])], d)
            for d, q in queues.items()
            if q and d not in busy
        ]  # fmt: skip
        t_next, d_next = min(due) if due else (float("inf"), -1)
        step = _next_event(edge, t, busy, blocked)
        if step < t_next:
            t = step
            failed = edge.failed_starts
            sim.advance(t)
            blocked = edge.failed_starts > failed and edge.next_end_s() is None
            continue
        blocked = False
        t = last = max(t_next, t)
        sim.advance(t)
        i = queues[d_next].popleft()
        j = order[i]
        rec = records[j]
        sim.requests[i] = replace(sim.requests[i], arrival_s=t)
        # the link as this request saw it in the runtime: its trace read from its start there
        sim.devices[d_next].offset_s = base_offset[d_next] + float(rec["start_s"]) - t
        cr = sim.dispatch(i, int(rec["split"]), bool(rec["keep"]))
        out[j] = cr
        if cr.finish_s < 0 or cr.finish_s > t:
            busy[d_next] = cr
        else:
            free_at[d_next] = cr.finish_s
    return last


def _next_event(
    edge: RecordingEdgeServer, t: float, busy: dict[int, CellRequest], blocked: bool
) -> float:
    """The next instant after ``t`` at which a busy device's request may finish, or the
    edge's state change: the end of the iteration in flight, an iteration about to start (a
    queue ``blocked`` at ``t`` waits for a round trip's end or an arrival), a prompt reaching
    the edge, a request's last token reaching its device."""
    if not busy:
        return float("inf")
    end = edge.next_end_s()
    start = edge.next_start_s()
    cands = []
    if end is not None:
        cands.append(end)
    elif blocked:
        wake = edge.wake_s(t)
        if wake is not None:
            cands.append(wake)
    elif start is not None:  # advancing past it starts the iteration
        cands.append(start if start > t else math.nextafter(t, math.inf))
    for cr in busy.values():
        er = cr.edge
        if er is not None and er.status == "waiting" and er.admit_s < 0 and er.arrival_s > t:
            cands.append(er.arrival_s)  # still uploading
        if cr.finish_s > t:
            cands.append(cr.finish_s)
    later = [c for c in cands if c > t]
    return min(later) if later else math.nextafter(t, math.inf)


def _request(rec: dict[str, Any], dense: dict[int, int]) -> Request:
    return Request(
        arrival_s=float(rec["start_s"]),
        session_id=dense[int(rec["session"])],
        turn=int(rec["turn"]),
        new_tokens=int(rec["new_tokens"]),
        context_tokens=int(rec["context_tokens"]),
        output_tokens=int(rec["output_tokens"]),
        gap_to_next_turn_s=None,
    )
