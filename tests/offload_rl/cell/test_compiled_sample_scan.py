"""The compiled decision's sample scan is ``Device.samples_until``'s, bit for bit.

:func:`offload_rl.cell.compiled_observation.samples_until` reads a device's row of the cell's
sample arrays; :func:`offload_rl.cell.device.scan_samples` (with ``samples_until``'s shortcut)
is the reference: unsorted times (a transfer may end after a later decision), any horizon and
history, rows of other devices around it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.device import SAMPLE_SLOTS, Device, sample_storage

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

samples = st.lists(
    st.tuples(st.floats(0.0, 50.0), st.floats(0.0, 100.0)), min_size=0, max_size=SAMPLE_SLOTS
)


@settings(deadline=None)
@given(samples, st.floats(0.0, 60.0), st.integers(0, 64), st.integers(0, 2))
def test_compiled_scan_is_samples_until(
    rows: list[tuple[float, float]], t: float, history: int, j: int
) -> None:
    scan = cd.observation().samples_until
    times, values, counts = sample_storage(3)
    times[:] = values[:] = -7.0  # other rows' and unused slots' contents must not leak in
    device = Device.__new__(Device)
    device.bind_samples(times, values, counts, j)
    device.sample_t = [r[0] for r in rows]
    device.sample_mbps = [r[1] for r in rows]
    expected, newest = device.samples_until(t, history)
    out = np.full(SAMPLE_SLOTS + 1, np.nan)
    n = scan(times, values, counts, j, t, history, out)
    assert out[:n].tolist() == expected
    assert (float(out[-1]) if n else 0.0) == newest


def forked_cell() -> tuple[Any, Any]:
    """A 4-device cell 10 decisions into an episode and its ``copy.deepcopy`` (the oracle's
    fork): (the simulator, its fork)."""
    import copy

    from envs.edge_cell import EdgeCellEnv

    env = EdgeCellEnv(n_devices=4, episode_requests=30)
    env.reset(seed=1)
    for _ in range(10):
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    return env.sim, copy.deepcopy(env.sim)


def test_a_forked_cells_devices_keep_their_samples_in_the_forks_rows() -> None:
    """``copy.deepcopy`` of a simulator (the oracle's fork) copies the cell's sample arrays
    once: the fork's devices write the fork's rows, the parent's stay as they were."""
    sim, fork = forked_cell()
    before = [(d.sample_t, d.sample_mbps) for d in sim.devices]
    for j, d in enumerate(fork.devices):
        assert d.sample_times is fork._samples[0] and d.sample_counts is fork._samples[2]
        assert (d.sample_t, d.sample_mbps) == before[j]
        d.record(1e6, 123.0)
        assert fork._samples[1][j, fork._samples[2][j] - 1] == d.sample_mbps[-1]
    assert [(d.sample_t, d.sample_mbps) for d in sim.devices] == before
