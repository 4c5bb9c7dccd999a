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

* **Session correlation** from BurstGPT: correlations of normal scores (ranks mapped through
  the inverse normal CDF) of consecutive outputs, of consecutive observed follow-up messages,
  and of a follow-up message with its own output; they are the parameters of the Gaussian
  copula in ``offload_rl/workloads/correlation.py`` and are written to
  ``workload_session_correlation.json``. The ``default`` workload stays independent; the
  ``default-correlated`` workload (or a parameters file with ``correlation:``) opts in.
  Normal-score and rank correlations do not depend on the marginals, so they carry over to
  Azure's lengths; the log-length Pearson correlations are printed beside them.

The script writes ``offload_rl/data/workload_default.json`` and
``offload_rl/data/workload_session_correlation.json`` and prints fitted vs recorded statistics.
``--check`` writes nothing and fails if a committed file differs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from statistics import NormalDist
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
from offload_rl.workloads.correlation import CORRELATION_RESOURCE, SessionCorrelation

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
CORRELATION_SAMPLES = 50_000

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


def mean_ranks(values: npt.NDArray[Any]) -> FloatArray:
    """Ranks ``0..n-1``, tied values sharing their mean rank (Spearman's convention)."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], len(v)]
    ranks = np.empty(len(v))
    ranks[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    return ranks


def normal_scores(values: npt.NDArray[Any]) -> FloatArray:
    """``Phi^-1((rank + 1/2) / n)``: the Gaussian copula's view of a sample, whatever its
    marginal."""
    inv = NormalDist().inv_cdf
    return np.asarray([inv((r + 0.5) / len(values)) for r in mean_ranks(values).tolist()])


CORRELATIONS = ("output_lag1", "new_lag1", "new_output")


def _corr(a: FloatArray, b: FloatArray) -> float:
    """Pearson's correlation; NaN for fewer than 3 pairs or a constant side (nothing to fit)."""
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def fitted_correlation(correlations: dict[str, dict[str, float]]) -> SessionCorrelation:
    """The copula's parameters: the normal-score correlations (0 where a log shows none)."""
    values = {name: correlations[name]["normal_scores"] for name in CORRELATIONS}
    return SessionCorrelation(
        **{k: round(v, 3) if math.isfinite(v) else 0.0 for k, v in values.items()}
    )


def length_correlations(
    next_index: IntArray, new: IntArray, output: IntArray, followup: npt.NDArray[np.bool_]
) -> dict[str, dict[str, float]]:
    """Per pair set, the normal-score, rank and log-length Pearson correlations and the count.

    ``output_lag1``: outputs of consecutive turns; ``new_lag1``: new tokens of consecutive
    turns that are both observed follow-ups (``followup``); ``new_output``: a follow-up's new
    tokens with its own output. New tokens are scored among the follow-ups only (first prompts
    come from another distribution)."""
    has = next_index >= 0
    i, j = np.flatnonzero(has), next_index[has]
    both = followup[i] & followup[j]
    z_out = normal_scores(output)
    z_new = np.zeros(len(new))
    z_new[followup] = normal_scores(new[followup])
    f = np.flatnonzero(followup)
    pairs = {
        "output_lag1": (z_out[i], z_out[j], output[i], output[j]),
        "new_lag1": (z_new[i[both]], z_new[j[both]], new[i[both]], new[j[both]]),
        "new_output": (z_new[f], z_out[f], new[f], output[f]),
    }
    result = {}
    for name, (za, zb, a, b) in pairs.items():
        result[name] = {
            "normal_scores": _corr(za, zb),
            "spearman": _corr(mean_ranks(a), mean_ranks(b)),
            "log_pearson": _corr(np.log(a), np.log(b)),
            "pairs": float(len(a)),
        }
    return result


def stream_correlations(requests: list[Any]) -> dict[str, dict[str, float]]:
    """:func:`length_correlations` of a sampled stream; turn 0 of a session in the window may
    hold folded history, so only later turns count as follow-ups."""
    session = np.asarray([r.session_id for r in requests], dtype=np.int64)
    order = np.argsort(session, kind="stable")
    nxt = np.full(len(session), -1, dtype=np.int64)
    same = np.flatnonzero(session[order][1:] == session[order][:-1])
    nxt[order[same]] = order[same + 1]
    new = np.asarray([r.new_tokens for r in requests], dtype=np.int64)
    output = np.asarray([r.output_tokens for r in requests], dtype=np.int64)
    followup = np.asarray([r.turn >= 1 for r in requests])
    return length_correlations(nxt, new, output, followup)


def _source(
    path: Path | None, mapping: Path | None, default: Path, builtin: str
) -> tuple[Path, FieldMapping]:
    """A log and its field mapping: the given ones, else the recording's built-in mapping."""
    if path is None:
        return default, BUILTIN_MAPPINGS[builtin]
    if mapping is None:
        raise ConfigError(f"{path}: give its field mapping (--sessions-mapping/--lengths-mapping)")
    return path, load_field_mapping(mapping)


