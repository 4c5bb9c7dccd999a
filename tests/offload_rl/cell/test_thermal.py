"""Device heat: the fitted constants reproduce their sources; heating slows, idling recovers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offload_rl.cell.thermal import DEVICE_CLASSES, OS_LEVELS, DeviceClass, DeviceThermal

FLAGSHIP = DEVICE_CLASSES["flagship"]


def _clock_after(cls: DeviceClass, seconds: float) -> float:
    """Clock after ``seconds`` of continuous inference from ambient."""
    dev = DeviceThermal(cls)
    t = 0.0
    while t < seconds - 1e-9:
        wall, _ = dev.run(min(0.25, seconds - t) * dev.clock())
        t += wall
    return dev.clock()


def test_flagship_constants_reproduce_the_measurements_they_were_fitted_to():
    assert _clock_after(FLAGSHIP, 35.0) == pytest.approx(0.75, abs=0.02)  # iPhone 17 Pro MLX
    assert _clock_after(FLAGSHIP, 600.0) == pytest.approx(22.6 / 40.0, abs=0.005)  # iPhone 16 Pro


def test_back_to_back_local_inference_heats_slows_and_recovers_when_idle():
    dev = DeviceThermal(FLAGSHIP)
    rates = []
    for _ in range(8):  # 8 benchmark iterations of 400 tokens at 40 tok/s when cool
        wall, _ = dev.run(10.0)
        rates.append(400 / wall)
    assert rates[0] == pytest.approx(40.0)
    assert rates[-1] == pytest.approx(22.6, abs=0.5)  # "~40 -> 22.6 tok/s within 8 iterations"
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(rates))
    assert OS_LEVELS[dev.os_level()] == "serious"
    dev.idle(300.0)
    assert dev.clock() == 1.0 and OS_LEVELS[dev.os_level()] == "nominal"
    assert dev.temp_c == pytest.approx(FLAGSHIP.ambient_c, abs=0.1)
    wall, _ = dev.run(10.0)
    assert 400 / wall == pytest.approx(40.0)


@given(st.floats(0.0, 120.0), st.floats(20.0, 60.0))
def test_energy_per_unit_of_work_does_not_depend_on_heat(work_s, start_c):
    dev = DeviceThermal(FLAGSHIP, temp_c=start_c)
    wall, energy = dev.run(work_s)
    assert energy == pytest.approx(FLAGSHIP.compute_w * work_s, rel=1e-9, abs=1e-9)
    assert wall >= work_s - 1e-9


@given(st.lists(st.floats(0.0, 80.0), min_size=2, max_size=20))
def test_os_level_and_clock_are_monotone_in_temperature(temps):
    for cls in DEVICE_CLASSES.values():
        devices = [DeviceThermal(cls, temp_c=t) for t in sorted(temps)]
        levels = [d.os_level() for d in devices]
        clocks = [d.clock() for d in devices]
        assert levels == sorted(levels)
        assert clocks == sorted(clocks, reverse=True)
        assert all(cls.min_clock <= c <= 1.0 for c in clocks)


def test_the_floor_is_critical_and_a_bad_class_is_refused():
    assert DeviceThermal(FLAGSHIP, temp_c=50.0).os_level() == 3
    assert DeviceThermal(FLAGSHIP, temp_c=50.0).clock() == FLAGSHIP.min_clock
    with pytest.raises(ValueError, match="throttle_on < floor"):
        DeviceClass("x", 5.0, 25.0, 6.0, 40.0, 36.0, 45.0, 41.0, 0.3, "")
