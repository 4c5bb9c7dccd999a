"""The cell validation's simulator side: recorded requests and decisions through CellSimulator."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import pytest

from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.traces import BYTES_PER_MBIT, Trace
from validation.cell_replay import DeviceLink, device_lags, simulate
from validation.cell_run import NO_CLOUD_QUEUE_S, cell_scenario
from validation.decisions import validation_scenario

RTT_MS = 20.0
MBPS = 8.0
KV_LAYER = 100  # bytes per token of one layer


def _profile_path() -> Path:
    resource = importlib.resources.files("offload_rl") / "data" / "profiles" / "gpt2@cpu-2core.json"
    assert isinstance(resource, Path)
    return resource


def _unit_cost() -> BatchRoofline:
    """Every iteration takes 1 s, whatever it holds (12 layers, as gpt2)."""
    return BatchRoofline(12, KV_LAYER, 1.0 / 12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _record(
    rid: int, device: int, start: float, new: int, out: int, keep: bool = False
) -> dict[str, Any]:
    return {
        "request_id": rid,
        "device": device,
        "session": 1000 * device + rid,
        "turn": 0,
        "new_tokens": new,
        "context_tokens": 0,
        "output_tokens": out,
        "start_s": start,
        "split": 0,
        "keep": keep,
    }


def _run(records: list[dict[str, Any]], n_devices: int, pool_tokens: int = 10_000) -> Any:
    scenario = cell_scenario(validation_scenario(_profile_path(), ["constant:8"], RTT_MS))
    link = Trace.constant(MBPS, duration_s=600.0)
    links = [DeviceLink(link, link, 10.0) for _ in range(n_devices)]
    return simulate(scenario, records, links, _unit_cost(), pool_tokens * 12 * KV_LAYER, 256, 64)


def test_only_the_edge_is_a_valid_placement() -> None:
    """The cloud is out of reach, no outage is declared, the devices hold no layer: the
    greedy heuristic (the service's fallback) places at k = 0 even on a dead link."""
    from offload_rl.actions import ActionLayout
    from offload_rl.device_view import SessionMemory
    from offload_rl.features import action_mask
    from offload_rl.heuristics import make_heuristic
    from offload_rl.scenario_facts import scenario_facts
    from validation.decisions import device_state
    from validation.request_stream import ReplayRequest

    scenario = cell_scenario(validation_scenario(_profile_path(), ["constant:8"], RTT_MS))
    assert scenario.cloud.queue_s == NO_CLOUD_QUEUE_S
    facts = scenario_facts(scenario)
    greedy = make_heuristic("greedy", scenario)
    req = ReplayRequest(0, 0.0, 0, 0, 300, 0, 30)
    for mbps in (0.0, 1.0, 50.0):
        link = Trace.constant(mbps, duration_s=600.0) if mbps else Trace.constant(1e-9, 600.0)
        state = device_state(
            req, link, 100.0, (None, 0), facts, SessionMemory(), device_memory_layers=0
        )
        mask = action_mask(state, facts.spec)
        k, _ = ActionLayout(12).decode(int(greedy.act(state, mask)))
        assert k == 0


def test_one_request_alone_costs_upload_iterations_and_the_rtt() -> None:
    sim = _run([_record(0, 0, 5.0, new=100, out=3)], 1)
    (cr,) = sim.requests
    arrive = 100 * 4 / (MBPS * BYTES_PER_MBIT) + RTT_MS / 2000  # ids up, then half the RTT
    assert cr.ttft_s == pytest.approx(arrive + 1.0 + RTT_MS / 2000)  # one prefill iteration
    assert cr.latency_s == pytest.approx(arrive + 3.0 + RTT_MS / 2000)  # two decodes more
    assert [b for _, b, _, _ in sim.iterations] == [1, 1, 1]


def test_devices_that_start_together_share_iterations() -> None:
    sim = _run([_record(0, 0, 5.0, 100, 3), _record(1, 1, 5.0, 100, 3)], 2)
    assert [b for _, b, _, _ in sim.iterations] == [2, 2, 2]
    assert [cr.request.session_id for cr in sim.requests] == [0, 1]  # the records' order


def test_a_small_pool_preempts() -> None:
    records = [_record(i, i, 5.0, 100, 20) for i in range(3)]
    sim = _run(records, 3, pool_tokens=320)
    assert sim.preemptions >= 1
    assert sum(cr.preempted for cr in sim.requests) == sim.preemptions


def test_the_diagnostic_slowdown_prices_each_row_at_its_split() -> None:
    from validation.cell_run import measured_slowdown

    cost = BatchRoofline(12, KV_LAYER, 1e-3, 1e-6, 2e-4, 1e-8, 1e-5, 1e-7, 0.01, 0.004, 1e-7)
    batches = [[(8, 1, 100, True), (0, 1, 300, True)], [(4, 64, 0, False)]]
    iterations = [
        {
            "measured_s": 2.0 * cost.iteration_s(b),
            "sequences": [[n, c, s] for _, n, c, s in b],
            "splits": [k for k, *_ in b],
        }
        for b in batches
    ]
    assert measured_slowdown(iterations, cost) == pytest.approx(2.0)


def test_the_diagnostic_slowdown_scales_every_iteration() -> None:
    from validation.cell_run import measured_slowdown, scaled

    cost = BatchRoofline(12, KV_LAYER, 1e-3, 1e-6, 2e-4, 1e-8, 1e-5, 1e-7, 0.01, 0.004, 1e-7)
    batches = [[(0, 1, 100, True), (0, 1, 300, True)], [(0, 256, 0, False)], [(0, 3, 50, True)]]
    iterations = [
        {"measured_s": 3.0 * cost.iteration_s(b), "sequences": [[n, c, s] for _, n, c, s in b]}
        for b in batches
    ]
    assert measured_slowdown(iterations, cost) == pytest.approx(3.0)
    slow = scaled(cost, 3.0)
    for b in batches:
        assert slow.iteration_s(b) == pytest.approx(3.0 * cost.iteration_s(b))
    assert slow.kv_bytes_per_token_layer == cost.kv_bytes_per_token_layer


def _closed(
    rid: int, device: int, target: float, start: float, latency: float, out: int
) -> dict[str, Any]:
    """A record of a closed-loop device: due at ``target``, started at ``start`` in the
    runtime, which measured ``latency``."""
    return {**_record(rid, device, start, 100, out), "target_s": target, "latency_s": latency}


def _run_loop(records: list[dict[str, Any]], n_devices: int, closed: bool) -> Any:
    scenario = cell_scenario(validation_scenario(_profile_path(), ["constant:8"], RTT_MS))
    link = Trace.constant(MBPS, duration_s=600.0)
    links = [DeviceLink(link, link, 10.0) for _ in range(n_devices)]
    pool = 10_000 * 12 * KV_LAYER
    return simulate(scenario, records, links, _unit_cost(), pool, 256, 64, closed_loop=closed)


def test_device_lags_are_what_the_runtime_waited_after_a_device_was_free() -> None:
    records = [
        _closed(0, 0, 0.0, 0.02, 10.0, 3),  # due at 0, decided in 20 ms
        _closed(1, 0, 0.0, 10.05, 4.0, 3),  # due at 0, free at 10.02: 30 ms
        _closed(2, 0, 20.0, 20.01, 1.0, 3),  # due at 20 after the previous ended: 10 ms
        _closed(3, 1, 5.0, 4.0, 1.0, 3),  # started before its target (never negative)
    ]
    lags = device_lags(records)
    assert lags == pytest.approx({0: 0.02, 1: 0.03, 2: 0.01, 3: 0.0})


def test_closed_loop_starts_a_devices_next_request_when_the_simulator_ends_it() -> None:
    """The runtime measured the first request at 10 s (so its device started the second at
    10.05 s); the simulator ends it sooner: closed loop, the second starts then (plus the
    runtime's 30 ms lag), not at 10.05 s; open loop, at 10.05 s."""
    records = [_closed(0, 0, 0.0, 0.02, 10.0, 3), _closed(1, 0, 0.0, 10.05, 4.0, 3)]
    closed = _run_loop(records, 1, closed=True)
    first, second = closed.requests
    assert first.request.arrival_s == pytest.approx(0.02)
    assert first.finish_s < 6.0
    assert second.request.arrival_s == pytest.approx(first.finish_s + 0.03)
    assert second.latency_s == pytest.approx(first.latency_s)  # the same request, alone
    opened = _run_loop(records, 1, closed=False)
    assert opened.requests[1].request.arrival_s == pytest.approx(10.05)


def test_closed_loop_keeps_a_target_after_the_previous_end() -> None:
    records = [_closed(0, 0, 0.0, 0.0, 1.0, 3), _closed(1, 0, 30.0, 30.002, 1.0, 3)]
    closed = _run_loop(records, 1, closed=True)
    assert closed.requests[1].request.arrival_s == pytest.approx(30.002)


def test_closed_loop_overlaps_devices_as_the_simulator_times_them() -> None:
    """Two devices back to back: the second device's next request waits for its own
    previous one in the simulator, so the two devices' requests share iterations."""
    records = [
        _closed(0, 0, 0.0, 0.0, 50.0, 3),
        _closed(1, 0, 0.0, 50.0, 50.0, 3),
        _closed(2, 1, 0.0, 0.0, 50.0, 3),
        _closed(3, 1, 0.0, 50.0, 50.0, 3),
    ]
    closed = _run_loop(records, 2, closed=True)
    assert [b for _, b, _, _ in closed.iterations] == [2] * 6
    assert max(cr.finish_s for cr in closed.requests) < 10.0
