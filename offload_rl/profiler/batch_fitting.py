"""Fitting timed batches to the batched roofline's coefficients (numpy only).

Each part of a batch is fitted on its own, on exactly the terms
:class:`~offload_rl.cell.batch_roofline.BatchRoofline` prices for it (:func:`decoder_terms`,
:func:`head_terms`, :func:`embed_terms`): non-negative (a negative coefficient would let the
simulator gain time by adding a sequence) and weighted for relative error, as the
single-request fits are. The batch-1 single-request samples are fitted together with the
batched points, so that a batch of one stays priced as the single-request profile prices it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from offload_rl.cell.batch_roofline import decoder_terms, embed_terms, head_terms
from offload_rl.profiler.fitting import relative_nnls
from offload_rl.profiles import BatchedCoefficients, BatchedFitError, BatchedPoint

PARTS: tuple[str, ...] = ("decoder", "head", "embedding")
# part -> the coefficient names its terms multiply, in the order the terms come
COEFFICIENTS: dict[str, tuple[str, ...]] = {
    "decoder": ("layer_fixed_s", "kv_s_per_token", "linear_s_per_token", "attn_s_unit"),
    "head": ("head_fixed_s", "head_s_per_sample", "head_s_per_token"),
    "embedding": ("embed_fixed_s", "embed_s_per_token"),
}


def point_terms(point: BatchedPoint) -> tuple[float, ...]:
    """The roofline's terms of one timed point, for its part."""
    terms: dict[str, Callable[[BatchedPoint], tuple[float, ...]]] = {
        "decoder": lambda p: decoder_terms(p.sequences),
        "head": lambda p: head_terms(p.sequences, p.samples),
        "embedding": lambda p: embed_terms(p.sequences),
    }
    return terms[point.part](point)


def predict_s(coefficients: BatchedCoefficients, point: BatchedPoint) -> float:
    """Seconds the fitted roofline gives ``point`` (one decoder layer, the head or embedding)."""
    values = [getattr(coefficients, name) for name in COEFFICIENTS[point.part]]
    return float(np.dot(values, point_terms(point)))


def fit_batched(
    points: Sequence[BatchedPoint],
) -> tuple[BatchedCoefficients, dict[str, BatchedFitError]]:
    """Fit every part's coefficients to its points; the fit's error per part.

    Every part needs at least one point with a positive time (a ValueError otherwise).
    """
    fitted: dict[str, float] = {}
    for part in PARTS:
        mine = [p for p in points if p.part == part]
        if not mine:
            raise ValueError(f"no timed {part} points to fit")
        features = np.array([point_terms(p) for p in mine], dtype=float)
        times = np.array([p.seconds for p in mine], dtype=float)
        coef = relative_nnls(features, times)
        fitted.update(zip(COEFFICIENTS[part], (float(c) for c in coef), strict=True))
    coefficients = BatchedCoefficients(**fitted)
    return coefficients, fit_errors(coefficients, points)


def fit_errors(
    coefficients: BatchedCoefficients, points: Sequence[BatchedPoint]
) -> dict[str, BatchedFitError]:
    """Median, 90th-percentile and worst absolute % error of each part's points."""
    errors: dict[str, BatchedFitError] = {}
    for part in PARTS:
        pct = [
            100.0 * abs(predict_s(coefficients, p) - p.seconds) / p.seconds
            for p in points
            if p.part == part and p.seconds > 0
        ]
        if pct:
            errors[part] = BatchedFitError(
                median_abs_pct=float(np.median(pct)),
                p90_abs_pct=float(np.percentile(pct, 90)),
                max_abs_pct=float(np.max(pct)),
                points=len(pct),
            )
    return errors
