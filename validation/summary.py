"""The ``validation.json`` document: prediction errors per request, per split class, overall.

Measured values are medians over the quiet repeats (all repeats when none was quiet: the
request then counts as contended); errors are percentages of the measured value, summarised
by their absolute median and 90th percentile against the targets below. No factor is fitted.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from validation.cpu_load import CONTENTION_CPUS
from validation.rows import CLASS_EDGE, CLASS_LOCAL, Row

TARGET_MEDIAN_PCT = 10.0
TARGET_P90_PCT = 25.0


def _pct(predicted: float, measured: float) -> float:
    return 100.0 * (predicted - measured) / measured


def _stats(errors: Sequence[float]) -> dict[str, float | None]:
    if not errors:
        return {"median": None, "p90": None}
    a = np.abs(np.asarray(errors, dtype=float))
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90))}


def _row_summary(row: Row, label: str) -> dict[str, Any]:
    """Medians over the quiet repeats (all repeats if none was quiet), the prediction, errors.

    ``overhead_s`` is what neither compute nor the modelled network explains: measured
    latency - measured device and edge compute - the simulator's non-compute time (transfers
    and RTTs); it collects the runtime's per-message costs (framing, copies, thread hand-offs,
    timer wake-ups) and any network-model mismatch.
    """
    quiet = [
        m
        for m in row.measured
        if m["others_cpus"] is not None and m["others_cpus"] <= CONTENTION_CPUS
    ]
    chosen = quiet or row.measured

    def med(key: str) -> float:
        return float(statistics.median(m[key] for m in chosen))

    measured = {
        key: med(key)
        for key in (
            "ttft_s",
            "latency_s",
            "device_compute_s",
            "edge_compute_s",
            "prefill_upload_s",
            "upload_payload_bytes",
            "upload_wire_bytes",
        )
    }
    req = row.request
    p = row.predictions[label]
    network_s = p["latency_s"] - p["device_busy_s"] - p["edge_s"]
    overhead = (
        measured["latency_s"] - measured["device_compute_s"] - measured["edge_compute_s"]
    ) - network_s
    loads = [m["others_cpus"] for m in row.measured if m["others_cpus"] is not None]
    return {
        "trace": row.trace,
        "trace_t": row.trace_t,
        "request": req.index,
        "session": req.session,
        "turn": req.turn,
        "split": row.split,
        "split_class": row.split_class,
        "keep": row.keep,
        "decision_source": row.decision_source,
        "new_tokens": req.new_tokens,
        "context_tokens": req.context_tokens,
        "cached_positions": row.measured[0]["cached_positions"],
        "output_tokens": req.output_tokens,
        "edge_miss": any(m["edge_miss"] for m in row.measured),
        "repeats": len(row.measured),
        "quiet_repeats": len(quiet),
        "contended": not quiet,
        "others_cpus": [round(x, 3) for x in loads],
        "measured": measured,
        "measured_latency_all_s": [m["latency_s"] for m in row.measured],
        "predicted": p,
        "overhead_s": overhead,
        "pct_error_total": _pct(p["latency_s"], measured["latency_s"]),
        "pct_error_ttft": _pct(p["ttft_s"], measured["ttft_s"]),
    }


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _group(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total = [s["pct_error_total"] for s in summaries]
    ttft = [s["pct_error_ttft"] for s in summaries]
    st, sf = _stats(total), _stats(ttft)
    dev = [
        _pct(s["predicted"]["device_busy_s"], s["measured"]["device_compute_s"])
        for s in summaries
        if s["measured"]["device_compute_s"] > 0 and s["predicted"]["device_busy_s"] > 0
    ]
    edge = [
        _pct(s["predicted"]["edge_s"], s["measured"]["edge_compute_s"])
        for s in summaries
        if s["measured"]["edge_compute_s"] > 0 and s["predicted"]["edge_s"] > 0
    ]
    return {
        "n": len(summaries),
        "median_abs_pct_error_total": st["median"],
        "p90_abs_pct_error_total": st["p90"],
        "median_abs_pct_error_ttft": sf["median"],
        "p90_abs_pct_error_ttft": sf["p90"],
        "median_pct_error_total": _median(total),
        "median_pct_error_ttft": _median(ttft),
        "median_measured_latency_s": _median([s["measured"]["latency_s"] for s in summaries]),
        "median_predicted_latency_s": _median([s["predicted"]["latency_s"] for s in summaries]),
        "median_pct_error_device_compute": _median(dev),
        "median_pct_error_edge_compute": _median(edge),
        "median_overhead_ms_per_token": _median(
            [1000.0 * s["overhead_s"] / s["output_tokens"] for s in summaries]
        ),
        "contended": sum(s["contended"] for s in summaries),
    }


def _by_class(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    classes: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        classes.setdefault(s["split_class"], []).append(s)

    def order(name: str) -> tuple[int, int]:
        if name == CLASS_LOCAL:
            return (0, 0)
        if name == CLASS_EDGE:
            return (1, 0)
        return (2, int(name.removeprefix("split_k")))

    return {name: _group(classes[name]) for name in sorted(classes, key=order)}


def summarise(rows: Sequence[Row], setup: dict[str, Any], primary: str) -> dict[str, Any]:
    """The ``validation.json`` document: errors of the ``primary`` profile's predictions, and
    the same figures for every other profile under ``other_profiles``."""
    labels = list(rows[0].predictions) if rows else [primary]
    summaries = [_row_summary(r, primary) for r in rows]
    overall = _group(summaries)
    median, p90 = overall["median_abs_pct_error_total"], overall["p90_abs_pct_error_total"]
    met = median is not None and median <= TARGET_MEDIAN_PCT and p90 <= TARGET_P90_PCT
    others = {}
    for label in labels:
        if label != primary:
            alt = [_row_summary(r, label) for r in rows]
            others[label] = {"overall": _group(alt), "by_split_class": _by_class(alt)}
    return {
        "overall": overall,
        "by_split_class": _by_class(summaries),
        "quiet_only": _group([s for s in summaries if not s["contended"]]),
        "other_profiles": others,
        "targets": {
            "median_abs_pct_error_total": TARGET_MEDIAN_PCT,
            "p90_abs_pct_error_total": TARGET_P90_PCT,
            "met": met,
        },
        "setup": setup,
        "requests": summaries,
    }
