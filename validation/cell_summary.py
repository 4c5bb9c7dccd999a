"""The cell validation's ``validation.json``: per request, per iteration, per load level, overall.

Errors are percentages of the measured value, ``100 (predicted - measured) / measured``,
summarised by the median and 90th percentile of their absolute values (the single-device
validation's targets, :data:`~validation.summary.TARGET_MEDIAN_PCT` / ``TARGET_P90_PCT``). A
request the edge rejected (its prompt larger than the whole pool) has no latency on either side
and is counted, not scored. The edge's iterations are compared twice: each measured iteration
against what the batched cost predicts for *that* batch (the profile's error), and the
distribution of batch sizes and tokens on both sides (the scheduling's agreement).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from offload_rl.cell.batch_roofline import BatchRoofline
from validation.repeatability import repeatability, repeats_of
from validation.summary import TARGET_MEDIAN_PCT, TARGET_P90_PCT

CONTENTION_BATCH = 2  # "under contention": a batch of at least this many sequences ...
CONTENTION_SHARE = 0.5  # ... in at least this share of the edge's iterations


def _pct(predicted: float, measured: float) -> float:
    return 100.0 * (predicted - measured) / measured


def _abs_stats(errors: Sequence[float]) -> tuple[float | None, float | None]:
    if not errors:
        return None, None
    a = np.abs(np.asarray(errors, dtype=float))
    return float(np.median(a)), float(np.percentile(a, 90))


def waits_before_taken(edge_log: dict[str, Any]) -> dict[int, float]:
    """Per request id: how long its prompt sat at the edge before the edge's loop took it
    (the iteration in flight when it arrived). The runtime's own ``queued_s`` counts from
    being taken; the simulator's from arrival, as a request is in the system from then; the
    measured queue adds this so that both sides count the same wait."""
    return {
        int(r["request_id"]): max(float(r["taken_s"]) - float(r["arrival_s"]), 0.0)
        for r in edge_log["requests"]
        if r.get("taken_s") is not None
    }


def _request_rows(level: dict[str, Any]) -> list[dict[str, Any]]:
    sim = level["simulated"]
    before_taken = waits_before_taken(level["edge"])
    rows = []
    for rec, cr in zip(level["records"], sim.requests, strict=True):
        rejected = bool(rec.get("edge_rejected")) or cr.rejected
        row = {
            "run": level.get("run", 0),
            "level": level["level"],
            "gap_s": level["gap_s"],
            "request_id": rec["request_id"],
            "device": rec["device"],
            "session": rec["session"],
            "turn": rec["turn"],
            "start_s": rec["start_s"],
            "new_tokens": rec["new_tokens"],
            "context_tokens": rec["context_tokens"],
            "output_tokens": rec["output_tokens"],
            "keep": rec["keep"],
            "split": rec["split"],
            "decision_source": rec["decision_source"],
            "decide_s": rec["decide_s"],
            "measured": {
                "ttft_s": rec["ttft_s"],
                "total_s": rec["latency_s"],
                "preemptions": rec.get("edge_preemptions", 0),
                "cached_tokens": rec.get("edge_cached_tokens", 0),
                "queued_s": rec.get("edge_queued_s", 0.0)
                + before_taken.get(int(rec["request_id"]), 0.0),
                "rejected": bool(rec.get("edge_rejected")),
            },
            "predicted": {
                "ttft_s": cr.ttft_s,
                "total_s": cr.latency_s,
                "preemptions": cr.preempted,
                "cache_hit": cr.cache_hit,
                "queued_s": cr.queue_s,
                "rejected": cr.rejected,
            },
            "rejected": rejected,
        }
        if not rejected:
            row["pct_error_total"] = _pct(cr.latency_s, rec["latency_s"])
            row["pct_error_ttft"] = _pct(cr.ttft_s, rec["ttft_s"])
        rows.append(row)
    return rows


def _iterations(level: dict[str, Any], cost: BatchRoofline) -> dict[str, Any]:
    """Measured iterations with the profile's price of the same batch; the simulator's."""
    measured = []
    for it in level["edge"]["iterations"]:
        splits = it.get("splits") or [0] * len(it["sequences"])  # split rows: layers [k, L)
        rows = zip(splits, it["sequences"], strict=True)
        batch = [(int(k), int(n), int(c), bool(smp)) for k, (n, c, smp) in rows]
        measured.append(
            {
                "start_s": it["start_s"],
                "batch_size": len(batch),
                "tokens": sum(b[1] for b in batch),
                "measured_s": it["measured_s"],
                "profile_s": cost.iteration_s(batch),
                "preempted": it["preempted"],
                "evicted": it["evicted"],
            }
        )
    simulated = [
        {"start_s": s, "batch_size": b, "tokens": n, "predicted_s": dt}
        for s, b, n, dt in level["simulated"].iterations
    ]
    return {"measured": measured, "simulated": simulated}


def iteration_kind(batch_size: int, tokens: int) -> str:
    """``decode xR`` for an iteration of R decodes only, ``prefill/mixed`` for one with a chunk."""
    return f"decode x{batch_size}" if tokens == batch_size else "prefill/mixed"


def pricing_by_kind(measured: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per iteration kind (:func:`iteration_kind`): how many, their measured and priced seconds
    in total and the median signed error of the price (negative: priced too fast). Separates
    what the profile gets wrong from what the scheduling does with it."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for m in measured:
        kinds.setdefault(iteration_kind(m["batch_size"], m["tokens"]), []).append(m)
    return {
        kind: {
            "iterations": len(its),
            "measured_s": float(sum(m["measured_s"] for m in its)),
            "profile_s": float(sum(m["profile_s"] for m in its)),
            "median_pct_error": float(
                np.median([_pct(m["profile_s"], m["measured_s"]) for m in its])
            ),
        }
        for kind, its in sorted(kinds.items())
    }


def _batch_stats(sizes: Sequence[int], tokens: Sequence[int]) -> dict[str, Any]:
    if not sizes:
        return {"iterations": 0}
    a = np.asarray(sizes)
    return {
        "iterations": int(a.size),
        "mean_batch_size": float(a.mean()),
        "max_batch_size": int(a.max()),
        "share_batch_ge_2": float(np.mean(a >= CONTENTION_BATCH)),
        "mean_tokens": float(np.mean(tokens)),
    }


def _group(rows: Sequence[dict[str, Any]], iters: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Errors, batches and preemptions of one group of requests and iterations."""
    scored = [r for r in rows if not r["rejected"]]
    med, p90 = _abs_stats([r["pct_error_total"] for r in scored])
    med_ttft, p90_ttft = _abs_stats([r["pct_error_ttft"] for r in scored])
    measured = [it for group in iters for it in group["measured"]]
    simulated = [it for group in iters for it in group["simulated"]]
    it_med, it_p90 = _abs_stats([_pct(m["profile_s"], m["measured_s"]) for m in measured])
    runtime_batches = _batch_stats(
        [m["batch_size"] for m in measured], [m["tokens"] for m in measured]
    )
    sim_batches = _batch_stats(
        [s["batch_size"] for s in simulated], [s["tokens"] for s in simulated]
    )
    preempt_measured = sum(m["preempted"] for m in measured)
    share = runtime_batches.get("share_batch_ge_2", 0.0)
    return {
        "requests": len(rows),
        "scored": len(scored),
        "rejected": {
            "measured": sum(r["measured"]["rejected"] for r in rows),
            "predicted": sum(r["predicted"]["rejected"] for r in rows),
        },
        "median_abs_pct_error_total": med,
        "p90_abs_pct_error_total": p90,
        "median_abs_pct_error_ttft": med_ttft,
        "p90_abs_pct_error_ttft": p90_ttft,
        "mean_measured_total_s": float(np.mean([r["measured"]["total_s"] for r in scored]))
        if scored
        else None,
        "mean_predicted_total_s": float(np.mean([r["predicted"]["total_s"] for r in scored]))
        if scored
        else None,
        "iteration_time": {
            "median_abs_pct_error_profile": it_med,
            "p90_abs_pct_error_profile": it_p90,
            "measured_total_s": float(sum(m["measured_s"] for m in measured)),
            "profile_total_s": float(sum(m["profile_s"] for m in measured)),
            "simulated_total_s": float(sum(s["predicted_s"] for s in simulated)),
            "by_kind": pricing_by_kind(measured),
        },
        "batches": {"measured": runtime_batches, "simulated": sim_batches},
        "preemptions": {
            "measured": preempt_measured,
            "predicted": sum(r["predicted"]["preemptions"] for r in rows),
        },
        "cache_hits": {
            "measured": sum(r["measured"]["cached_tokens"] > 0 for r in rows),
            "predicted": sum(bool(r["predicted"]["cache_hit"]) for r in rows),
        },
        "under_contention": bool(share >= CONTENTION_SHARE and preempt_measured >= 1),
    }


