"""The phones' per-step physics in machine code (numba): heat integrated over a compute run.

:class:`~offload_rl.cell.thermal.DeviceThermal`'s Python methods are the reference; each kernel
here mirrors one of them and performs its float operations in their order (IEEE doubles, no
fast-math: no reassociation, no fused multiply-adds, ``math.exp`` from the same C library), so
a compiled device computes bit for bit what the Python one does. ``DeviceThermal.run`` is a
loop of sub-steps (at most ``tau / 20`` each, with a throttle evaluation and an ``exp`` per
sub-step) that runs for every device-side compute, about two per decision.

Importing this module imports numba; a device imports it only in compiled mode
(:func:`offload_rl.cell.compiled_decode.devices`).
"""

from __future__ import annotations

import math

import numba

jit = numba.njit(cache=True, nogil=True)  # fastmath off: IEEE order, bit-identical


@jit
def _clock(temp_c: float, throttle_on_c: float, floor_c: float, min_clock: float) -> float:
    """``DeviceClass.clock``."""
    if temp_c <= throttle_on_c:
        return 1.0
    if temp_c >= floor_c:
        return min_clock
    frac = (temp_c - throttle_on_c) / (floor_c - throttle_on_c)
    return 1.0 - frac * (1.0 - min_clock)


@jit
def thermal_run(
    temp: float,
    work_s: float,
    compute_w: float,
    ambient_c: float,
    r_k_per_w: float,
    tau_s: float,
    throttle_on_c: float,
    floor_c: float,
    min_clock: float,
) -> tuple[float, float, float]:
    """``DeviceThermal.run`` from temperature ``temp``: (new temperature, wall s, joules)."""
    max_step = tau_s / 20.0
    remaining = work_s
    wall = 0.0
    energy = 0.0
    while remaining > 1e-12:
        f = _clock(temp, throttle_on_c, floor_c, min_clock)
        x = remaining / f
        h = max_step if max_step < x else x  # min(x, max_step): the first unless the second is less
        power = compute_w * f
        steady = ambient_c + r_k_per_w * power
        temp = steady + (temp - steady) * math.exp(-h / tau_s)
        remaining -= f * h
        wall += h
        energy += power * h
    return temp, wall, energy


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels."""
    thermal_run(25.0, 1.0, 5.0, 25.0, 2.0, 40.0, 41.0, 45.0, 0.25)
