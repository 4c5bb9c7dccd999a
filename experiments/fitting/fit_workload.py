"""Fit the default synthetic workload to the recorded traces in ``../shared/workloads``.

Usage: ``python experiments/fitting/fit_workload.py [--shared DIR] [--out PATH] [--check]
[--sessions FILE --sessions-mapping YAML] [--lengths FILE --lengths-mapping YAML]``

``--sessions`` and ``--lengths`` fit to your own request logs instead (any CSV or JSON Lines
log, read through a field mapping: ``offload-rl workload inspect FILE`` suggests one); the
defaults are the recordings below, read through their built-in mappings.

What comes from where:

* **Session structure** from BurstGPT (``burstgpt_sessions_first1000.csv``, real sessions):
  turns per session as a mixture of two geometrics (maximum likelihood, EM), the gap between
  consecutive turns as BurstGPT's empirical quantiles, and the warm-up as the 90th percentile of
  a multi-turn session's duration (so a stream starts with the sessions already in progress).
* **Token lengths** from Azure conv (``AzureLLMInferenceTrace_conv.csv``): first-turn prompts
  and outputs as empirical quantiles (both are multi-modal, a lognormal misses their p75-p99).
  Azure has no turns, so follow-up *new* tokens are BurstGPT's observed appended messages
  (``input - previous input - previous output`` where that is >= 1).
* **Arrival rate per edge cell**: the Azure conv service receives 5.5 requests/s from a whole
  region; one edge cell sees a share ``CELL_SHARE`` of that. The session rate is
  ``Azure requests/s / mean turns x CELL_SHARE``. This is a scenario knob, not a measurement.

The script writes ``offload_rl/data/workload_default.json`` and prints fitted vs recorded
statistics. ``--check`` writes nothing and fails if the committed file differs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from offload_rl.errors import ConfigError, OffloadRLError
from offload_rl.workloads import (
    BUILTIN_MAPPINGS,
    EmpiricalDist,
    FieldMapping,
    GeometricMixtureTurns,
    RecordedWorkload,
    SyntheticWorkload,
    TokenScaling,
    WorkloadParams,
    load_field_mapping,
    read_mapped_rows,
    sessions_from_labels,
    split_history_included,
    stream_stats,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = Path(os.environ.get("OFFLOAD_RL_SHARED", REPO.parent / "shared"))
DEFAULT_OUT = REPO / "offload_rl" / "data" / "workload_default.json"

BURSTGPT = "burstgpt_sessions_first1000.csv"
AZURE_CONV = "AzureLLMInferenceTrace_conv.csv"

CELL_SHARE = 1.0 / 25.0
"""Share of the Azure conv service's traffic that one edge cell sees (about 0.22 requests/s)."""

