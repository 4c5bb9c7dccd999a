"""The devices' throughput samples before t = 0 in machine code (numba), one call per reset.

:func:`~offload_rl.cell.device_seeding.seeded_samples` is the reference: for each device
``H + 1`` times on its trace, wrapped to the trace's cycle, interpolated in its cumulative
bytes (``np.interp``) and differenced into Mbps. In numpy that is ~20 small operations plus one
``np.interp`` per distinct trace and the argsort that groups the devices by trace (~0.1 ms at
N = 32). :func:`throughput_rows` does the same operations on the same doubles, in the same
order, one device after another (fast-math off), with the interpolation of numpy's
``arr_interp``: the interval (the last grid point at or below the time, the one numpy's
``binary_search_with_guess`` finds), then ``slope * (x - xp[j]) + fp[j]`` and the same
special cases. The measurement noise stays in numpy (``np.exp`` of each device's own
generator's draws): ``tests/offload_rl/cell/test_cell_reset_samples.py`` checks it, bit for bit.

Importing this module imports numba; the simulator imports it only in compiled mode.
"""

from __future__ import annotations

import numpy as np

from offload_rl.cell.kernel_jit import hot, jit
from offload_rl.traces import BYTES_PER_MBIT
from offload_rl.workloads.compiled_workload import between

A = np.ndarray


@hot
def _interp(v: float, xp: A, fp: A, lo: int, hi: int) -> float:
    """``np.interp(v, xp[lo:hi], fp[lo:hi])`` (``xp`` strictly increasing there, >= 2 points,
    ``v`` not NaN: a time within a trace's cycle).

    numpy bisects for the interval (the last point at or below ``v``: there is one, so any
    search that finds it gives its value). Here the search starts where ``v`` would be on
    evenly spaced points (a trace's grid is: ``arange(n) * step_s``) and walks to it: one or
    two probes instead of ~14 cache misses in a table of 10^4 points after an episode."""
    if v > xp[hi - 1]:
        return float(fp[hi - 1])
    if v < xp[lo]:
        return float(fp[lo])
    last = hi - 1
    if v >= xp[last]:
        return float(fp[last])
    # now xp[lo] <= v < xp[last]: the interval a in [lo, last - 1], xp[a] <= v < xp[a + 1]
    a = lo + int((v - xp[lo]) / (xp[last] - xp[lo]) * (last - lo))
    a = min(max(a, lo), last - 1)
    while xp[a] > v:
        a -= 1
    while xp[a + 1] <= v:
        a += 1
    if xp[a] == v:
        return float(fp[a])
    return between(v, xp, fp, a)


@jit
def throughput_rows(
    trace: A,
    origin: A,
    history: int,
    period_s: float,
    duration: A,
    total: A,
    grid: A,
    cum: A,
    start: A,
    out: A,
) -> None:
    """``out[r, :history]``: :func:`seeded_samples`' row ``r`` before its noise (the rest of the
    row untouched), for the device on trace
    ``trace[r]`` (an index into ``duration``, ``total`` and the tables ``grid[start[k] :
    start[k + 1]]``, ``cum[...]``, :func:`_interp_points`' arrays of trace ``k``) from
    ``origin[r]``: ``times = origin + (arange(H + 1) - H) * period_s``,
    ``cycles = floor(times / duration)``, ``within = times - cycles * duration``,
    ``diff(cycles * total + interp(within)) / (BYTES_PER_MBIT * period_s)``."""
    scale = BYTES_PER_MBIT * period_s
    for r in range(trace.shape[0]):
        k = trace[r]
        d = duration[k]
        tot = total[k]
        lo = start[k]
        hi = start[k + 1]
        prev = 0.0
        for i in range(history + 1):
            t = origin[r] + float(i - history) * period_s
            cycles = np.floor(t / d)
            within = t - cycles * d
            value = cycles * tot + _interp(within, grid, cum, lo, hi)
            if i > 0:
                out[r, i - 1] = (value - prev) / scale
            prev = value


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel for the types the simulator passes."""
    throughput_rows(
        np.zeros(1, dtype=np.int64),
        np.zeros(1, dtype=np.float64),
        1,
        1.0,
        np.ones(1, dtype=np.float64),
        np.ones(1, dtype=np.float64),
        np.arange(2, dtype=np.float64),
        np.arange(2, dtype=np.float64),
        np.array([0, 2], dtype=np.int64),
        np.empty((1, 1), dtype=np.float64),
    )
