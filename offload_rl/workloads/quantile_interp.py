"""Uniforms through a quantile table: ``np.interp``, or its compiled twin when the cell runs
compiled (:mod:`offload_rl.workloads.compiled_workload`, ~5x faster on random points).

The compiled kernel is used only while :data:`offload_rl.cell.compiled_decode.AVAILABLE` says
compiled code may run (numba installed, ``OFFLOAD_RL_COMPILED`` not 0), and only after it gave
``np.interp``'s bits on a probe of random points in this process: a numpy built to fuse the
multiply-add of its interpolation (``-ffp-contract``, some ARM builds) rounds differently,
and there the workload keeps ``np.interp``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from offload_rl.workloads import kernels

Kernel = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]
_checked: dict[int, bool] = {}  # id(kernel) -> whether it gave np.interp's bits


def _probe_matches(kernel: Kernel) -> bool:
    """Whether the kernel gives ``np.interp``'s bits on random points of a random table
    (points on the table's points and past its ends included)."""
    rng = np.random.default_rng(20261206)
    xp = np.concatenate([[0.0], np.sort(rng.random(14)), [1.0]])
    fp = np.sort(rng.normal(3.0, 2.0, size=xp.size))
    x = np.concatenate([rng.random(4096), xp, [-0.5, 1.5, np.nan]])
    out = np.empty_like(x)
    kernel(x, xp, fp, out)
    return bool(np.array_equal(out.view(np.int64), np.interp(x, xp, fp).view(np.int64)))


def _compiled() -> Kernel | None:
    """The compiled kernel where it may run and matched ``np.interp`` (checked once)."""
    module = kernels.compiled()
    if module is None:
        return None
    kernel: Kernel = module.interp_into
    ok = _checked.get(id(kernel))
    if ok is None:
        # a numpy that rounds its interpolation otherwise (fused multiply-add) keeps np.interp
        ok = _checked[id(kernel)] = _probe_matches(kernel)
    return kernel if ok else None


def compiled_matches() -> bool:
    """Whether the compiled kernels may interpolate here (they may run, and the kernel gave
    ``np.interp``'s bits): the lazy draw's kernel shares its arithmetic."""
    return _compiled() is not None


def interp_quantiles(x: np.ndarray, xp: list[float], fp: np.ndarray) -> np.ndarray:
    """``np.interp(x, xp, fp)`` for a strictly increasing ``xp`` (an ``EmpiricalDist``'s
    probabilities) and a 1-d float ``x``, bit for bit."""
    kernel = _compiled()
    if kernel is None or x.ndim != 1 or len(xp) < 2:
        return np.interp(x, xp, fp)
    out = np.empty(x.shape[0], dtype=np.float64)
    kernel(np.asarray(x, dtype=np.float64), np.asarray(xp, dtype=np.float64), fp, out)
    return out
