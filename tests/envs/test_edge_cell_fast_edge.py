"""EdgeCell-v0 with the fast edge server plays the same episodes as with the reference scheduler.

``EdgeServer(fast=False)`` runs every iteration through the general scheduler (the oracle of
``tests/offload_rl/cell/test_edge_server_fast.py``); here whole cells run on it and on the default
fast path, under seeded random valid actions (split requests, kept sessions, cloud and local) and
under an edge-first policy (long token-id batches, which the fast path runs in closed form), with
a KV pool small enough that kept entries are evicted and running requests preempted. Every
discrete value (actions, masks, tiers, counts, batch sizes, preemptions) must be equal; times,
rewards and energies within :data:`REL` relative (the closed form sums in another order);
observations within one float32 step.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

import offload_rl.cell.simulator as simulator
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell.edge_server import EdgeServer
from tests.envs.cell_helpers import cell_scenario
from tests.offload_rl.cell.test_edge_server_fast import REL, _same

STEPS = 300
POOL_TOKENS = 4000  # of a k = 0 request: small enough to evict and preempt at N = 8 and 32
EDGE_FIRST_POOL_TOKENS = 40000  # room for long closed-form runs (a full pool cuts them short)


def _episode(
    monkeypatch: pytest.MonkeyPatch, fast: bool, n_devices: int, edge_first: bool
) -> list[Any]:
    monkeypatch.setattr(simulator, "EdgeServer", functools.partial(EdgeServer, fast=fast))
    probe = EdgeCellEnv(n_devices=n_devices)
    token_bytes = probe.sim.batch_cost.n_layers * probe.sim.batch_cost.kv_bytes_per_token_layer
    pool = EDGE_FIRST_POOL_TOKENS if edge_first else POOL_TOKENS
    sc = cell_scenario(n_devices=n_devices, kv_pool_bytes=float(pool * token_bytes))
    env = EdgeCellEnv(sc, episode_requests=STEPS)
    obs, info = env.reset(seed=n_devices)
    rng = np.random.default_rng(n_devices)
    rows: list[Any] = [obs, info]
    for _ in range(STEPS):
        mask = env.action_masks()
        action = 0 if edge_first and mask[0] else int(rng.choice(np.flatnonzero(mask)))
        obs, reward, _, truncated, info = env.step(action)
        finished = [
            (cr.rid, cr.tier_index, cr.finish_s, cr.ttft_s, cr.queue_s, cr.preempted,
             cr.batch_at_admit, cr.cache_hit, cr.rejected)
            for cr in env.last_finished
        ]  # fmt: skip
        rows.append((obs, reward, info, finished))
    edge = env.sim.edge
    rows.append((edge.iterations, edge.preemptions, edge.pool.evictions, truncated))
    rows.append(edge.closed_form_iterations)
    return rows


def _same_row(ref: Any, fast: Any) -> bool:
    if isinstance(ref, np.ndarray):  # an observation: float32 of values within REL
        return bool(np.allclose(ref, fast, rtol=1e-6, atol=1e-7))
    if isinstance(ref, dict):
        return ref.keys() == fast.keys() and all(_same(ref[k], fast[k]) for k in ref)
    if isinstance(ref, tuple):
        return all(_same_row(a, b) for a, b in zip(ref, fast, strict=True))
    return _same(ref, fast)


@pytest.mark.parametrize(("n_devices", "edge_first"), [(8, False), (32, False), (32, True)])
def test_fast_edge_plays_the_reference_episode(monkeypatch, n_devices, edge_first):
    reference = _episode(monkeypatch, False, n_devices, edge_first)
    fast = _episode(monkeypatch, True, n_devices, edge_first)
    iterations, preemptions, evictions, _ = fast[-2]
    assert iterations > 10 * STEPS  # the paths it guards:
    if edge_first:
        assert fast[-1] > iterations // 10  # the closed form ran
    else:
        assert preemptions > 0 and evictions > 0
        splits = sum(row[2]["split"] > 0 for row in fast[2:-2])
        keeps = sum(row[2]["keep"] for row in fast[2:-2])
        assert splits > STEPS // 2 and keeps > STEPS // 4
    assert REL <= 1e-9
    for i, (ref_row, fast_row) in enumerate(zip(reference[:-1], fast[:-1], strict=True)):
        assert _same_row(ref_row, fast_row), f"step {i - 1} differs"