def observed_followups(path: Path, mapping: FieldMapping, stream: Any) -> npt.NDArray[np.bool_]:
    """Follow-up turns whose new tokens the log shows directly: with inputs that include the
    history, only the appended messages that are observable (``input - previous input -
    previous output >= 1``); otherwise every follow-up."""
    if mapping.input_includes_history:
        rows, _ = read_mapped_rows(path, mapping)
        if rows.session_labels is not None:
            split = split_history_included(
                sessions_from_labels(rows.session_labels), rows.input_tokens, rows.output_tokens
            )
            return np.asarray(split.appended_mask)
    first = np.ones(len(stream.session), dtype=bool)
    first[stream.next_index[stream.next_index >= 0]] = False
    return ~first


def fit(
    sessions: tuple[Path, FieldMapping], lengths: tuple[Path, FieldMapping]
) -> tuple[WorkloadParams, dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """The fitted parameters (``correlation`` set), the recorded statistics they were fitted
    to, and the recorded length correlations."""
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

    followup = observed_followups(*sessions, stream)
    followup_new = stream.new_tokens[followup]
    correlations = length_correlations(
        stream.next_index, stream.new_tokens, stream.output_tokens, followup
    )
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
        correlation=fitted_correlation(correlations),
    )
    return params, recorded, correlations


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
    independent = params.model_copy(update={"correlation": None})
    sample = SyntheticWorkload(independent, TokenScaling.unlimited()).sample(rng, 20_000)
    stats = stream_stats(sample)
    print(
        f"sampled stream of 20000 requests (per cell): {stats['requests_per_s']:.3f} requests/s, "
        f"{stats['sessions']:.0f} sessions, {stats['multi_turn_request_share']:.1%} of requests "
        f"in multi-turn sessions, median in-stream turn gap {stats['turn_gap_s_p50']:.0f} s"
    )


def synthetic_correlations(params: WorkloadParams) -> dict[str, dict[str, float]]:
    """Length correlations of a sampled stream of the correlated synthetic workload."""
    workload = SyntheticWorkload(params, TokenScaling.unlimited())
    return stream_correlations(workload.sample(np.random.default_rng(1), CORRELATION_SAMPLES))


def report_correlations(
    recorded: dict[str, dict[str, float]], synthetic: dict[str, dict[str, float]]
) -> None:
    """Print recorded vs synthetic correlations of lengths within sessions."""
    print(f"length correlations within sessions ({CORRELATION_SAMPLES} sampled requests)")
    print(f"  {'statistic':<34} {'synthetic':>12} {'recorded':>12}")
    for name in CORRELATIONS:
        print(f"{name} ({recorded[name]['pairs']:.0f} recorded pairs)")
        for key in ("normal_scores", "spearman", "log_pearson"):
            print(_row(key, synthetic[name][key], recorded[name][key]))


def correlation_document(
    params: WorkloadParams,
    recorded: dict[str, dict[str, float]],
    synthetic: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """What ``workload_session_correlation.json`` holds: the parameters and their evidence."""
    assert params.correlation is not None
    return {
        "correlation": params.correlation.model_dump(mode="json"),
        "provenance": {
            "fitted_by": "experiments/fitting/fit_workload.py",
            "what": (
                "correlations of normal scores of BurstGPT lengths within sessions: consecutive "
                "outputs, consecutive observed follow-up messages, a follow-up message with its "
                "output; Gaussian copula parameters (offload_rl/workloads/correlation.py)"
            ),
            "recorded": {k: {m: round(v, 4) for m, v in d.items()} for k, d in recorded.items()},
            "synthetic": {k: {m: round(v, 4) for m, v in d.items()} for k, d in synthetic.items()},
        },
    }


def write_or_check(path: Path, text: str, check: bool) -> bool:
    """Write ``text`` to ``path``, or with ``check`` say whether the committed file matches."""
    if not check:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return True
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    if current != text:
        print(f"fit_workload: {path} differs from a fresh fit", file=sys.stderr)
        return False
    print(f"{path} matches a fresh fit")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the ../shared folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument(
        "--correlation-out",
        type=Path,
        help=f"session-correlation JSON to write (default: {CORRELATION_RESOURCE} beside --out)",
    )
    parser.add_argument("--check", action="store_true", help="compare with the outputs only")
    parser.add_argument("--sessions", type=Path, help=f"log with sessions (default {BURSTGPT})")
    parser.add_argument("--sessions-mapping", type=Path, help="its field mapping (YAML)")
    parser.add_argument("--lengths", type=Path, help=f"log of lengths (default {AZURE_CONV})")
    parser.add_argument("--lengths-mapping", type=Path, help="its field mapping (YAML)")
    args = parser.parse_args(argv)
    correlation_out = args.correlation_out or args.out.with_name(CORRELATION_RESOURCE)
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
        params, recorded, correlations = fit(sessions, lengths)
    except OffloadRLError as err:
        print(f"fit_workload: {err}", file=sys.stderr)
        return 2
    report(params, recorded)
    synthetic = synthetic_correlations(params)
    report_correlations(correlations, synthetic)
    # The default stays independent: its file holds every key but the opt-in correlation.
    default = params.model_dump(mode="json", exclude={"correlation"})
    document = correlation_document(params, correlations, synthetic)
    ok = write_or_check(args.out, json.dumps(default, indent=2) + "\n", args.check)
    text = json.dumps(document, indent=2) + "\n"
    ok = write_or_check(correlation_out, text, args.check) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
