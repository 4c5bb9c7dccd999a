"""One replayed request's record (every repeat's measurements, every profile's prediction).

The replay fills rows; the summary reads them. Rows are grouped by split class in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from validation.request_stream import ReplayRequest

CLASS_LOCAL = "local"
CLASS_EDGE = "full_offload"


def split_class(k: int, n_layers: int) -> str:
    """The class a split belongs to in the report."""
    if k == n_layers:
        return CLASS_LOCAL
    if k == 0:
        return CLASS_EDGE
    return f"split_k{k}"


@dataclass
class Row:
    """One request on one trace: every repeat's measurements and the prediction."""

    trace: str
    request: ReplayRequest
    split: int
    keep: bool
    split_class: str
    decision_source: str
    trace_t: float
    measured: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, dict[str, float]] = field(default_factory=dict)  # by profile
