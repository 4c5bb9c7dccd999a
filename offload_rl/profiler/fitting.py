"""Fitting measured points to a profile's polynomials: non-negative, weighted for relative error.

A cost that goes negative somewhere would let the simulator gain time by running a layer, so the
coefficients are constrained to be >= 0 (NNLS). Points span three orders of magnitude (T=16 to
T=1024), so each is weighted by its own time: the fit is judged by how far off it is in percent.
numpy only, so the analytical roofline can fit with it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from offload_rl.profiles import DecodeFit, PrefillFit


def nnls(A: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Non-negative least squares, ``min ||A x - b|| s.t. x >= 0`` (Lawson-Hanson active set)."""
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 10.0 * np.finfo(float).eps * np.abs(A).sum(axis=0).max(initial=0.0) * max(m, n)
    for _ in range(max_iter or 3 * n + 10):
        w = A.T @ (b - A @ x)
        if passive.all() or np.max(np.where(passive, -np.inf, w)) <= tol:
            break
        passive[int(np.argmax(np.where(passive, -np.inf, w)))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if np.all(z[passive] > 0):
                x = z
                break
            shrinking = passive & (z <= 0)
            alpha = np.min(x[shrinking] / (x[shrinking] - z[shrinking]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
    return x


def relative_nnls(features: np.ndarray, times: np.ndarray) -> np.ndarray:
    """NNLS that minimises *relative* error: each row is divided by its measured time.

    Columns are scaled to unit norm first, so T^2 (up to ~1e6) and 1 are on the same footing.
    """
    if np.any(~np.isfinite(times)) or np.any(times <= 0):
        raise ValueError("measured times must be finite and > 0")
    A = features / times[:, None]
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    coef = nnls(A / scale, np.ones_like(times)) / scale
    return np.asarray(np.maximum(coef, 0.0))


def fit_prefill(points: Sequence[tuple[float, float]]) -> PrefillFit:
    """Fit ``c0 + c1*T + c2*T^2 >= 0`` to (tokens, seconds) points, relative-error weighted."""
    T = np.array([p[0] for p in points], dtype=float)
    t = np.array([p[1] for p in points], dtype=float)
    c = relative_nnls(np.stack([np.ones_like(T), T, T * T], axis=1), t)
    return PrefillFit(c0=float(c[0]), c1=float(c[1]), c2=float(c[2]))


def fit_decode(points: Sequence[tuple[float, float]]) -> DecodeFit:
    """Fit ``c0 + c1*ctx >= 0`` to (context, seconds) points, relative-error weighted."""
    ctx = np.array([p[0] for p in points], dtype=float)
    t = np.array([p[1] for p in points], dtype=float)
    c = relative_nnls(np.stack([np.ones_like(ctx), ctx], axis=1), t)
    return DecodeFit(c0=float(c[0]), c1=float(c[1]))


def max_relative_error(
    fit: Callable[[float], float], points: Sequence[tuple[float, float]]
) -> float:
    """The worst point's relative distance from ``fit``: what the provenance reports."""
    return max(abs(fit(x) - t) / t for x, t in points)
