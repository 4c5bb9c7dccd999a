"""A reset's devices made in one pass (``device.cell_devices``) are the devices
``Device.__init__`` makes one by one: the same attributes in the same order, the same values
and shared objects, the same heat and sample rows; and each keeps its own state."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.device import Device, cell_devices, sample_storage
from offload_rl.cell.radio import RADIOS
from offload_rl.cell.thermal import DEVICE_CLASSES, heat_storage
from offload_rl.cost_model import LinkModel
from offload_rl.traces import Trace

CLASS_NAMES = sorted(DEVICE_CLASSES)
_TRACES = [Trace(f"t{k}", "lte", "test", 1.0, np.array([5.0 + k, 20.0])) for k in range(3)]
LINKS = [LinkModel(tr, tr, 0.02, 0.03, 1e9) for tr in _TRACES]
RADIO_PARAMS = list(RADIOS.values())


def _same(got: Any, want: Any, shared: dict[int, Any]) -> None:
    """``got`` equals ``want``: the same object where ``want`` is one of ``shared`` (by id: the
    cell's arrays, what the caller passed), else the same type and attributes (objects) or
    value (the rest)."""
    if id(want) in shared:
        assert got is shared[id(want)]
        return
    assert type(got) is type(want)
    if hasattr(want, "__dict__") and not isinstance(want, type):
        assert list(vars(got)) == list(vars(want))
        for name, value in vars(want).items():
            _same(vars(got)[name], value, shared)
    elif isinstance(want, np.ndarray):
        assert np.array_equal(got, want)
    else:
        assert got == want


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(CLASS_NAMES),
            st.integers(0, len(LINKS) - 1),
            st.integers(0, len(RADIO_PARAMS) - 1),
            st.floats(0.0, 1e4),
        ),
        max_size=8,
    ),
    st.booleans(),
    st.sampled_from([0.0, 0.1, 0.35]),
    st.booleans(),
)
def test_cell_devices_are_the_devices_init_makes(devices, thermal, noise_sd, compiled):
    """Field for field (``vars``, recursively, in order), row for row, both modes."""
    was = cd.AVAILABLE
    cd.AVAILABLE = was and compiled
    try:
        n = len(devices)
        names = [name for name, _, _, _ in devices]
        rngs = [np.random.default_rng(j) for j in range(n)]
        args = (
            [CLASS_NAMES.index(name) for name in names],
            [DEVICE_CLASSES[name] for name in names],
            [RADIO_PARAMS[r] for _, _, r, _ in devices],
            [LINKS[k] for _, k, _, _ in devices],
            [offset for _, _, _, offset in devices],
        )
        heat, samples = heat_storage(n), sample_storage(n)
        want = [
            Device(j, *(column[j] for column in args), thermal=thermal, noise_sd=noise_sd,
                   rng=rngs[j], heat=heat, samples=samples)
            for j in range(n)
        ]  # fmt: skip
        into, into_samples = heat_storage(n), sample_storage(n)
        into[:] = 7.0  # written over, as __init__ writes its rows
        got = cell_devices(
            *args, thermal=thermal, noise_sd=noise_sd, rngs=rngs, heat=into,
            samples=into_samples,
        )  # fmt: skip
    finally:
        cd.AVAILABLE = was
    assert np.array_equal(into, heat)
    assert all(np.array_equal(a, b) for a, b in zip(into_samples, samples, strict=True))
    # the cell's arrays are the ones passed; links, traces, classes, generators and radio
    # parameters are the caller's objects (shared, as Device.__init__ shares them)
    shared: dict[int, Any] = {id(heat): into}
    shared.update((id(a), b) for a, b in zip(samples, into_samples, strict=True))
    for obj in (*LINKS, *_TRACES, *DEVICE_CLASSES.values(), *rngs, *RADIO_PARAMS):
        shared[id(obj)] = obj
    assert len(got) == n
    for g, w in zip(got, want, strict=True):
        _same(g, w, shared)
    # each device its own thermal object, radio, memory and kept entries
    for attr in ("thermal", "radio", "memory", "kept_local"):
        assert len({id(getattr(d, attr)) for d in got}) == n
    for d, w in zip(got, want, strict=True):  # the properties read the rows
        assert (d.thermal.temp_c, d.busy_until, d._thermal_t) == (
            w.thermal.temp_c, w.busy_until, w._thermal_t
        )  # fmt: skip
