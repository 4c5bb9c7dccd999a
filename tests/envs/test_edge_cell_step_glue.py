"""What an outside reader sees of a compiled step is the reference's, at every step.

The compiled step builds its info as an instance's ``__dict__`` (``envs.edge_cell._StepInfo``)
and writes an edge request's arrival fields with the rest of its row (``SequenceTable.sync_row``
and ``CellSimulator._hand_out``), not at its arrival; a compiled edge placement makes its
``EdgeRequest`` only when it is read (``simulator.EdgeCellRequest``: before it reaches the edge,
at the edge, or from its log row once it finished unread). The info must stay a plain ``dict``
with the documented keys in their order, and the requests in flight (``sim.in_flight()``,
before and after they reach the edge) and the finished ones (``env.last_finished``) must read,
field for field, what the reference's read, whenever they are read.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.simulator import EdgeCellRequest
from tests.offload_rl.cell.test_cell_advance import _CELL_FIELDS, _EDGE_FIELDS, _row

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

INFO_KEYS = [
    "split", "tier", "keep", "action", "invalid_action", "prefill_tokens", "upload_bytes",
    "private", "family", "trace", "measured_mbps", "device", "device_class", "device_temp_c",
    "radio_state", "dt", "energy_j", "n_finished", "latency_s", "ttft_s", "slo_violated",
    "cache_hit", "usd", "queue_s", "batch_at_admit", "preempted", "edge_batch", "edge_waiting",
    "edge_kv_occupancy",
]  # fmt: skip
RATES = ["session_return_rate_in_episode", "session_return_rate_unbounded"]


def _episode(n_devices: int, steps: int, seed: int, in_flight: bool = True) -> list[Any]:
    """Each step's info (its items, values by ``repr``), the requests that finished in it and,
    with ``in_flight``, the requests in flight after it (every field, by ``repr``; without,
    only at the end: an edge request is then first read once it finished, or at the end);
    seeded random valid actions."""
    env = EdgeCellEnv(n_devices=n_devices, episode_requests=steps)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rows: list[Any] = []
    for _ in range(steps):
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        _, _, _, _, info = env.step(action)
        rows.append([(k, repr(v)) for k, v in info.items()])
        rows.append([_row(cr) for cr in env.last_finished])
        if in_flight:
            rows.append([_row(cr) for cr in env.sim.in_flight()])
    rows.append([_row(cr) for cr in env.sim.in_flight()])
    return rows


@pytest.mark.parametrize(("n_devices", "steps", "seed"), [(8, 80, 0), (32, 120, 1)])
def test_infos_and_requests_in_flight_are_the_references_at_every_step(
    monkeypatch, n_devices, steps, seed
):
    with monkeypatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference = _episode(n_devices, steps, seed)
    compiled = _episode(n_devices, steps, seed)
    assert compiled == reference
    # edge requests were read before their arrival at the edge (known 0) and after it
    known = len(_CELL_FIELDS) + _EDGE_FIELDS.index("known")
    at_edge = [row[known] for rows in compiled[2:-1:3] for row in rows if len(row) > known]
    assert "0" in at_edge and any(k != "0" for k in at_edge)


@pytest.mark.parametrize(("n_devices", "steps", "seed"), [(8, 80, 3), (32, 120, 4)])
def test_edge_requests_first_read_after_they_finished_are_the_references(
    monkeypatch, n_devices, steps, seed
):
    """Nothing reads an edge request while it is in flight: each is made from its finish's
    log row when ``last_finished`` is read (or, still in flight at the end, from its
    placement and its table row)."""
    with monkeypatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference = _episode(n_devices, steps, seed, in_flight=False)
    compiled = _episode(n_devices, steps, seed, in_flight=False)
    assert compiled == reference
    finished = [row for rows in compiled[1:-1:2] for row in rows]
    assert sum(len(row) > len(_CELL_FIELDS) for row in finished) > steps // 2  # edge ones
    assert any(len(row) > len(_CELL_FIELDS) for row in compiled[-1])  # in flight at the end


def test_the_info_is_a_plain_dict_in_the_documented_order():
    """Its keys in the order the docs list them (the session-return rates before the edge's
    fields at the last step); a caller that adds or drops keys changes no other step's."""
    env = EdgeCellEnv(n_devices=8, episode_requests=30)
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    for n in range(30):
        _, _, _, truncated, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        assert type(info) is dict
        expected = INFO_KEYS[:-3] + RATES + INFO_KEYS[-3:] if truncated else INFO_KEYS
        assert list(info) == expected
        assert truncated == (n == 29)
        info["extra"] = n  # a wrapper's key (gymnasium's, sb3's)
        del info["split"]
        assert list(info) == [*expected[1:], "extra"]


def test_an_unread_edge_request_copies_as_the_one_read():
    """A deep copy (the oracle's fork), a pickle or ``dataclasses.replace`` of a compiled
    placement's request reads, field for field, what the request itself reads, whether its
    EdgeRequest was made yet or not (before its finish and after it)."""
    env = EdgeCellEnv(n_devices=8, episode_requests=60)
    env.reset(seed=5)
    rng = np.random.default_rng(5)
    unread = 0
    for _ in range(60):
        env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        for cr in [*env.last_finished, *env.sim._at_edge.values()]:
            if isinstance(cr, EdgeCellRequest):
                unread += type(cr._edge) is tuple
                copies = [copy.deepcopy(cr), pickle.loads(pickle.dumps(cr))]
                copies.append(dataclasses.replace(cr))
                assert all(_row(c) == _row(cr) for c in copies)
    assert unread > 30
