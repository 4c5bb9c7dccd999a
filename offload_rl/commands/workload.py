"""``offload-rl workload``: statistics of request workloads, sample streams as CSV, and a look
inside any request log.

``inspect FILE`` prints the fields of a CSV or JSON Lines log with types and examples and a
suggested field mapping. ``stats`` and ``sample`` read any log through a mapping (``--mapping
YAML`` and/or ``--time``, ``--input``, ... on the command line, which override the YAML's keys).
``stats`` summarises each SPEC (``default``, a recorded file, or a params YAML/JSON): a recorded
file as the whole recording, a synthetic workload as a sampled stream of ``--n`` requests. Token
counts are what the environment would see under the given scaling (the environment's defaults
unless ``--raw`` or the ``--scale``/``--max-*`` options say otherwise).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from offload_rl.errors import DataFileError
from offload_rl.workloads import (
    TIME_UNITS,
    FieldMapping,
    RecordedWorkload,
    Request,
    TokenScaling,
    field_mapping_from_dict,
    load_field_mapping,
    load_workload,
    stream_stats,
)
from offload_rl.workloads.survey import SURVEY_RECORDS, Survey, suggest_mapping, survey_file

CSV_COLUMNS: tuple[str, ...] = (
    "arrival_s",
    "session_id",
    "turn",
    "new_tokens",
    "context_tokens",
    "output_tokens",
    "gap_to_next_turn_s",
)

# (label, statistic key, format) rows of the human-readable stats table.
STATS_ROWS: tuple[tuple[str, str, str], ...] = (
    ("requests", "requests", ".0f"),
    ("sessions", "sessions", ".0f"),
    ("duration (s)", "duration_s", ".1f"),
    ("requests/s", "requests_per_s", ".4g"),
    ("turns/session mean", "turns_per_session_mean", ".2f"),
    ("turns/session p90", "turns_per_session_p90", ".1f"),
    ("requests in multi-turn sessions", "multi_turn_request_share", ".1%"),
    ("new tokens mean", "new_tokens_mean", ".1f"),
    ("new tokens p50", "new_tokens_p50", ".0f"),
    ("new tokens p99", "new_tokens_p99", ".0f"),
    ("context tokens mean", "context_tokens_mean", ".1f"),
    ("context tokens p50", "context_tokens_p50", ".0f"),
    ("context tokens p99", "context_tokens_p99", ".0f"),
    ("output tokens mean", "output_tokens_mean", ".1f"),
    ("output tokens p50", "output_tokens_p50", ".0f"),
    ("output tokens p99", "output_tokens_p99", ".0f"),
    ("inter-arrival (s) mean", "interarrival_s_mean", ".3g"),
    ("inter-arrival (s) p50", "interarrival_s_p50", ".3g"),
    ("inter-arrival (s) p99", "interarrival_s_p99", ".3g"),
    ("inter-arrival CV", "interarrival_cv", ".2f"),
    ("gaps between turns", "turn_gaps", ".0f"),
    ("gap between turns (s) mean", "turn_gap_s_mean", ".1f"),
    ("gap between turns (s) p50", "turn_gap_s_p50", ".1f"),
    ("gap between turns (s) p90", "turn_gap_s_p90", ".1f"),
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_scaling_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("token scaling (defaults: the environment's)")
    defaults = TokenScaling()
    group.add_argument("--raw", action="store_true", help="no scaling, no caps: recorded numbers")
    group.add_argument("--scale", type=float, help=f"length multiplier ({defaults.scale:g})")
    group.add_argument(
        "--max-context", type=_positive_int, help=f"context cap ({defaults.max_context_tokens})"
    )
    group.add_argument(
        "--max-new", type=_positive_int, help=f"new-token cap ({defaults.max_new_tokens})"
    )
    group.add_argument(
        "--max-output", type=_positive_int, help=f"output cap ({defaults.max_output_tokens})"
    )


def _scaling(args: argparse.Namespace) -> TokenScaling:
    base = TokenScaling.unlimited() if args.raw else TokenScaling()
    return TokenScaling(
        scale=args.scale if args.scale is not None else base.scale,
        max_context_tokens=args.max_context or base.max_context_tokens,
        max_new_tokens=args.max_new or base.max_new_tokens,
        max_output_tokens=args.max_output or base.max_output_tokens,
    )


def _add_mapping_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "field mapping (any CSV/JSON Lines log; see 'workload inspect')"
    )
    group.add_argument("--mapping", type=Path, help="YAML field mapping (keys below override it)")
    group.add_argument("--time", metavar="FIELD", help="arrival-time field")
    group.add_argument("--time-unit", choices=TIME_UNITS, help="its unit, or iso8601")
    group.add_argument("--input", metavar="FIELD", help="input (prompt) tokens field")
    group.add_argument("--output", metavar="FIELD", help="output tokens field")
    group.add_argument("--session", metavar="FIELD", help="session id field (optional)")
    group.add_argument("--blocks", metavar="FIELD", help="prefix/KV-block ids field (optional)")
    group.add_argument("--block-order", metavar="K1,K2,...", help="order of a dict's block lists")
    group.add_argument(
        "--input-includes-history",
        choices=("true", "false"),
        help="a recorded input holds the session's earlier turns (needed with sessions)",
    )
    group.add_argument("--start-s", type=float, help="drop requests before (s after the first)")
    group.add_argument("--end-s", type=float, help="drop requests from (s after the first)")
    group.add_argument("--first", type=_positive_int, help="keep the first N requests")
    group.add_argument("--strict", action="store_true", help="reject the file at a bad record")


def _section(data: dict[str, object], key: str) -> dict[str, object]:
    value = data.get(key)
    return dict(value) if isinstance(value, dict) else {}


def _cli_mapping(args: argparse.Namespace) -> FieldMapping | None:
    """The mapping the options describe (YAML first, options on top), or None without any."""
    data: dict[str, object] = {}
    source = "command line"
    if args.mapping is not None:
        data = load_field_mapping(args.mapping).model_dump(exclude_defaults=True)
        source = f"{args.mapping} + command line"
    time, blocks, filters = (_section(data, k) for k in ("time", "block_ids", "filters"))
    time.update({k: v for k, v in (("field", args.time), ("unit", args.time_unit)) if v})
    if args.blocks:
        blocks["field"] = args.blocks
    if args.block_order:
        blocks["order"] = [k.strip() for k in args.block_order.split(",")]
    window = (("start_s", args.start_s), ("end_s", args.end_s), ("first", args.first))
    filters.update({k: v for k, v in window if v is not None})
    fields = [("input_tokens", args.input), ("output_tokens", args.output)]
    fields.append(("session_id", args.session))
    data.update({k: v for k, v in fields if v})
    data.update({k: v for k, v in (("time", time), ("block_ids", blocks)) if v})
    data.update({"filters": filters} if filters else {})
    if args.input_includes_history is not None:
        data["input_includes_history"] = args.input_includes_history == "true"
    if args.strict:
        data["strict"] = True
    return field_mapping_from_dict(data, source) if data else None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``workload stats`` and ``workload sample``."""
    parser = subparsers.add_parser(
        "workload",
        help="inspect request workloads and sample request streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="workload_action", metavar="ACTION", required=True)

    stats = actions.add_parser("stats", help="per-source statistics of one or more workloads")
    stats.add_argument("specs", nargs="+", metavar="SPEC", help="default, a file, or params")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument(
        "--n", type=_positive_int, default=10_000, help="requests sampled from a synthetic SPEC"
    )
    stats.add_argument("--seed", type=int, default=0, help="seed of that sample")
    _add_scaling_options(stats)
    _add_mapping_options(stats)
    stats.set_defaults(func=run_stats)

    sample = actions.add_parser("sample", help="write a sampled request stream as CSV")
    sample.add_argument("spec", metavar="SPEC", help="default, a file, or params")
    sample.add_argument("--n", type=_positive_int, required=True, help="requests to draw")
    sample.add_argument("--seed", type=int, required=True, help="random seed")
    sample.add_argument("--out", type=Path, help="CSV file to write (default: stdout)")
    _add_scaling_options(sample)
    _add_mapping_options(sample)
    sample.set_defaults(func=run_sample)

    inspect = actions.add_parser(
        "inspect", help="fields, types and examples of a request log, and a suggested mapping"
    )
    inspect.add_argument("file", type=Path, metavar="FILE", help="a CSV or JSON Lines log")
    inspect.add_argument(
        "--records", type=_positive_int, default=SURVEY_RECORDS, help="records to read"
    )
    inspect.add_argument("--yaml", action="store_true", help="print only the suggested mapping")
    inspect.set_defaults(func=run_inspect)


def _stats_of(spec: str, args: argparse.Namespace, scaling: TokenScaling) -> dict[str, object]:
    workload = load_workload(spec, scaling, _cli_mapping(args), args.seed)
    if isinstance(workload, RecordedWorkload):
        requests = workload.all_requests()
        source: dict[str, object] = {"kind": workload.kind, "whole_recording": True}
        source["notes"] = workload.notes
    else:
        requests = workload.sample(np.random.default_rng(args.seed), args.n)
        source = {"kind": "synthetic", "sampled": args.n, "seed": args.seed}
    return {"spec": spec, "name": workload.name, **source, "stats": stream_stats(requests)}


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def run_stats(args: argparse.Namespace) -> int:
    scaling = _scaling(args)
    results = [_stats_of(spec, args, scaling) for spec in args.specs]
    if args.json:
        payload = {"scaling": dataclasses.asdict(scaling), "sources": results}
        print(json.dumps(_json_safe(payload), indent=2))
        return 0
    _print_table(results, scaling, sys.stdout)
    return 0


def _format(value: float, fmt: str) -> str:
    return "-" if not math.isfinite(value) else format(value, fmt)


def _print_table(results: Sequence[dict[str, object]], scaling: TokenScaling, out: TextIO) -> None:
    names = [str(r["name"]) for r in results]
    kinds = [str(r["kind"]) for r in results]
    width = max(12, *(len(n) for n in names))
    label_width = max(len(label) for label, _, _ in STATS_ROWS)
    caps = (
        "raw (no scaling, no caps)"
        if scaling == TokenScaling.unlimited()
        else (
            f"scale {scaling.scale:g}, context <= {scaling.max_context_tokens}, "
            f"new <= {scaling.max_new_tokens}, output <= {scaling.max_output_tokens}"
        )
    )
    print(f"token scaling: {caps}", file=out)
    for result in results:
        notes = result.get("notes")
        if isinstance(notes, dict) and "load" in notes:
            print(f"{result['name']}: {notes['load']}", file=out)
    print(f"{'':<{label_width}}  " + "  ".join(f"{n:>{width}}" for n in names), file=out)
    print(f"{'':<{label_width}}  " + "  ".join(f"{k:>{width}}" for k in kinds), file=out)
    for label, key, fmt in STATS_ROWS:
        cells = []
        for result in results:
            stats = result["stats"]
            assert isinstance(stats, dict)
            cells.append(f"{_format(float(stats.get(key, math.nan)), fmt):>{width}}")
        print(f"{label:<{label_width}}  " + "  ".join(cells), file=out)


def _write_csv(requests: Sequence[Request], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in requests:
        gap = "" if r.gap_to_next_turn_s is None else f"{r.gap_to_next_turn_s:.6f}"
        writer.writerow(
            (
                f"{r.arrival_s:.6f}",
                r.session_id,
                r.turn,
                r.new_tokens,
                r.context_tokens,
                r.output_tokens,
                gap,
            )
        )


def run_sample(args: argparse.Namespace) -> int:
    workload = load_workload(args.spec, _scaling(args), _cli_mapping(args), args.seed)
    requests = workload.sample(np.random.default_rng(args.seed), args.n)
    if args.out is None:
        _write_csv(requests, sys.stdout)
        return 0
    try:
        with open(args.out, "w", encoding="utf-8", newline="") as handle:
            _write_csv(requests, handle)
    except OSError as err:
        raise DataFileError(args.out, f"cannot write: {err.strerror or err}") from None
    sessions = len({r.session_id for r in requests})
    print(
        f"wrote {len(requests)} requests ({sessions} sessions) from {workload.name} to {args.out}"
    )
    return 0


def _print_survey(survey: Survey, out: TextIO) -> None:
    fmt = "JSON Lines" if survey.fmt == "jsonl" else "CSV"
    unreadable = f", {survey.unreadable} unreadable" if survey.unreadable else ""
    print(f"{survey.path}: {fmt}, {survey.records} records surveyed{unreadable}", file=out)
    width = max(5, *(len(name) for name in survey.fields))
    print(f"{'field':<{width}}  {'types (records)':<32}  examples", file=out)
    for f in survey.fields.values():
        types = ", ".join(f"{kind} ({n})" for kind, n in f.types.most_common())
        if f.keys:
            types += f"; keys {', '.join(f.keys)}"
        examples = ", ".join(json.dumps(e)[:40] for e in f.examples)
        print(f"{f.name:<{width}}  {types:<32}  {examples}", file=out)


def run_inspect(args: argparse.Namespace) -> int:
    survey = survey_file(args.file, args.records)
    if not args.yaml:
        _print_survey(survey, sys.stdout)
        print("\nsuggested mapping (save as YAML, check it, then pass --mapping FILE):\n")
    print(suggest_mapping(survey), end="")
    return 0
