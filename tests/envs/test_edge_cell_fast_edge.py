"""EdgeCell-v0 with the fast edge server plays the same episodes as with the reference scheduler.

``EdgeServer(fast=False)`` runs every iteration through the general scheduler (the oracle of
``tests/offload_rl/cell/test_edge_server_fast.py``); here whole cells run on it and on the default
fast path, under seeded random valid actions (split requests, kept sessions, cloud and local),
with a KV pool small enough that kept entries are evicted and running requests preempted. The
fast path performs the reference's float operations in its order, so the tolerance is zero:
every observation, reward and info value, and every finished request's accounting, must be equal.
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

STEPS = 300
POOL_TOKENS = 4000  # of a k = 0 request: small enough to evict and preempt at N = 8 and 32


def _episode(monkeypatch: pytest.MonkeyPatch, fast: bool, n_devices: int) -> list[Any]:
    monkeypatch.setattr(simulator, "EdgeServer", functools.partial(EdgeServer, fast=fast))
    probe = EdgeCellEnv(n_devices=n_devices)
    token_bytes = probe.sim.batch_cost.n_layers * probe.sim.batch_cost.kv_bytes_per_token_layer
    sc = cell_scenario(n_devices=n_devices, kv_pool_bytes=float(POOL_TOKENS * token_bytes))
    env = EdgeCellEnv(sc, episode_requests=STEPS)
    obs, info = env.reset(seed=n_devices)
    rng = np.random.default_rng(n_devices)
    rows: list[Any] = [obs.tobytes(), info]
    for _ in range(STEPS):
        obs, reward, _, truncated, info = env.step(
            int(rng.choice(np.flatnonzero(env.action_masks())))
        )
        finished = [
            (cr.rid, cr.tier_index, cr.finish_s, cr.ttft_s, cr.queue_s, cr.preempted,
             cr.batch_at_admit, cr.cache_hit, cr.rejected)
            for cr in env.last_finished
        ]  # fmt: skip
        rows.append((obs.tobytes(), reward, info, finished))
    edge = env.sim.edge
    rows.append((edge.iterations, edge.preemptions, edge.pool.evictions, edge.busy_s, truncated))
    return rows


@pytest.mark.parametrize("n_devices", [8, 32])
def test_fast_edge_plays_the_reference_episode(monkeypatch, n_devices):
    reference = _episode(monkeypatch, False, n_devices)
    fast = _episode(monkeypatch, True, n_devices)
    iterations, preemptions, evictions, _, _ = fast[-1]
    assert iterations > 10 * STEPS and preemptions > 0 and evictions > 0  # the paths it guards
    splits = sum(row[2]["split"] > 0 for row in fast[2:-1])
    keeps = sum(row[2]["keep"] for row in fast[2:-1])
    assert splits > STEPS // 2 and keeps > STEPS // 4
    for i, (ref_row, fast_row) in enumerate(zip(reference, fast, strict=True)):
        assert ref_row == fast_row, f"step {i - 1} differs"
