"""The devices' heat state in the cell's heat array (``thermal.heat_storage``): the Python
attributes read and write the row, a fork's devices use the fork's array, and the compiled
decision's OS level (``compiled_observation.os_level``) equals ``Device.os_level``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.thermal import (
    DEVICE_CLASSES,
    H_BUSY,
    H_TEMP,
    H_THERMAL_T,
    heat_storage,
)
from tests.offload_rl.cell.test_compiled_dispatch import _device
from tests.offload_rl.cell.test_compiled_sample_scan import forked_cell


def test_a_bound_devices_attributes_are_its_row() -> None:
    """Binding moves the state into the row; the attributes then read and write it."""
    d = _device("flagship", True)
    d.compute(1.0, 30.0)
    state = (d.thermal.temp_c, d._thermal_t, d.busy_until)
    heat = heat_storage(3)
    d.bind_heat(heat, 2)
    assert (heat[2, H_TEMP], heat[2, H_THERMAL_T], heat[2, H_BUSY]) == state
    assert (d.thermal.temp_c, d._thermal_t, d.busy_until) == state
    assert all(type(v) is float for v in (d.thermal.temp_c, d._thermal_t, d.busy_until))
    d.compute(100.0, 5.0)
    assert (heat[2, H_TEMP], heat[2, H_THERMAL_T], heat[2, H_BUSY]) == (
        d.thermal.temp_c, d._thermal_t, d.busy_until
    )  # fmt: skip
    assert not heat[:2].any()


def test_a_forked_cells_devices_keep_their_heat_in_the_forks_rows() -> None:
    """``copy.deepcopy`` of a simulator (the oracle's fork) copies the heat array once: the
    fork's devices write the fork's rows, the parent's stay as they were."""
    sim, fork = forked_cell()
    before = [(d.thermal.temp_c, d._thermal_t, d.busy_until) for d in sim.devices]
    parent = sim._heat.copy()
    if cd.AVAILABLE:  # the compiled calls' per-episode argument tuples name the fork's arrays
        assert fork._decide_leading[-1] is fork._heat
        assert fork._decide_leading[0] is fork._samples[0]
        leading = fork._edge_tables.leading
        assert leading[0] is fork._bank.table and leading[5] is fork._heat
        assert all(x is y for x, y in zip(leading[6:], fork._samples, strict=True))
    for j, d in enumerate(fork.devices):
        assert d._heat is fork._heat and d.thermal._heat is fork._heat and d.heat_row == j
        assert (d.thermal.temp_c, d._thermal_t, d.busy_until) == before[j]
        d.compute(1e4, 50.0)
        assert fork._heat[j, H_BUSY] == d.busy_until > before[j][2]
    assert [(d.thermal.temp_c, d._thermal_t, d.busy_until) for d in sim.devices] == before
    assert np.array_equal(sim._heat, parent)


@pytest.mark.skipif(not cd.AVAILABLE, reason="numba (the `fast` extra) is not installed")
@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(DEVICE_CLASSES)),
    st.booleans(),
    st.lists(
        st.tuples(st.floats(0.0, 60.0), st.floats(0.0, 300.0), st.booleans()),
        min_size=1,
        max_size=12,
    ),
)
def test_os_level_kernel_equals_the_devices(name, thermal, ops):
    """The decision kernel's OS level on the heat row (cooling it to ``t``) equals
    ``Device.os_level``, and leaves the row as the device's own call leaves its state."""
    K = cd.observation()
    ref, dev = _device(name, thermal), _device(name, thermal)
    heat = heat_storage(2)
    dev.bind_heat(heat, 1)
    t = 0.0
    for gap, work, asks in ops:
        t += gap
        if asks:
            assert K.os_level(heat, 1, t) == ref.os_level(t)
        else:
            assert dev.compute(t, work) == ref.compute(t, work)
        assert (dev.thermal.temp_c, dev._thermal_t, dev.busy_until) == (
            ref.thermal.temp_c, ref._thermal_t, ref.busy_until
        )  # fmt: skip


@pytest.mark.skipif(not cd.AVAILABLE, reason="numba (the `fast` extra) is not installed")
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 1e4), st.floats(0.0, 1e3)), min_size=1, max_size=140),
    st.booleans(),
)
@example([(float(i), 1.0 + i) for i in range(100)], True)  # through the 64-slot wrap
def test_the_placements_sample_write_equals_device_record(samples, noisy):
    """``compiled_dispatch.record`` (the edge placement's throughput sample, its noise drawn
    by the device's generator before the call) equals ``Device.record``: the same rows
    (through the 64-slot wrap) and the generator left in the same state."""
    from offload_rl.cell import flat_dispatch
    from offload_rl.cell.device import sample_storage

    K = flat_dispatch.kernels()
    ref, dev = _device("flagship", True), _device("flagship", True)
    ref.noise_sd = dev.noise_sd = 0.1 if noisy else 0.0
    times, values, counts = sample_storage(2)
    dev.bind_samples(times, values, counts, 1)
    for t, mbps in samples:
        ref.record(t, mbps)
        z = dev.rng.standard_normal() if dev.noise_sd > 0 else float("nan")
        dev._n_samples = K.record(times, values, counts, 1, t, mbps, dev.noise_sd, z)
        assert (dev.sample_t, dev.sample_mbps) == (ref.sample_t, ref.sample_mbps)
    assert dev.rng.bit_generator.state == ref.rng.bit_generator.state
    assert counts[0] == 0


@pytest.mark.parametrize("name", sorted(DEVICE_CLASSES))
@pytest.mark.parametrize("thermal", [True, False])
def test_a_device_made_into_the_cells_rows_is_one_bound_after(name: str, thermal: bool) -> None:
    """A new episode's devices are made straight into the cell's heat and sample rows
    (``Device(heat=, samples=)``, row = index): the same row and attributes as a device made
    alone then moved there (``bind_heat``, ``bind_samples``), the other rows untouched."""
    from offload_rl.cell.device import Device, sample_storage

    ref = _device(name, thermal)
    ref.index = 1
    heat, samples = heat_storage(3), sample_storage(3)
    ref.bind_heat(heat, 1)
    ref.bind_samples(*samples, 1)
    into, into_samples = heat_storage(3), sample_storage(3)
    made = Device(
        1, ref.class_index, ref.cls, ref.radio.params, ref.link, ref.offset_s, thermal=thermal,
        noise_sd=ref.noise_sd, rng=np.random.default_rng(1), heat=into, samples=into_samples,
    )  # fmt: skip
    assert np.array_equal(into, heat) and not into[[0, 2]].any()
    assert made._heat is into and made.heat_row == 1 and made.thermal._heat is into
    assert (made.thermal.temp_c, made._thermal_t, made.busy_until) == (
        ref.thermal.temp_c, ref._thermal_t, ref.busy_until
    )  # fmt: skip
    assert made.sample_times is into_samples[0] and made.sample_counts is into_samples[2]
    assert (made.sample_row, made._n_samples) == (ref.sample_row, ref._n_samples) == (1, 0)
    made.compute(1.0, 30.0)
    ref.compute(1.0, 30.0)
    assert np.array_equal(into, heat)
