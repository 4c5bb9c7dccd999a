"""How far the reference runtime is from itself: the floor under any prediction of it.

The same requests (the same workload, links and decisions) run twice through the cell runtime
do not take the same time: an iteration's measured time scatters by several percent on a
shared CPU, and with the KV pool full that decides which request is admitted first and which
waits a whole decode for memory, seconds on a request of a few. A per-request comparison of
the simulator with one run cannot be better than the runtime's agreement with its own repeat,
so the cell validation measures that agreement on the same footing as its own figure:

- **runtime pairs**: ``|m_a - m_b| / m_b`` for the same request in every ordered pair of
  repeats ``a != b`` (what a perfect replica of one run would score against another);
- **leave one out**: the mean of the *other* repeats' measured latencies as the prediction
  of this repeat's (a predictor that saw every other repeat of the identical requests);
- **simulator**: ``EdgeCell-v0``'s own error on the same requests, for side by side.

A request is compared only between repeats that ran it the same way (same split, keep and
token counts): the decision service decides from the edge's state, which may differ.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RequestKey = tuple[int, int, int]  # (stream, load level, request id)
Repeat = Mapping[RequestKey, Mapping[str, Any]]  # validation.json request rows of one repeat


def _identity(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must agree for two runs of a request to be the same request run again."""
    return (
        row["split"],
        row["keep"],
        row["new_tokens"],
        row["context_tokens"],
        row["output_tokens"],
        row["gap_s"],
    )


def repeats_of(result: Mapping[str, Any]) -> list[dict[RequestKey, Mapping[str, Any]]]:
    """One :data:`Repeat` per run of a ``validate --cell`` document (its scored requests).

    Runs of a ``--same-streams`` validation replay run 0's streams, so their requests share
    keys; otherwise run ``r``'s streams are its own and match only run ``r`` of another
    validation with the same settings."""
    same = bool(result["setup"].get("same_streams", False))
    repeats: dict[int, dict[RequestKey, Mapping[str, Any]]] = {}
    for row in result["requests"]:
        if row["rejected"]:
            continue
        run = int(row.get("run", 0))
        key = (0 if same else run, int(row["level"]), int(row["request_id"]))
        repeats.setdefault(run, {})[key] = row
    return [repeats[r] for r in sorted(repeats)]


def _stats(errors: Sequence[float]) -> dict[str, Any]:
    if not errors:
        return {"median_abs_pct": None, "p90_abs_pct": None, "n": 0}
    a = np.abs(np.asarray(errors, dtype=float))
    return {
        "median_abs_pct": float(np.median(a)),
        "p90_abs_pct": float(np.percentile(a, 90)),
        "n": int(a.size),
    }


def _errors(
    repeats: Sequence[Repeat], keep_key: Any
) -> tuple[list[float], list[float], list[float]]:
    """Pairwise, leave-one-out and simulator errors (%) over the keys ``keep_key`` accepts."""
    pairs: list[float] = []
    loo: list[float] = []
    sim: list[float] = []
    keys = sorted({k for rep in repeats for k in rep if keep_key(k)})
    for key in keys:
        runs = [rep[key] for rep in repeats if key in rep]
        for i, row in enumerate(runs):
            others = [o for j, o in enumerate(runs) if j != i and _identity(o) == _identity(row)]
            if not others:
                continue
            measured = float(row["measured"]["total_s"])
            pairs += [
                100.0 * (float(o["measured"]["total_s"]) - measured) / measured for o in others
            ]
            mean_others = float(np.mean([o["measured"]["total_s"] for o in others]))
            loo.append(100.0 * (mean_others - measured) / measured)
            sim.append(float(row["pct_error_total"]))
    return pairs, loo, sim


def _figures(repeats: Sequence[Repeat], keep_key: Any) -> dict[str, Any]:
    pairs, loo, sim = _errors(repeats, keep_key)
    return {
        "runtime_pairs": _stats(pairs),
        "leave_one_out": _stats(loo),
        "simulator": _stats(sim),
    }


def repeatability(repeats: Sequence[Repeat]) -> dict[str, Any] | None:
    """The runtime's agreement with itself (module docstring), overall and per load level;
    ``None`` when no request ran the same way in two repeats."""
    overall = _figures(repeats, lambda k: True)
    if overall["runtime_pairs"]["n"] == 0:
        return None
    levels = sorted({(k[1], rep[k]["gap_s"]) for rep in repeats for k in rep})
    return {
        "repeats": len(repeats),
        "overall": overall,
        "by_load_level": [
            {"level": li, "gap_s": gap, **_figures(repeats, lambda k, li=li: k[1] == li)}
            for li, gap in levels
        ],
    }


def repeatability_of_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """:func:`repeatability` over every run of several stored validations (each a
    ``validation.json`` document): the same settings run again in another invocation."""
    return repeatability(list(itertools.chain.from_iterable(repeats_of(r) for r in results)))


def markdown_lines(rep: Mapping[str, Any] | None, title: str) -> list[str]:
    """A table of :func:`repeatability`'s figures (nothing for ``None``)."""
    if rep is None:
        return []

    def cell(s: Mapping[str, Any]) -> str:
        if s["n"] == 0:
            return "-"
        return f"{s['median_abs_pct']:.1f} / {s['p90_abs_pct']:.1f}"

    lines = [
        "",
        f"{title} ({rep['repeats']} repeats; median / p90 absolute % difference of total "
        "latency, the same requests run the same way):",
        "",
        "| load level | gap (s) | runtime vs its repeat | mean of the other repeats | "
        "simulator, same requests |",
        "|---|---|---|---|---|",
    ]
    for g in [*rep["by_load_level"], {"level": "all", "gap_s": None, **rep["overall"]}]:
        gap = "" if g["gap_s"] is None else f"{g['gap_s']:g}"
        lines.append(
            f"| {g['level']} | {gap} | {cell(g['runtime_pairs'])} | {cell(g['leave_one_out'])} "
            f"| {cell(g['simulator'])} |"
        )
    return lines
