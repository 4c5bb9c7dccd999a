"""The synthetic workload's per-request arithmetic in machine code (numba, the ``fast`` extra).

An EdgeCell-v0 reset draws ~4000 requests (the warm-up) to keep 257, and numpy's cost is per
operation over all of them. Two kernels, each the numpy code it replaces, bit for bit
(``tests/offload_rl/test_workload_compiled.py``, ``test_workload_quantile_interp.py``):

* :func:`session_layout`: ``draw_sessions``' request layout (each request's session, turn and
  whether it opens its session, each session's first request) and arrivals (the inter-turn
  gaps summed in order within the draw, as ``np.cumsum`` sums them);
* :func:`interp_into`: ``np.interp`` on a short quantile table.

:meth:`EmpiricalDist.sample <offload_rl.workloads.distributions.EmpiricalDist.sample>` maps
thousands of uniforms through a table of ~15 quantiles per call. ``np.interp`` finds each point's
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


@jit
def session_layout(
    turns: A, starts: A, gaps: A, session: A, offset: A, turn: A, is_first: A, arrival: A
) -> None:
    """``draw_sessions``' numpy, fused: ``session = repeat(arange(len(turns)), turns)``,
    ``offset = cumsum(turns) - turns``, ``turn = arange(total) - offset[session]``,
    ``is_first = turn == 0``, ``gaps[is_first] = 0`` (in place), ``elapsed = cumsum(gaps)``
    (sequential, as ``np.add.accumulate``) and
    ``arrival = starts[session] + elapsed - elapsed[offset][session]``."""
    i = 0
    elapsed = 0.0
    for s in range(turns.shape[0]):
        offset[s] = i
        first = 0.0
        for k in range(turns[s]):
            session[i] = s
            turn[i] = k
            is_first[i] = k == 0
            if k == 0:
                gaps[i] = 0.0
            elapsed = gaps[i] if i == 0 else elapsed + gaps[i]
            if k == 0:
                first = elapsed
            arrival[i] = starts[s] + elapsed - first
            i += 1


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels for the types the workload passes."""
    xp = np.array([0.0, 1.0])
    interp_into(xp, xp, xp, np.empty(2))
    turns = np.array([1, 2], dtype=np.int64)
    ints = [np.empty(3, dtype=np.int64) for _ in range(2)]
    session_layout(
        turns,
        xp,
        np.ones(3),
        ints[0],
        np.empty(2, dtype=np.int64),
        ints[1],
        np.empty(3, dtype=np.bool_),
        np.empty(3),
    )
