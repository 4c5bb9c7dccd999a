"""The compiled advance (one kernel call per decision) equals the Python reference, bit for bit.

:func:`offload_rl.cell.compiled_finish.advance_cell` runs a decision's edge iterations, the
finished requests' radios and ledger entries, the token streams, the radios' settlement and
both ledgers' collection; :meth:`CellSimulator.advance_and_collect` is the simulator's call of
it. This drives a Python cell (``compiled_decode.AVAILABLE`` False: ``advance`` then
``collect``) and a compiled one (``advance_and_collect``, or ``advance`` then ``collect`` on
the same kernel) through the same decisions and compares every finished request's fields,
every collected cost and, at the end, the requests still in flight and the edge's events:
equal, floats included (no tolerance).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.edge_server import EdgeRequest
from offload_rl.cell.simulator import CellRequest, CellSimulator
from offload_rl.features import shared_action_mask
from tests.envs.cell_helpers import cell_scenario

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

_EDGE_FIELDS = [f.name for f in dataclasses.fields(EdgeRequest)]
_CELL_FIELDS = [f.name for f in dataclasses.fields(CellRequest) if f.name not in ("edge",)]


def _row(cr: CellRequest) -> tuple[str, ...]:
    """A request's outcome, every field (its edge request's too), each by its ``repr``: the
    value's type counts (an int field read back as a float, a bool as an int, differ)."""
    er = cr.edge
    edge = tuple(repr(getattr(er, f)) for f in _EDGE_FIELDS) if er is not None else ()
    return (*(repr(getattr(cr, f)) for f in _CELL_FIELDS), *edge)


def _play(
    env: EdgeCellEnv, seed: int, steps: int, mode: str, tiny: bool = False
) -> tuple[list[Any], EdgeCellEnv]:
    """``steps`` decisions with seeded random valid actions; ``mode``: ``fused``
    (advance_and_collect), else advance then collect. Each step's finishes and costs.
    ``tiny``: the compiled advance's arrays start with room for one row (it must stop, have
    them grown and go on where it stopped)."""
    env.reset(seed=seed)
    sim = env.sim
    if tiny:
        kernels = cd.kernels("compiled_finish")
        sim._cell_log = np.zeros((1, kernels.N_LOG_COLUMNS))
        sim._cell_state = np.zeros(kernels.N_STATE, dtype=np.int64)
        assert sim._bank is not None
        sim._bank.streams = np.zeros((1, 3))
        table = sim.ledger._table  # type: ignore[attr-defined]
        table.heap, table.lumps = np.zeros((2, 3, 5)), np.zeros((2, 2))
    rng = np.random.default_rng(seed)
    rows: list[Any] = []
    for i in range(steps):
        state = sim.decision_state(i)
        mask = shared_action_mask(state, env.feature_spec)
        tier, keep = env.layout.decode(int(rng.choice(np.flatnonzero(mask))))
        sim.dispatch(i, tier, bool(keep))
        t = sim.requests[i + 1].arrival_s
        if mode == "fused":
            done, latency, other, joules = sim.advance_and_collect(t)
        else:
            done = sim.advance(t)
            latency, other, joules = sim.collect(t)
        rows.append(([_row(cr) for cr in done], latency.hex(), other.hex(), joules.hex()))
        if sim._bank is not None:
            _check_streams(env)
    rows.append([_row(cr) for cr in sim.in_flight()])
    rows.append(sim.edge.pop_events())
    rows.append((sim.ledger.latency_cost, sim.ledger.other_cost, sim.joules.other_cost))
    return rows, env


def _check_streams(env: EdgeCellEnv) -> None:
    """The bank's token streams are the requests at the edge whose first token came (as
    ``_stream_tokens`` finds them), in request order (the order the reference visits)."""
    sim = env.sim
    bank = sim._bank
    assert bank is not None
    sim.edge.sync_requests()
    streaming = [
        (cr.rid, cr.device, cr.edge.first_token_s + sim.rtt / 2.0)
        for cr in sorted(sim._at_edge.values(), key=lambda c: c.rid)
        if cr.edge is not None and cr.edge.first_token_s >= 0
    ]
    assert bank.streams[: bank.n_streams].tolist() == [list(s) for s in streaming]


def _env(n_devices: int, pool_tokens: int | None, steps: int) -> EdgeCellEnv:
    if pool_tokens is None:
        return EdgeCellEnv(n_devices=n_devices, episode_requests=steps)
    probe = EdgeCellEnv(n_devices=n_devices)
    token_bytes = probe.sim.batch_cost.n_layers * probe.sim.batch_cost.kv_bytes_per_token_layer
    sc = cell_scenario(n_devices=n_devices, kv_pool_bytes=float(pool_tokens * token_bytes))
    return EdgeCellEnv(sc, episode_requests=steps)


@settings(max_examples=12, deadline=None)
@given(
    st.sampled_from([3, 8, 32]),
    st.sampled_from([None, 3000, 600]),  # the default pool; ones that evict, preempt, reject
    st.integers(0, 2**16),
)
def test_the_compiled_advance_equals_the_python_one(n_devices, pool_tokens, seed):
    steps = 80
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference, ref_env = _play(_env(n_devices, pool_tokens, steps), seed, steps, "split")
    assert ref_env.sim._finish_path() is None
    env = _env(n_devices, pool_tokens, steps)
    fused, env = _play(env, seed, steps, "fused")
    assert env.sim._finish_path() is not None
    assert fused == reference
    split, _ = _play(env, seed, steps, "split")  # advance then collect, compiled
    assert split == reference


def test_a_small_pool_exercises_the_logs_events_and_rejections():
    """A pool of 600 tokens rejects, preempts and evicts: the cell log's events reach the
    edge's event list in the compiled advance as in the reference."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference, _ = _play(_env(8, 600, 150), 5, 150, "split")
    fused, _ = _play(_env(8, 600, 150), 5, 150, "fused")
    assert fused == reference
    assert {e.kind for e in fused[-2]} == {"evicted", "preempted", "rejected"}


def test_the_compiled_advance_grows_its_arrays_and_goes_on(monkeypatch):
    """From arrays with room for one row, the kernel stops for its log, the ledger and the
    streams (each grown by the simulator) and goes on: the same cell as the reference."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference, _ = _play(_env(8, 600, 60), 2, 60, "split")
    rooms: list[int] = []
    grow = CellSimulator._cell_room

    def counted(self: CellSimulator, kernels: Any, status: int, a: Any) -> None:
        rooms.append(status)
        grow(self, kernels, status, a)

    monkeypatch.setattr(CellSimulator, "_cell_room", counted)
    fused, _ = _play(_env(8, 600, 60), 2, 60, "fused", tiny=True)
    assert fused == reference
    k = cd.kernels("compiled_finish")
    assert {k.ROOM_LOG, k.ROOM_LEDGER, k.ROOM_STREAMS} <= set(rooms)


def test_the_simulator_calls_the_kernel_past_its_dispatcher():
    """After its first call the simulator calls the kernel's one compiled specialization
    straight (:func:`~offload_rl.cell.kernel_jit.entry_point`, kept on the simulator), and
    the cell is still the reference's; a fork keeps the entry point and plays on alike."""
    k = cd.kernels("compiled_finish")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference, _ = _play(_env(8, 3000, 40), 4, 40, "split")
    fused, env = _play(_env(8, 3000, 40), 4, 40, "fused")
    call = env.sim._advance_call
    assert call is not None and call is not k.advance_cell
    assert fused == reference
    fork = copy.deepcopy(env.sim)
    assert fork._advance_call is call
