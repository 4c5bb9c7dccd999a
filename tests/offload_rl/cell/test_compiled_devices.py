"""The phones' compiled kernels compute, bit for bit, what their Python reference computes.

:mod:`offload_rl.cell.compiled_devices` mirrors the devices' Python methods operation by
operation; every value must be *equal*, floats included (no tolerance).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.thermal import DEVICE_CLASSES, DeviceThermal

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

runs = st.lists(
    st.tuples(
        st.floats(0.0, 120.0),  # idle seconds before the run
        st.one_of(st.just(0.0), st.floats(1e-9, 600.0)),  # full-clock work
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(DEVICE_CLASSES)), st.floats(20.0, 60.0), runs)
def test_compiled_thermal_runs_equal_the_python_ones(name, start_c, schedule):
    """Heat, wall time and joules of a sequence of runs, from any temperature (throttled,
    floored or cool), are equal in both modes."""
    cls = DEVICE_CLASSES[name]
    python = DeviceThermal(cls, start_c, compiled=False)
    compiled = DeviceThermal(cls, start_c, compiled=True)
    assert not python.compiled and compiled.compiled
    for idle_s, work_s in schedule:
        python.idle(idle_s)
        compiled.idle(idle_s)
        assert compiled.run(work_s) == python.run(work_s)
        assert compiled.temp_c == python.temp_c
