"""Summary statistics of a request stream (what ``offload-rl workload stats`` prints and
what the fitting script compares with the recordings)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from offload_rl.workloads.request import Request


def _percentile(values: Sequence[float] | npt.NDArray[Any], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def stream_stats(requests: Sequence[Request]) -> dict[str, float]:
    """Summary statistics of one stream (counts, session shape, lengths, timing)."""
    stats: dict[str, float] = {"requests": float(len(requests))}
    if not requests:
        return stats
    arrival = np.fromiter((r.arrival_s for r in requests), np.float64, len(requests))
    session = np.fromiter((r.session_id for r in requests), np.int64, len(requests))
    turns = np.bincount(session)
    turns = turns[turns > 0]
    span = float(arrival[-1] - arrival[0])
    stats.update(
        sessions=float(len(turns)),
        duration_s=span,
        requests_per_s=(len(requests) - 1) / span if span > 0 else float("nan"),
        turns_per_session_mean=float(turns.mean()),
        turns_per_session_p90=_percentile(turns, 90),
        multi_turn_request_share=float(turns[turns > 1].sum() / turns.sum()),
    )
    for name in ("new_tokens", "context_tokens", "output_tokens"):
        values = np.fromiter((getattr(r, name) for r in requests), np.float64, len(requests))
        stats[f"{name}_mean"] = float(values.mean())
        stats[f"{name}_p50"] = _percentile(values, 50)
        stats[f"{name}_p99"] = _percentile(values, 99)
    inter = np.diff(arrival)
    stats["interarrival_s_mean"] = float(inter.mean()) if len(inter) else float("nan")
    stats["interarrival_s_p50"] = _percentile(inter, 50)
    stats["interarrival_s_p99"] = _percentile(inter, 99)
    stats["interarrival_cv"] = (
        float(inter.std() / inter.mean()) if len(inter) and inter.mean() > 0 else float("nan")
    )
    gaps = [r.gap_to_next_turn_s for r in requests if r.gap_to_next_turn_s is not None]
    stats["turn_gaps"] = float(len(gaps))
    stats["turn_gap_s_mean"] = float(np.mean(gaps)) if gaps else float("nan")
    stats["turn_gap_s_p50"] = _percentile(gaps, 50)
    stats["turn_gap_s_p90"] = _percentile(gaps, 90)
    return stats