QUANTILE_PROBS: list[float] = [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
QUANTILE_PROBS += [0.95, 0.99, 1.0]

MAX_TURNS = 64
CHECK_SAMPLES = 200_000

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def fit_geometric_mixture(
    turns: npt.NDArray[np.int64], iterations: int = 5000
) -> tuple[list[float], list[float], float]:
    """Two-component geometric mixture on {1, 2, ...} by EM: (weights, means, log-likelihood)."""
    k = turns.astype(float)
    w, p1, p2 = 0.5, 0.6, 0.15
    for _ in range(iterations):
        a = w * p1 * (1 - p1) ** (k - 1)
        b = (1 - w) * p2 * (1 - p2) ** (k - 1)
        r = a / (a + b)
        w = float(r.mean())
        p1 = float(r.sum() / (r * k).sum())
        p2 = float((1 - r).sum() / ((1 - r) * k).sum())
    loglik = float(np.log(w * p1 * (1 - p1) ** (k - 1) + (1 - w) * p2 * (1 - p2) ** (k - 1)).sum())
    return [round(w, 4), round(1 - w, 4)], [round(1 / p1, 4), round(1 / p2, 4)], loglik


def empirical(values: FloatArray, digits: int = 1) -> EmpiricalDist:
    quantiles = np.quantile(np.asarray(values, dtype=float), QUANTILE_PROBS)
    return EmpiricalDist(probs=QUANTILE_PROBS, values=[round(float(q), digits) for q in quantiles])


def describe(values: FloatArray) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    q = np.percentile(v, [10, 50, 90, 99])
    return {"mean": float(v.mean()), "p10": q[0], "p50": q[1], "p90": q[2], "p99": q[3]}


def _source(
    path: Path | None, mapping: Path | None, default: Path, builtin: str
) -> tuple[Path, FieldMapping]:
    """A log and its field mapping: the given ones, else the recording's built-in mapping."""
    if path is None:
        return default, BUILTIN_MAPPINGS[builtin]
    if mapping is None:
        raise ConfigError(f"{path}: give its field mapping (--sessions-mapping/--lengths-mapping)")
    return path, load_field_mapping(mapping)


def followup_new_tokens(path: Path, mapping: FieldMapping, stream: Any) -> IntArray:
    """New tokens of follow-up turns that the log shows directly: with inputs that include
    the history, only the appended messages that are observable (``input - previous input -
    previous output >= 1``); otherwise every follow-up's input."""
    if mapping.input_includes_history:
        rows, _ = read_mapped_rows(path, mapping)
        if rows.session_labels is not None:
            split = split_history_included(
                sessions_from_labels(rows.session_labels), rows.input_tokens, rows.output_tokens
            )
            return np.asarray(split.new_tokens[split.appended_mask])
    first = np.ones(len(stream.session), dtype=bool)
    first[stream.next_index[stream.next_index >= 0]] = False
    return np.asarray(stream.new_tokens[~first])


def fit(
    sessions: tuple[Path, FieldMapping], lengths: tuple[Path, FieldMapping]
) -> tuple[WorkloadParams, dict[str, dict[str, float]]]:
    """The fitted parameters and the recorded statistics they were fitted to."""
    burst = RecordedWorkload.from_mapping(*sessions, TokenScaling.unlimited())
    stream = burst.stream
    turns = np.bincount(stream.session)
    has_next = stream.next_index >= 0
    gaps = stream.arrival_s[stream.next_index[has_next]] - stream.arrival_s[has_next]
    first_arrival = np.full(len(turns), np.inf)
    last_arrival = np.zeros(len(turns))
    np.minimum.at(first_arrival, stream.session, stream.arrival_s)
    np.maximum.at(last_arrival, stream.session, stream.arrival_s)
    durations = (last_arrival - first_arrival)[turns > 1]

    followup_new = followup_new_tokens(*sessions, stream)
    azure, _ = read_mapped_rows(*lengths)
    azure_rate = (len(azure.arrival_s) - 1) / float(azure.arrival_s[-1])

    weights, means, loglik = fit_geometric_mixture(turns)
    mean_turns = float(np.dot(weights, means))
    session_rate = azure_rate / mean_turns * CELL_SHARE
    warmup = float(math.ceil(np.percentile(durations, 90) / 100.0) * 100.0)

    recorded = {
        "burstgpt_turns_per_session": describe(turns.astype(float)),
        "burstgpt_turn_gap_s": describe(gaps),
        "burstgpt_followup_new_tokens": describe(followup_new.astype(float)),
        "azure_conv_prompt_tokens": describe(azure.input_tokens.astype(float)),
        "azure_conv_output_tokens": describe(azure.output_tokens.astype(float)),
    }
    recorded["burstgpt_turns_per_session"]["single_turn_share"] = float((turns == 1).mean())
    recorded["burstgpt_turns_per_session"]["multi_turn_request_share"] = float(
        turns[turns > 1].sum() / turns.sum()
    )
    params = WorkloadParams(
        session_rate_per_s=round(session_rate, 5),
        warmup_s=warmup,
        turns=GeometricMixtureTurns(weights=weights, means=means, max_turns=MAX_TURNS),
        gap_s=empirical(gaps),
        first_prompt_tokens=empirical(azure.input_tokens.astype(float)),
        followup_prompt_tokens=empirical(followup_new.astype(float)),
        output_tokens=empirical(azure.output_tokens.astype(float)),
        provenance={
            "fitted_by": "experiments/fitting/fit_workload.py",
            "per_cell": (
                f"session_rate_per_s = Azure conv {azure_rate:.3f} requests/s / "
                f"{mean_turns:.3f} mean turns x cell share {CELL_SHARE:g}: one edge cell, "
                "not the whole service"
            ),
            "turns": (
                f"mixture of two geometrics fitted to BurstGPT's {len(turns)} sessions "
                f"(EM, log-likelihood {loglik:.1f})"
            ),
            "gap_s": (
                f"empirical quantiles of BurstGPT's {len(gaps)} gaps between consecutive turns"
            ),
            "warmup_s": "90th percentile of a multi-turn BurstGPT session's duration",
            "first_prompt_tokens": f"empirical quantiles of {AZURE_CONV} ContextTokens",
            "followup_prompt_tokens": (
                f"empirical quantiles of BurstGPT's {len(followup_new)} observed appended messages "
                "(input - previous input - previous output >= 1)"
            ),
            "output_tokens": "empirical quantiles of Azure conv GeneratedTokens",
            "recorded": recorded,
        },
    )
    return params, recorded


def _row(name: str, fitted: float, recorded: float) -> str:
    return f"  {name:<34} {fitted:>12.2f} {recorded:>12.2f}"


def report(params: WorkloadParams, recorded: dict[str, dict[str, float]]) -> None:
    """Print fitted vs recorded statistics, session by session and for a sampled stream."""
    rng = np.random.default_rng(0)
    turns = params.turns.sample(rng, CHECK_SAMPLES)
    checks = {
        "burstgpt_turns_per_session": turns.astype(float),
        "burstgpt_turn_gap_s": params.gap_s.sample(rng, CHECK_SAMPLES),
        "burstgpt_followup_new_tokens": np.rint(
            params.followup_prompt_tokens.sample(rng, CHECK_SAMPLES)
        ),
        "azure_conv_prompt_tokens": np.rint(params.first_prompt_tokens.sample(rng, CHECK_SAMPLES)),
        "azure_conv_output_tokens": np.rint(params.output_tokens.sample(rng, CHECK_SAMPLES)),
    }
    print(f"  {'statistic':<34} {'fitted':>12} {'recorded':>12}")
    for group, values in checks.items():
        print(f"{group}")
        fitted = describe(values)
        for key, value in fitted.items():
            print(_row(key, value, recorded[group][key]))
    single = recorded["burstgpt_turns_per_session"]
    print("burstgpt_turns_per_session")
    print(_row("single_turn_share", float((turns == 1).mean()), single["single_turn_share"]))
    print(
        _row(
            "multi_turn_request_share",
            float(turns[turns > 1].sum() / turns.sum()),
            single["multi_turn_request_share"],
        )
    )
    sample = SyntheticWorkload(params, TokenScaling.unlimited()).sample(rng, 20_000)
    stats = stream_stats(sample)
    print(
        f"sampled stream of 20000 requests (per cell): {stats['requests_per_s']:.3f} requests/s, "
        f"{stats['sessions']:.0f} sessions, {stats['multi_turn_request_share']:.1%} of requests "
        f"in multi-turn sessions, median in-stream turn gap {stats['turn_gap_s_p50']:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the ../shared folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    parser.add_argument("--sessions", type=Path, help=f"log with sessions (default {BURSTGPT})")
    parser.add_argument("--sessions-mapping", type=Path, help="its field mapping (YAML)")
    parser.add_argument("--lengths", type=Path, help=f"log of lengths (default {AZURE_CONV})")
    parser.add_argument("--lengths-mapping", type=Path, help="its field mapping (YAML)")
    args = parser.parse_args(argv)
    workloads = args.shared / "workloads"
    try:
        sessions = _source(args.sessions, args.sessions_mapping, workloads / BURSTGPT, "burstgpt")
        lengths = _source(args.lengths, args.lengths_mapping, workloads / AZURE_CONV, "azure")
    except OffloadRLError as err:
        print(f"fit_workload: {err}", file=sys.stderr)
        return 2
    missing = [str(path) for path, _ in (sessions, lengths) if not path.is_file()]
    if missing:
        print(
            f"fit_workload: needs {', '.join(missing)} (the ../shared reference data, absent "
            "here; --sessions/--lengths name your own logs); the committed "
            "workload_default.json stays as it is",
            file=sys.stderr,
        )
        return 2
    try:
        params, recorded = fit(sessions, lengths)
    except OffloadRLError as err:
        print(f"fit_workload: {err}", file=sys.stderr)
        return 2
    report(params, recorded)
    text = json.dumps(params.model_dump(mode="json"), indent=2) + "\n"
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"fit_workload: {args.out} differs from a fresh fit", file=sys.stderr)
            return 1
        print(f"{args.out} matches a fresh fit")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
