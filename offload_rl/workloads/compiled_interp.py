"""``np.interp`` on a short quantile table, in machine code (numba, the ``fast`` extra).

:meth:`EmpiricalDist.sample <offload_rl.workloads.distributions.EmpiricalDist.sample>` maps
thousands of uniforms through a table of ~15 quantiles per call (an EdgeCell-v0 reset draws
~4000 requests' gaps and lengths to keep 257: the warm-up). ``np.interp`` finds each point's
interval by a bisection whose branches a random point defeats (~20 ns a point); here the
interval is a count of the table's points below it, without branches (~6 ns). The arithmetic
is numpy's (``compiled_base.c``'s ``arr_interp``), in its order: the slope of the interval,
then ``slope * (x - xp[j]) + fp[j]``, the same special cases (a point on a table point, past
either end, NaN), IEEE doubles without fast-math. :mod:`offload_rl.workloads.quantile_interp`
checks it against ``np.interp`` once per process before it is used.

Importing this module imports numba; it is imported only in compiled mode.
"""

from __future__ import annotations

import numba
import numpy as np

A = np.ndarray
jit = numba.njit(cache=True, nogil=True)  # fastmath off: IEEE order, bit-identical


@jit
def interp_into(x: A, xp: A, fp: A, out: A) -> None:
    """``out[:] = np.interp(x, xp, fp)`` for a strictly increasing ``xp`` of >= 2 points."""
    n = xp.shape[0]
    first = xp[0]
    last = xp[n - 1]
    for i in range(x.shape[0]):
        v = x[i]
        if v != v:  # NaN
            out[i] = v
            continue
        if v > last:
            out[i] = fp[n - 1]
            continue
        if v < first:
            out[i] = fp[0]
            continue
        j = 0  # the last table point <= v (xp strictly increasing: a count)
        for k in range(1, n):
            j += xp[k] <= v
        if j == n - 1 or xp[j] == v:
            out[i] = fp[j]
            continue
        slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
        r = slope * (v - xp[j]) + fp[j]
        if r != r:  # numpy's fallback for a non-finite interpolation
            r = slope * (v - xp[j + 1]) + fp[j + 1]
            if r != r and fp[j] == fp[j + 1]:
                r = fp[j]
        out[i] = r


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel for the types the workload passes."""
    xp = np.array([0.0, 1.0])
    interp_into(xp, xp, xp, np.empty(2))