def _replay_errors(
    level: dict[str, Any], rows: Sequence[dict[str, Any]], key: str
) -> dict[str, Any]:
    """Median and p90 of the total-latency error of the level's other replay ``key``."""
    errors = [
        _pct(cr.latency_s, rec["latency_s"])
        for rec, cr, row in zip(level["records"], level[key].requests, rows, strict=True)
        if not row["rejected"] and not cr.rejected
    ]
    med, p90 = _abs_stats(errors)
    return {
        "median_abs_pct_error_total": med,
        "p90_abs_pct_error_total": p90,
        "preemptions": level[key].preemptions,
    }


def _slowed(level: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The replay with the edge's costs x the run's own measured slowdown: what is left of the
    error once the profile's speed is taken out. Fitted to the run, so a diagnostic, never the
    validation's figure."""
    return {"slowdown": level["slowdown"], **_replay_errors(level, rows, "simulated_slowed")}


def _open_loop(level: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The replay with every request started at the runtime's start time (open loop, how the
    validation replayed before the closed loop: :mod:`validation.cell_replay`); a diagnostic."""
    if "simulated_open_loop" not in level:
        return None
    return _replay_errors(level, rows, "simulated_open_loop")


def _by_placement(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Total-latency error of token-id requests (``k = 0``) and of split ones (``k > 0``)."""
    out = {}
    for name, pick in (("token_ids", lambda k: k == 0), ("split", lambda k: k > 0)):
        scored = [r for r in rows if not r["rejected"] and pick(r["split"])]
        med, p90 = _abs_stats([r["pct_error_total"] for r in scored])
        med_ttft, _ = _abs_stats([r["pct_error_ttft"] for r in scored])
        out[name] = {
            "scored": len(scored),
            "median_abs_pct_error_total": med,
            "p90_abs_pct_error_total": p90,
            "median_abs_pct_error_ttft": med_ttft,
        }
    return out


LOOP_GAP_S = 0.2  # a pause between two forwards shorter than this is the edge's own loop


def outside_the_iterations(
    level: dict[str, Any], rows: Sequence[dict[str, Any]], forward_s: float
) -> dict[str, Any]:
    """What a request's latency holds besides the priced iterations, measured: the edge's loop
    between two forwards (scheduling, sending tokens, the state push: each pause less the time
    the edge spent blocked waiting for a frame, as its log records it; in logs without that
    record, pauses shorter than :data:`LOOP_GAP_S`), the decision call, the wait in the edge's
    queue on both sides, and the signed median error (negative: predicted faster)."""
    its = level["edge"]["iterations"]
    loop = []
    for a, b in pairwise(its):
        gap = b["start_s"] - a["start_s"] - a["measured_s"]
        if "idle_before_s" in b:
            loop.append(max(gap - b["idle_before_s"], 0.0))
        elif 0 <= gap < LOOP_GAP_S:
            loop.append(gap)
    scored = [r for r in rows if not r["rejected"]]
    latency = sum(r["measured"]["total_s"] for r in scored)
    return {
        "edge_loop_s": float(sum(loop)),
        "edge_loop_share_of_forward": float(sum(loop) / forward_s) if forward_s else None,
        "decision_share_of_latency": float(sum(r["decide_s"] for r in scored) / latency)
        if latency
        else None,
        "mean_queued_s": {
            side: float(np.mean([r[side]["queued_s"] for r in scored])) if scored else None
            for side in ("measured", "predicted")
        },
        "median_pct_error_total": float(np.median([r["pct_error_total"] for r in scored]))
        if scored
        else None,
    }


BOOTSTRAP_RESAMPLES = 2000


def bootstrap_over_runs(
    errors_by_run: Sequence[Sequence[float]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Median and p90 of the absolute errors pooled over runs, each with a 95% bootstrap
    interval over *runs* (resample whole runs with replacement, pool their requests): requests
    of one run share its queue, so they are not independent draws, the runs are. ``None``
    intervals with fewer than two runs."""
    runs = [np.abs(np.asarray(e, dtype=float)) for e in errors_by_run if len(e)]
    out: dict[str, Any] = {
        "runs": len(runs),
        "per_run": [
            {
                "median_abs_pct_error_total": float(np.median(a)),
                "p90_abs_pct_error_total": float(np.percentile(a, 90)),
                "scored": int(a.size),
            }
            for a in runs
        ],
        "median_abs_pct_error_total": None,
        "p90_abs_pct_error_total": None,
        "median_ci95": None,
        "p90_ci95": None,
    }
    if not runs:
        return out
    pooled = np.concatenate(runs)
    out["median_abs_pct_error_total"] = float(np.median(pooled))
    out["p90_abs_pct_error_total"] = float(np.percentile(pooled, 90))
    if len(runs) < 2:
        return out
    rng = np.random.default_rng(seed)
    medians, p90s = np.empty(resamples), np.empty(resamples)
    for b in range(resamples):
        sample = np.concatenate([runs[i] for i in rng.integers(0, len(runs), size=len(runs))])
        medians[b] = np.median(sample)
        p90s[b] = np.percentile(sample, 90)
    out["median_ci95"] = [float(x) for x in np.percentile(medians, [2.5, 97.5])]
    out["p90_ci95"] = [float(x) for x in np.percentile(p90s, [2.5, 97.5])]
    return out


def pooled_over_runs(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`bootstrap_over_runs` of the scored requests: overall and per load level."""
    scored = [r for r in rows if not r["rejected"]]
    runs = sorted({r["run"] for r in scored})
    levels = sorted({(r["level"], r["gap_s"]) for r in scored})

    def errors(level: int | None) -> list[list[float]]:
        return [
            [
                r["pct_error_total"]
                for r in scored
                if r["run"] == k and (level is None or r["level"] == level)
            ]
            for k in runs
        ]

    return {
        "overall": bootstrap_over_runs(errors(None)),
        "by_load_level": [
            {"level": li, "gap_s": gap, **bootstrap_over_runs(errors(li))} for li, gap in levels
        ],
    }


def _targets(group: dict[str, Any]) -> dict[str, Any]:
    med, p90 = group["median_abs_pct_error_total"], group["p90_abs_pct_error_total"]
    return {
        "median_pct": TARGET_MEDIAN_PCT,
        "p90_pct": TARGET_P90_PCT,
        "median_met": med is not None and med <= TARGET_MEDIAN_PCT,
        "p90_met": p90 is not None and p90 <= TARGET_P90_PCT,
        "under_contention": group["under_contention"],
    }


def summarise_cell(
    levels: Sequence[dict[str, Any]], cost: BatchRoofline, setup: dict[str, Any]
) -> dict[str, Any]:
    """The whole ``validation.json`` document."""
    rows_by_level = [_request_rows(level) for level in levels]
    iters_by_level = [_iterations(level, cost) for level in levels]
    by_level = []
    for level, rows, iters in zip(levels, rows_by_level, iters_by_level, strict=True):
        group = _group(rows, [iters])
        group.update(
            {
                "run": level.get("run", 0),
                "wall_s": level.get("wall_s"),
                "level": level["level"],
                "gap_s": level["gap_s"],
                "load_average_before": level["load_average_before"],
                "load_average_after": level["load_average_after"],
                "cpus_used_by_other_processes": level["cpus_used_by_other_processes"],
                "edge_preemptions_logged": sum(r["preemptions"] for r in level["edge"]["requests"]),
                "diagnostic_slowed_replay": _slowed(level, rows),
                "diagnostic_open_loop_replay": _open_loop(level, rows),
                "outside_the_iterations": outside_the_iterations(
                    level, rows, group["iteration_time"]["measured_total_s"]
                ),
                "simulated_preemptions": level["simulated"].preemptions,
                "simulated_evictions": level["simulated"].evictions,
                "by_placement": _by_placement(rows),
            }
        )
        by_level.append(group)
    all_rows = [r for rows in rows_by_level for r in rows]
    overall = _group(all_rows, iters_by_level)
    overall["by_placement"] = _by_placement(all_rows)
    doc: dict[str, Any] = {
        "setup": setup,
        "overall": overall,
        "targets": _targets(overall),
        "pooled_over_runs": pooled_over_runs(all_rows),
        "by_load_level": by_level,
        "requests": all_rows,
        "iterations": iters_by_level,
    }
    # --same-streams: the runtime against its own repeats, the floor under the figure above
    doc["runtime_repeatability"] = repeatability(repeats_of(doc))
    return doc
