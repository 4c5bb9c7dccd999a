"""Fitting iterations timed in-stack to the measured step table (numpy only).

The layers' points are fitted per decoder layer (stack seconds / ``L``) on the features
:class:`~offload_rl.cell.batch_steps.StepCost` prices: one indicator per distinct packed token
count (the table's value there) and the KV and attention terms of every sequence
(:func:`~offload_rl.cell.batch_roofline.decoder_terms`, shared across counts, non-negative, so
the price never falls with a longer context), by NNLS weighted for relative error as every
other fit of the profile. Decodes of each row count at several contexts separate a count's
value from the context's slope. The head's points are its table as measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from offload_rl.cell.batch_roofline import decoder_terms
from offload_rl.cell.batch_steps import tail_slope
from offload_rl.profiler.fitting import relative_nnls
from offload_rl.profiles import BatchedFitError, BatchedStepPoint, BatchedSteps, StepTable


def packed_tokens(point: BatchedStepPoint) -> int:
    """The tokens a point packs (the table's variable for the layers)."""
    return sum(n for n, _ in point.sequences)


def fit_steps(points: Sequence[BatchedStepPoint], n_layers: int, method: str) -> BatchedSteps:
    """The step table of ``points`` (``layers`` and ``head`` parts; a ValueError without either,
    or with a time that is not positive)."""
    layers = [p for p in points if p.part == "layers"]
    heads = sorted((p for p in points if p.part == "head"), key=lambda p: p.samples)
    if not layers or not heads:
        raise ValueError("need timed layers and head points to fit the step table")
    counts = sorted({packed_tokens(p) for p in layers})
    column = {t: i for i, t in enumerate(counts)}
    features = np.zeros((len(layers), len(counts) + 2))
    for row, p in enumerate(layers):
        _, kv, _, attn = decoder_terms(p.sequences)
        features[row, column[packed_tokens(p)]] = 1.0
        features[row, -2:] = (kv, attn)
    times = np.array([p.seconds / n_layers for p in layers])
    coef = relative_nnls(features, times)
    values = [float(v) for v in coef[: len(counts)]]
    samples = [p.samples for p in heads]
    head_s = [p.seconds for p in heads]
    predicted = features @ coef
    pct = 100.0 * np.abs(predicted - times) / times
    return BatchedSteps(
        method=method,
        layer=StepTable(x=counts, seconds=values, tail_s_per_x=tail_slope(counts, values)),
        head=StepTable(x=samples, seconds=head_s, tail_s_per_x=tail_slope(samples, head_s)),
        kv_s_per_token=float(coef[-2]),
        attn_s_unit=float(coef[-1]),
        points=list(points),
        fit_error=BatchedFitError(
            median_abs_pct=float(np.median(pct)),
            p90_abs_pct=float(np.percentile(pct, 90)),
            max_abs_pct=float(np.max(pct)),
            points=len(layers),
        ),
    )
