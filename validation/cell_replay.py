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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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

    def _batch_time(self) -> float:
        took = super()._batch_time()
        self.log.append((self.clock, self.last_batch_size, self.last_batch_tokens, took))
        return took


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
) -> SimulatedCell:
    """Replay ``records`` (the devices' request records, any order) through the simulator."""
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
    for i, j in enumerate(order):
        rec = records[j]
        sim.advance(sim.requests[i].arrival_s)
        out[j] = sim.dispatch(i, int(rec["split"]), bool(rec["keep"]))
    last = sim.requests[-1].arrival_s if n else 0.0
    sim.advance(last + REPLAY_HORIZON_S)
    done = [cr for cr in out if cr is not None]
    return SimulatedCell(done, edge.log, edge.preemptions, edge.pool.evictions)


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
