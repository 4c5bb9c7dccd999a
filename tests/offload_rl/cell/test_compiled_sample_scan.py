"""The compiled decision's sample scan is ``Device.samples_until``'s, bit for bit.

:func:`offload_rl.cell.compiled_observation.samples_until` reads a device's row of the cell's
sample arrays; :func:`offload_rl.cell.device.scan_samples` (with ``samples_until``'s shortcut)
is the reference: unsorted times (a transfer may end after a later decision), any horizon and
history, rows of other devices around it.
"""

from __future__ import annotations

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
