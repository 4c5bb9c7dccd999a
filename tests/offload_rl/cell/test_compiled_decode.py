"""The compiled scheduler computes, bit for bit, what the Python scheduler computes.

:mod:`offload_rl.cell.compiled_scheduler` runs ``EdgeServer.advance`` whole in machine code on a
``SequenceTable`` when numba is installed (the ``fast`` extra). The Python scheduler is the
reference: both are driven through the
same random arrivals as ``test_edge_server_fast.py`` (splits, keeps, sessions whose turns overlap,
round trips, full pools, budgets, horizons that leave an iteration in flight) and whole cells
under random valid actions, and every value must be *equal*, floats included (no tolerance: the
compiled scheduler does the same IEEE operations in the same order).
"""

from __future__ import annotations

import copy
import functools
import operator
import os
import subprocess
import sys
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings

import offload_rl.cell.simulator as simulator
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from offload_rl.cell.kv_pool import KVPool
from tests.envs.cell_helpers import cell_scenario
from tests.offload_rl.cell.test_edge_server_fast import (
    COST,
    KV_TOKEN,
    SPLIT_PREEMPTED_IN_ROUND_TRIP,
    _snapshot,
    arrivals,
    drive_and_compare,
    server_sizes,
)

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the compiled scheduler's calls (a guard: the comparisons must exercise it): the
    server's own, and the compiled simulator's (its advance runs the scheduler's kernel)."""
    calls = [0]
    kernel = EdgeServer._advance_compiled
    cell_kernel = simulator.CellSimulator._advance_cell

    def counted(self: EdgeServer, t: float) -> None:
        calls[0] += 1
        kernel(self, t)

    def cell_counted(
        self: simulator.CellSimulator, kernels: ModuleType, t: float, collect: bool
    ) -> tuple[float, float, float]:
        calls[0] += 1
        return cell_kernel(self, kernels, t, collect)

    monkeypatch.setattr(EdgeServer, "_advance_compiled", counted)
    monkeypatch.setattr(simulator.CellSimulator, "_advance_cell", cell_counted)
    return calls


@settings(max_examples=100, deadline=None)
@given(arrivals, *server_sizes)
@example(*SPLIT_PREEMPTED_IN_ROUND_TRIP)  # preempted during its round trip, then re-admitted
def test_the_compiled_loop_equals_the_python_loop(reqs, pool_tokens, budget, seqs):
    servers = [
        EdgeServer(COST, pool_tokens * KV_TOKEN, budget, seqs, compiled=compiled)
        for compiled in (False, True)
    ]
    assert not servers[0].compiled and servers[1].compiled
    drive_and_compare(servers, reqs, operator.eq)  # equal: floats to the last bit
    assert servers[0].closed_form_iterations == servers[1].closed_form_iterations


@pytest.mark.parametrize("pool_tokens", [230, 260, 400])  # full mid-run (preempts); roomy
def test_turns_of_one_session_that_keep_free_each_others_entry(monkeypatch, pool_tokens):
    """Two running turns of one session both keep: the second finish frees the first's entry
    (not its own bytes, which stay kept), then the others decode into a pool that fills."""
    calls = _counting(monkeypatch)
    servers = [EdgeServer(COST, pool_tokens * KV_TOKEN, compiled=c) for c in (False, True)]
    for server in servers:
        for rid, (k, out) in enumerate(((3, 12), (3, 30), (0, 90), (5, 60))):
            server.submit(
                EdgeRequest(rid, rid % 2, k, 0.0, 0, 40, out, keep=True, round_trip_s=0.004),
                0.0,
            )
        for horizon in (0.05, 0.4, 3.0):
            server.advance(horizon)
    assert calls[0] > 0
    assert servers[1].pool.n_kept == 2
    assert servers[1].pool.evictions + servers[1].preemptions > 0 or pool_tokens == 400
    assert _snapshot(servers[0], 3.0) == _snapshot(servers[1], 3.0)


def _episode(
    monkeypatch: pytest.MonkeyPatch, compiled: bool, n_devices: int, pool_tokens: int | None
) -> list[Any]:
    monkeypatch.setattr(simulator, "EdgeServer", functools.partial(EdgeServer, compiled=compiled))
    if pool_tokens is None:
        env = EdgeCellEnv(n_devices=n_devices, episode_requests=200)
    else:
        probe = EdgeCellEnv(n_devices=n_devices)
        token_bytes = probe.sim.batch_cost.n_layers * probe.sim.batch_cost.kv_bytes_per_token_layer
        sc = cell_scenario(n_devices=n_devices, kv_pool_bytes=float(pool_tokens * token_bytes))
        env = EdgeCellEnv(sc, episode_requests=200)
    obs, info = env.reset(seed=n_devices)
    rng = np.random.default_rng(n_devices)
    rows: list[Any] = [obs.tobytes(), info]
    for _ in range(200):
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, reward, _, _, info = env.step(action)
        rows.append((obs.tobytes(), float(reward).hex(), info))
    edge = env.sim.edge
    rows.append((edge.iterations, edge.closed_form_iterations, edge.preemptions, edge.busy_s))
    return rows


@pytest.mark.parametrize(
    ("n_devices", "pool_tokens"),
    [(8, None), (32, None), (32, 4000)],  # the default pool; one that evicts and preempts
)
def test_cells_play_the_same_episodes_compiled_and_not(monkeypatch, n_devices, pool_tokens):
    calls = _counting(monkeypatch)
    ref = _episode(monkeypatch, False, n_devices, pool_tokens)
    assert calls[0] == 0
    compiled = _episode(monkeypatch, True, n_devices, pool_tokens)
    assert calls[0] > 50
    assert ref == compiled


def test_the_environment_variable_forces_the_python_loop():
    code = (
        "from offload_rl.cell import compiled_decode as cd; "
        "from offload_rl.cell.edge_server import EdgeServer; "
        "from tests.offload_rl.cell.test_edge_server_fast import COST; "
        "print(cd.AVAILABLE, EdgeServer(COST, 10**9).compiled, EdgeServer(COST, 10**9, "
        "compiled=True).compiled)"
    )
    env = {**os.environ, "OFFLOAD_RL_COMPILED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False", "False"]


def test_a_scheduler_that_fails_to_compile_falls_back_to_python(monkeypatch):
    """numba raising at the first load (an unsupported platform): a warning, then the Python
    scheduler for the rest of the process, with the Python scheduler's results."""

    def broken() -> Any:
        raise cd.COMPILE_ERRORS[-1]("no LLVM target for this CPU")

    monkeypatch.setattr(cd, "scheduler", broken)
    monkeypatch.setattr(cd, "AVAILABLE", True)
    reference = EdgeServer(COST, 10**9, compiled=False)
    with pytest.warns(RuntimeWarning, match="no LLVM target"):
        fallen = EdgeServer(COST, 10**9, compiled=True)
    assert not fallen.compiled and not cd.AVAILABLE
    assert isinstance(fallen.pool, KVPool)
    for server in (reference, fallen):
        server.submit(EdgeRequest(0, 0, 6, 0.0, 0, 50, 40, round_trip_s=0.01), 0.0)
        server.submit(EdgeRequest(1, 1, 0, 0.0, 0, 80, 40), 0.0)
        server.advance(5.0)
    assert fallen.iterations > 40
    assert _snapshot(reference, 5.0) == _snapshot(fallen, 5.0)


def test_a_deep_copy_of_a_compiled_server_has_the_same_future_and_its_own_state():
    """The cell oracle forks the simulator with copy.deepcopy: the copy's table is its own."""
    server = EdgeServer(COST, 300 * KV_TOKEN, compiled=True)
    assert server.compiled
    for rid, (k, out) in enumerate(((0, 30), (4, 25), (0, 60), (7, 40))):
        server.submit(
            EdgeRequest(rid, rid % 3, k, 0.0, 0, 90, out, keep=True, round_trip_s=0.003), 0.0
        )
    server.advance(0.05)
    fork = copy.deepcopy(server)
    for s in (server, fork):
        s.advance(2.0)
    assert _snapshot(server, 2.0) == _snapshot(fork, 2.0)
    assert server.iterations > 20
    fork.submit(EdgeRequest(9, 0, 0, 0.0, 0, 10, 5), fork.clock)
    fork.advance(3.0)
    assert server.n_in_system == 0 and fork.iterations > server.iterations
