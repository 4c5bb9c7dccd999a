"""The edge outlook against a hand-built edge server: the delay one request imposes on a batch."""

from __future__ import annotations

import pytest

from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from offload_rl.cell_heuristics.edge_outlook import EdgeBatchModel, EdgeView
from offload_rl.cell_heuristics.predictor import edge_roofline
from offload_rl.scenario import load_scenario

POOL = 10**12  # no memory pressure: the outlook leaves preemption out
JOIN_S = 2.0  # the newcomer arrives once every other request is decoding


def _server(others: list[tuple[int, int, int]]) -> EdgeServer:
    """An edge server with ``(context, new, output)`` token-id requests admitted at 0."""
    server = EdgeServer(edge_roofline(load_scenario("cell")), POOL)
    for i, (ctx, new, out) in enumerate(others):
        server.submit(EdgeRequest(i, i, 0, 0.0, ctx, new, out), 0.0)
    return server


def _finish_times(server: EdgeServer, newcomer: EdgeRequest | None) -> dict[int, float]:
    server.advance(JOIN_S)
    if newcomer is not None:
        server.submit(newcomer, JOIN_S)
    server.advance(1e6)
    return {r.request_id: r.finish_s for r in server.pop_finished()}


@pytest.mark.parametrize(
    ("others", "prompt", "output"),
    [
        ([(0, 200, 400)] * 3, 300, 60),
        ([(500, 100, 300), (1500, 50, 500), (0, 800, 350), (200, 20, 600)], 1200, 120),
        ([(0, 100, 700)] * 8, 3000, 40),  # a prompt longer than one chunk
        ([(0, 100, 700)] * 8, 2045, 40),  # one chunk alone, two beside 8 decodes
    ],
)
def test_externality_equals_the_measured_extra_delay_of_the_others(others, prompt, output):
    """Tolerance 1% (it agrees to 1e-12 here): the outlook prices the newcomer's chunks and
    decode steps next to a batch of the mean context (exact for the roofline, which is linear
    in context) and leaves out where in an iteration the newcomer lands; every other request
    here outlives it. Its own
    extra time is looser (10%): it lands mid-iteration, which the outlook takes as half one."""
    base = _finish_times(_server(others), None)
    server = _server(others)
    server.advance(JOIN_S)
    state = server.state()
    assert state.n_running == len(others) and state.n_waiting == 0
    view = EdgeView(state.n_waiting, state.waiting_tokens, state.n_running, state.running_tokens)
    model = EdgeBatchModel(server.cost, server.max_num_batched_tokens)
    outlook = model.outlook(view, 0, prompt, 0, output, others_remaining=10**6)
    newcomer = EdgeRequest(99, 99, 0, JOIN_S, 0, prompt, output)
    server.submit(newcomer, JOIN_S)
    server.advance(1e6)
    after = {r.request_id: r.finish_s for r in server.pop_finished()}
    measured = sum(after[i] - base[i] for i in base)
    assert measured > 0
    assert outlook.externality_s == pytest.approx(measured, rel=0.01)
    # and the newcomer's own extra time in the batch: its time beside the batch minus alone
    alone = EdgeServer(server.cost, POOL)
    alone.submit(EdgeRequest(99, 99, 0, 0.0, 0, prompt, output), 0.0)
    alone.advance(1e6)
    (solo,) = alone.pop_finished()
    extra = (after[99] - JOIN_S) - solo.finish_s
    predicted = outlook.wait_s + outlook.prefill_extra_s + outlook.decode_extra_s
    assert predicted == pytest.approx(extra, rel=0.1, abs=0.02)


def test_no_batch_means_no_externality_and_no_extra_time():
    model = EdgeBatchModel(edge_roofline(load_scenario("cell")), 2048)
    outlook = model.outlook(EdgeView(0, 0, 0, 0), 0, 500, 0, 100, others_remaining=100)
    assert outlook.externality_s == 0.0
    assert outlook.wait_s == outlook.prefill_extra_s == outlook.decode_extra_s == 0.0
