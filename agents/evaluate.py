"""The evaluation harness: every policy on exactly the same episodes, side by side.

An *episode set* is drawn once from ``seed``: per trace family, ``episodes`` episodes, each a
pinned ``(trace, offset_s, workload_seed)``. Every policy runs every episode with the
environment's reset options pinned, so differences between policies are differences between
decisions, not between draws. Results are independent of ``workers``: each (policy, episode)
pair is a self-contained task (the environment is re-seeded and the policy reset at its start)
and results are assembled in a fixed order.

Outputs under ``out`` (see :func:`write_outputs`): ``metrics.json`` / ``metrics.csv``
(deterministic: no timestamps), ``run.json`` (wall time, workers: what may differ between two
runs), ``tb/<policy>/`` TensorBoard runs with identical tags, ``report.md`` and PNG plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import re
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from agents.policies import (
    AnyPolicy,
    PolicyLoader,
    is_deployable,
    policy_loaders,
    register_policy_loader,
    resolve_policy,
)
from offload_rl.cost_model import TIERS
from offload_rl.errors import ConfigError
from offload_rl.heuristics import Policy
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import ResolvedScenario, resolve_scenario

if TYPE_CHECKING:
    from envs.split_cache import SplitCacheEnv

METRICS_SCHEMA_VERSION = 1

# Per-request columns collected from the environment's info (and the state before the step).
FLOAT_COLUMNS: tuple[str, ...] = ("reward", "latency_s", "ttft_s", "energy_j", "usd", "mbps")
INT_COLUMNS: tuple[str, ...] = ("tier_index",)
BOOL_COLUMNS: tuple[str, ...] = (
    "slo_violated",
    "cache_hit",
    "has_context",
    "invalid_action",
    "keep",
    "private",
)


# --------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One pinned episode: the same for every policy."""

    index: int
    family: str
    trace: int  # index into the resolved scenario's uplinks
    trace_name: str
    offset_s: float
    workload_seed: int

    def reset_options(self) -> dict[str, Any]:
        return {"trace": self.trace, "offset_s": self.offset_s, "workload_seed": self.workload_seed}


def build_episodes(resolved: ResolvedScenario, per_family: int, seed: int) -> list[Episode]:
    """``per_family`` episodes per trace family, drawn from ``seed``.

    Each family has its own generator (seeded by ``seed`` and the family's name), so adding a
    family or changing ``per_family`` never moves another family's episodes. Traces are visited
    in a seeded permutation (every trace once before any twice); offsets are uniform over the
    trace's period.
    """
    if per_family < 1:
        raise ConfigError(f"--episodes must be >= 1, got {per_family}")
    by_family: dict[str, list[int]] = {}
    for i, trace in enumerate(resolved.uplinks):
        by_family.setdefault(trace.family, []).append(i)
    episodes: list[Episode] = []
    for family in sorted(by_family):
        members = by_family[family]
        rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
        order = rng.permutation(len(members))
        for j in range(per_family):
            t = members[int(order[j % len(members)])]
            trace = resolved.uplinks[t]
            episodes.append(
                Episode(
                    index=len(episodes),
                    family=family,
                    trace=t,
                    trace_name=trace.name,
                    offset_s=round(float(rng.uniform(0.0, trace.duration_s)), 3),
                    workload_seed=int(rng.integers(2**31 - 1)),
                )
            )
    return episodes


# --------------------------------------------------------------------------------------------
# Running one episode
# --------------------------------------------------------------------------------------------


def decider(policy: AnyPolicy, env: SplitCacheEnv) -> Callable[[], int]:
    """The policy's next action: hindsight policies (the oracle) read the environment,
    deployable ones see only the decision state and the mask."""
    act_env: Callable[[SplitCacheEnv], int] | None = getattr(policy, "act_env", None)
    if act_env is not None:
        return lambda: int(act_env(env))
    act = cast(Policy, policy).act
    return lambda: int(act(env.state, env.action_masks()))


def run_episode(policy: AnyPolicy, env: SplitCacheEnv, episode: Episode) -> dict[str, np.ndarray]:
    """Run ``policy`` over one pinned episode; per-request columns (see ``*_COLUMNS``)."""
    env.reset(seed=episode.workload_seed, options=episode.reset_options())
    policy.reset()
    cols: dict[str, list[Any]] = {c: [] for c in (*FLOAT_COLUMNS, *INT_COLUMNS, *BOOL_COLUMNS)}
    L = env.layout.n_layers
    decide = decider(policy, env)
    while True:
        state = env.state
        action = decide()
        _, reward, _, truncated, info = env.step(action)
        tier_index = int(info["action"]) >> 1
        cols["reward"].append(float(reward))
        cols["latency_s"].append(float(info["latency_s"]))
        cols["ttft_s"].append(float(info["ttft_s"]))
        cols["energy_j"].append(float(info["energy_j"]))
        cols["usd"].append(float(info.get("usd", 0.0)))
        samples = state.throughput_mbps
        measured = info.get("measured_mbps", samples[-1] if len(samples) else 0.0)
        cols["mbps"].append(float(measured))
        cols["tier_index"].append(min(tier_index, L + 1))
        cols["slo_violated"].append(bool(info["slo_violated"]))
        cols["cache_hit"].append(bool(info["cache_hit"]))
        cols["has_context"].append(state.context_tokens > 0)
        cols["invalid_action"].append(bool(info.get("invalid_action", False)))
        cols["keep"].append(bool(info.get("keep", tier_index <= L and action & 1)))
        cols["private"].append(bool(info.get("private", state.private)))
        if truncated:
            break
    out: dict[str, np.ndarray] = {}
    for c in FLOAT_COLUMNS:
        out[c] = np.asarray(cols[c], dtype=np.float64)
    for c in INT_COLUMNS:
        out[c] = np.asarray(cols[c], dtype=np.int64)
    for c in BOOL_COLUMNS:
        out[c] = np.asarray(cols[c], dtype=bool)
    return out


# -- worker side: module-level so that spawn/forkserver processes can import it ---------------


@dataclass(frozen=True)
class _WorkerConfig:
    scenario: Scenario
    requests: int
    seed: int
    policies: tuple[str, ...]
    loaders: dict[str, PolicyLoader] = field(default_factory=dict)


_WORKER: dict[str, Any] = {}


def _init_worker(config: _WorkerConfig, resolved: ResolvedScenario) -> None:
    """Build the environment once per process (and register the parent's policy loaders).

    ``resolved`` holds only the traces the episode set uses (see :func:`_episode_subset`), so
    a worker reads no files and receives a few MB rather than every trace of every family.
    """
    from envs.split_cache import SplitCacheEnv

    for prefix, loader in config.loaders.items():
        register_policy_loader(prefix, loader)
    _WORKER["config"] = config
    _WORKER["env"] = SplitCacheEnv(resolved, episode_requests=config.requests)
    _WORKER["policies"] = {}


def _run_task(policy_index: int, episode: Episode) -> tuple[int, int, dict[str, np.ndarray]]:
    config: _WorkerConfig = _WORKER["config"]
    cache: dict[int, AnyPolicy] = _WORKER["policies"]
    policy = cache.get(policy_index)
    if policy is None:
        spec = config.policies[policy_index]
        policy = resolve_policy(spec, config.scenario, seed=config.seed)
        cache[policy_index] = policy
    return policy_index, episode.index, run_episode(policy, _WORKER["env"], episode)


# --------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Per policy, per episode, the per-request columns (``records[policy][episode]``)."""

    policies: list[str]
    deployable: dict[str, bool]
    episodes: list[Episode]
    records: dict[str, list[dict[str, np.ndarray]]]
    n_layers: int
    args: dict[str, Any]
    wall_s: float = 0.0
    workers: int = 1


def add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    """``--scenario``, ``--traces``, ``--uplink-scale`` and ``--greedy``: what the analysis
    scripts in ``experiments/`` run on (see :func:`prepare_scenario`)."""
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--traces", nargs="+", default=None, help="trace files or folders")
    parser.add_argument("--uplink-scale", type=float, default=None)
    parser.add_argument("--greedy", default="greedy", help="the greedy variant (e.g. greedy-last)")


def prepare_scenario(
    scenario: Scenario,
    traces: Sequence[str] | None = None,
    uplink_scale: float | None = None,
    requests: int | None = None,
) -> Scenario:
    """Apply the command-line overrides: trace sources, uplink scaling, episode length."""
    if traces:
        scenario = scenario.with_traces([str(t) for t in traces])
    if uplink_scale is not None:
        if not (math.isfinite(uplink_scale) and uplink_scale > 0):
            raise ConfigError(f"--uplink-scale must be a positive number, got {uplink_scale}")
        sources = [
            s.model_copy(update={"uplink_scale": uplink_scale}) for s in scenario.network.sources()
        ]
        network = scenario.network.model_copy(update={"traces": sources})
        scenario = scenario.model_copy(update={"network": network})
    if requests is not None:
        if requests < 1:
            raise ConfigError(f"--requests must be >= 1, got {requests}")
        episode = scenario.episode.model_copy(update={"requests": requests})
        scenario = scenario.model_copy(update={"episode": episode})
    return scenario


def evaluate(
    policies: Sequence[str],
    scenario: Scenario,
    episodes_per_family: int = 8,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
    args: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Run every policy over the same episode set (see the module docstring)."""
    started = time.perf_counter()
    specs = [p.strip() for p in policies if p.strip()]
    if not specs:
        raise ConfigError("--policies: give at least one policy")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"--policies: a policy is listed twice: {', '.join(specs)}")
    # resolve every policy here first: bad names fail before any work starts
    loaded = [resolve_policy(s, scenario, seed=seed) for s in specs]
    deployable = {s: is_deployable(p) for s, p in zip(specs, loaded, strict=True)}
    resolved = resolve_scenario(scenario)
    episodes = build_episodes(resolved, episodes_per_family, seed)
    config = _WorkerConfig(
        scenario=scenario,
        requests=scenario.episode.requests,
        seed=seed,
        policies=tuple(specs),
        loaders=policy_loaders(),
    )
    subset, runnable = _episode_subset(resolved, episodes)
    tasks = [(p, ep) for p in range(len(specs)) for ep in runnable]
    results: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    with _ProgressBar(progress, len(tasks)) as advance:
        if workers <= 1:
            _init_worker(config, subset)
            _WORKER["policies"] = dict(enumerate(loaded))
            for p, ep in tasks:
                _, _, rec = _run_task(p, ep)
                results[(p, ep.index)] = rec
                advance()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(config, subset),
            ) as pool:
                pending: set[Future[tuple[int, int, dict[str, np.ndarray]]]] = {
                    pool.submit(_run_task, p, ep) for p, ep in tasks
                }
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        p, e, rec = fut.result()
                        results[(p, e)] = rec
                        advance()
    records = {s: [results[(p, ep.index)] for ep in episodes] for p, s in enumerate(specs)}
    return EvaluationResult(
        policies=specs,
        deployable=deployable,
        episodes=episodes,
        records=records,
        n_layers=resolved.n_layers,
        args=dict(args or {}),
        wall_s=time.perf_counter() - started,
        workers=max(workers, 1),
    )


def _episode_subset(
    resolved: ResolvedScenario, episodes: list[Episode]
) -> tuple[ResolvedScenario, list[Episode]]:
    """The scenario reduced to the traces the episodes use, and the episodes re-indexed into
    it (same traces, offsets and seeds: the environment's results do not change)."""
    used = sorted({ep.trace for ep in episodes})
    position = {t: i for i, t in enumerate(used)}
    subset = replace(
        resolved,
        uplinks=[resolved.uplinks[t] for t in used],
        downlinks=[resolved.downlinks[t] for t in used],
    )
    return subset, [replace(ep, trace=position[ep.trace]) for ep in episodes]


class _ProgressBar:
    """A rich progress bar on stderr (or nothing); yields an ``advance()`` callable."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._progress: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("evaluating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        task = self._progress.add_task("evaluate", total=self.total)
        progress = self._progress
        return lambda: progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

# two-sided 95% Student t quantiles, df = 1..30
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """Two-sided 95% quantile of Student's t (table to 30, then a 1/df expansion)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    return 1.959964 + 2.37 / df


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (t over ``values``)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), math.nan
    return float(x.mean()), float(t_quantile_975(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def _finite(x: float) -> float | None:
    """JSON-safe: NaN/inf (an undefined rate) become null."""
    return float(x) if math.isfinite(x) else None


def _concat(records: Sequence[dict[str, np.ndarray]], column: str) -> np.ndarray:
    return np.concatenate([r[column] for r in records]) if records else np.zeros(0)


def summarise(records: Sequence[dict[str, np.ndarray]], n_layers: int) -> dict[str, Any]:
    """Summary metrics of a list of episodes' records."""
    per_episode = [float(r["reward"].mean()) for r in records if r["reward"].size]
    mean, half = mean_ci95(per_episode)
    lat = _concat(records, "latency_s")
    tier = _concat(records, "tier_index").astype(np.int64)
    n = int(lat.size)
    has_ctx = _concat(records, "has_context").astype(bool)
    hits = _concat(records, "cache_hit").astype(bool)
    L = n_layers
    tier_names = np.array(["edge"] + ["split"] * (L - 1) + ["device", "cloud"], dtype=object)
    tiers_of = tier_names[np.clip(tier, 0, L + 1)] if n else np.zeros(0, dtype=object)
    split_counts = np.bincount(np.clip(tier, 0, L + 1), minlength=L + 2) if n else np.zeros(L + 2)

    def pct(q: float) -> float | None:
        return _finite(float(np.percentile(lat, q))) if n else None

    def rate(column: str) -> float | None:
        return _finite(float(_concat(records, column).mean())) if n else None

    n_ctx = int(has_ctx.sum())
    return {
        "mean_reward": _finite(mean),
        "mean_reward_ci95": _finite(half),
        "mean_reward_ci95_low": _finite(mean - half),
        "mean_reward_ci95_high": _finite(mean + half),
        "episodes": len(per_episode),
        "n_requests": n,
        "mean_latency_s": _finite(float(lat.mean())) if n else None,
        "latency_p50_s": pct(50),
        "latency_p95_s": pct(95),
        "latency_p99_s": pct(99),
        "mean_ttft_s": rate("ttft_s"),
        "slo_violation_rate": rate("slo_violated"),
        "energy_j_per_request": rate("energy_j"),
        "usd_per_request": rate("usd"),
        "cache_hit_rate": _finite(float(hits[has_ctx].mean())) if n_ctx else None,
        "requests_with_context": n_ctx,
        "keep_rate": rate("keep"),
        "invalid_action_rate": rate("invalid_action"),
        "tier_share": {t: float((tiers_of == t).mean()) if n else 0.0 for t in TIERS},
        "split_share": {
            **{str(k): float(split_counts[k] / n) if n else 0.0 for k in range(L + 1)},
            "cloud": float(split_counts[L + 1] / n) if n else 0.0,
        },
    }


def compute_metrics(result: EvaluationResult) -> dict[str, Any]:
    """The content of ``metrics.json`` (deterministic: no wall-clock values)."""
    families = sorted({ep.family for ep in result.episodes})
    policies: dict[str, Any] = {}
    fam_metrics: dict[str, dict[str, Any]] = {f: {} for f in families}
    for spec in result.policies:
        recs = result.records[spec]
        policies[spec] = {
            "deployable": result.deployable[spec],
            **summarise(recs, result.n_layers),
        }
        for f in families:
            sub = [r for r, ep in zip(recs, result.episodes, strict=True) if ep.family == f]
            fam_metrics[f][spec] = {
                "deployable": result.deployable[spec],
                **summarise(sub, result.n_layers),
            }
    best_deployable = _best_policy({k: v for k, v in policies.items() if v["deployable"]})
    if best_deployable is not None:
        _add_paired(policies, result.records, None, best_deployable, result)
        for f in families:
            ref = _best_policy({k: v for k, v in fam_metrics[f].items() if v["deployable"]})
            if ref is not None:
                _add_paired(fam_metrics[f], result.records, f, ref, result)
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "args": result.args,
        "n_layers": result.n_layers,
        "best_policy": _best_policy(policies),
        "best_deployable_policy": best_deployable,
        "policies": policies,
        "families": fam_metrics,
        "episodes": [asdict(ep) for ep in result.episodes],
    }


def _add_paired(
    scope: dict[str, Any],
    records: dict[str, list[dict[str, np.ndarray]]],
    family: str | None,
    reference: str,
    result: EvaluationResult,
) -> None:
    """Per policy: mean reward minus ``reference``'s, paired over the same episodes, with its
    95% CI (much tighter than comparing two unpaired CIs: the episodes are shared)."""
    keep = [family is None or ep.family == family for ep in result.episodes]
    ref = np.array([r["reward"].mean() for r, k in zip(records[reference], keep, strict=True) if k])
    for spec, m in scope.items():
        mine = np.array([r["reward"].mean() for r, k in zip(records[spec], keep, strict=True) if k])
        diff, half = mean_ci95(mine - ref)
        m["paired_reference"] = reference
        m["paired_diff"] = _finite(diff)
        m["paired_diff_ci95"] = _finite(half)


def _best_policy(policies: dict[str, Any]) -> str | None:
    scored = [(v["mean_reward"], k) for k, v in policies.items() if v["mean_reward"] is not None]
    return max(scored)[1] if scored else None


# --------------------------------------------------------------------------------------------
# Writing: metrics.json / metrics.csv / run.json / TensorBoard / report.md + plots
# --------------------------------------------------------------------------------------------

CSV_FIELDS: tuple[str, ...] = (
    "scope",
    "family",
    "policy",
    "deployable",
    "mean_reward",
    "mean_reward_ci95",
    "episodes",
    "n_requests",
    "mean_latency_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "mean_ttft_s",
    "slo_violation_rate",
    "energy_j_per_request",
    "usd_per_request",
    "cache_hit_rate",
    "keep_rate",
    "invalid_action_rate",
    "paired_reference",
    "paired_diff",
    "paired_diff_ci95",
)


def run_dir_name(spec: str) -> str:
    """A folder name for a policy's TensorBoard run (``onnx:a/b.onnx`` -> ``onnx_a_b.onnx``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_") or "policy"


def write_outputs(result: EvaluationResult, out: Path) -> dict[str, Any]:
    """Write every output file under ``out``; returns the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(result)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    _write_csv(metrics, out / "metrics.csv")
    run_info = {
        "wall_s": round(result.wall_s, 3),
        "workers": result.workers,
        "out": str(out),
        "python": sys.version.split()[0],
    }
    (out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    _write_tensorboard(result, metrics, out / "tb")
    plots = _write_plots(result, metrics, out)
    _write_report(metrics, plots, out / "report.md")
    return metrics


def _write_csv(metrics: dict[str, Any], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*CSV_FIELDS, *_share_fields(metrics)])
        writer.writeheader()
        for spec, m in metrics["policies"].items():
            writer.writerow(_csv_row("all", "", spec, m))
        for family, per_policy in metrics["families"].items():
            for spec, m in per_policy.items():
                writer.writerow(_csv_row("family", family, spec, m))


def _share_fields(metrics: dict[str, Any]) -> list[str]:
    any_policy = next(iter(metrics["policies"].values()))
    return [f"tier_share_{t}" for t in any_policy["tier_share"]] + [
        f"split_share_{k}" for k in any_policy["split_share"]
    ]


def _csv_row(scope: str, family: str, spec: str, m: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"scope": scope, "family": family, "policy": spec}
    for key in CSV_FIELDS[3:]:
        value = m.get(key)
        row[key] = "" if value is None else value
    for t, v in m["tier_share"].items():
        row[f"tier_share_{t}"] = v
    for k, v in m["split_share"].items():
        row[f"split_share_{k}"] = v
    return row


SUMMARY_TAGS: dict[str, str] = {
    "eval/mean_reward": "mean_reward",
    "eval/mean_reward_ci95": "mean_reward_ci95",
    "eval/latency_mean_s": "mean_latency_s",
    "eval/latency_p50_s": "latency_p50_s",
    "eval/latency_p95_s": "latency_p95_s",
    "eval/latency_p99_s": "latency_p99_s",
    "eval/ttft_mean_s": "mean_ttft_s",
    "eval/slo_violation_rate": "slo_violation_rate",
    "eval/energy_j": "energy_j_per_request",
    "eval/cache_hit_rate": "cache_hit_rate",
    "eval/keep_rate": "keep_rate",
    "eval/invalid_action_rate": "invalid_action_rate",
}
FAMILY_TAGS: dict[str, str] = {
    "mean_reward": "mean_reward",
    "latency_p95_s": "latency_p95_s",
    "slo_violation_rate": "slo_violation_rate",
    "energy_j": "energy_j_per_request",
}


def _tag_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def tensorboard_scalars(
    result: EvaluationResult, metrics: dict[str, Any], spec: str
) -> list[tuple[str, float, int]]:
    """``(tag, value, step)`` of one policy's run; the tag set is the same for every policy.

    Summary values are logged at step 0; per-episode curves (``episode/...``) use the episode
    index as step, so all policies overlay on one chart.
    """
    m = metrics["policies"][spec]
    out: list[tuple[str, float, int]] = []

    def value(x: Any) -> float:
        return float("nan") if x is None else float(x)

    for tag, key in SUMMARY_TAGS.items():
        out.append((tag, value(m[key]), 0))
    for tier, share in m["tier_share"].items():
        out.append((f"eval/tier_share/{tier}", float(share), 0))
    for family, per_policy in metrics["families"].items():
        fm = per_policy[spec]
        for name, key in FAMILY_TAGS.items():
            out.append((f"family/{_tag_safe(family)}/{name}", value(fm[key]), 0))
    for ep, rec in zip(result.episodes, result.records[spec], strict=True):
        n = max(rec["reward"].size, 1)
        out.append(("episode/mean_reward", float(rec["reward"].sum() / n), ep.index))
        out.append(("episode/latency_mean_s", float(rec["latency_s"].sum() / n), ep.index))
        out.append(("episode/slo_violation_rate", float(rec["slo_violated"].sum() / n), ep.index))
        out.append(("episode/energy_j", float(rec["energy_j"].sum() / n), ep.index))
    return out


def _write_tensorboard(result: EvaluationResult, metrics: dict[str, Any], tb: Path) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            f"evaluate needs torch and tensorboard for its TensorBoard runs ({err}); "
            "install the 'train' extra"
        ) from None
    used: set[str] = set()
    for spec in result.policies:
        name = run_dir_name(spec)
        while name in used:
            name += "_"
        used.add(name)
        run = tb / name
        if run.is_dir():  # a rerun replaces the run instead of appending to it
            for old in run.glob("events.out.tfevents.*"):
                old.unlink()
        writer = SummaryWriter(log_dir=str(run))
        try:
            for tag, v, step in tensorboard_scalars(result, metrics, spec):
                writer.add_scalar(tag, v, step)
            deployable = "deployable" if result.deployable[spec] else "NOT deployable (hindsight)"
            writer.add_text("eval/policy", f"`{spec}`: {deployable}", 0)
        finally:
            writer.close()


def _policy_label(spec: str, deployable: bool) -> str:
    return spec if deployable else f"{spec} (hindsight, not deployable)"


def _write_plots(result: EvaluationResult, metrics: dict[str, Any], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    specs = result.policies
    colors = plt.get_cmap("tab10")
    families = list(metrics["families"])
    n_eps = len(result.episodes)
    n_fam = len(families)
    requests = metrics["policies"][specs[0]]["n_requests"]
    subtitle = f"{n_fam} trace famil{'y' if n_fam == 1 else 'ies'}, {n_eps} episodes, "
    subtitle += f"{requests} requests per policy"

    # 1. latency CDF
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, spec in enumerate(specs):
        lat = np.sort(_concat(result.records[spec], "latency_s"))
        if lat.size:
            y = np.arange(1, lat.size + 1) / lat.size
            style = "--" if not result.deployable[spec] else "-"
            ax.step(lat, y, where="post", color=colors(i % 10), linestyle=style,
                    label=_policy_label(spec, result.deployable[spec]))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("request latency, arrival to last token (s, log scale)")
    ax.set_ylabel("share of requests with latency <= x")
    ax.set_title(f"Latency CDF per policy\n{subtitle}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)
    plots["latency_cdf"] = "latency_cdf.png"

    # 2. chosen split vs measured throughput, one panel per policy
    L = result.n_layers
    cols = min(3, len(specs))
    rows = math.ceil(len(specs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    jitter_rng = np.random.default_rng(0)
    for i, spec in enumerate(specs):
        ax = axes[i // cols][i % cols]
        mbps = np.clip(_concat(result.records[spec], "mbps"), 1e-2, None)
        tier = _concat(result.records[spec], "tier_index")
        y = np.where(tier > L, L + 2, tier)  # the cloud one row apart from fully local
        jitter = jitter_rng.uniform(-0.25, 0.25, size=tier.size)
        ax.scatter(mbps, y + jitter, s=5, alpha=0.35, color=colors(i % 10), linewidths=0)
        ax.set_xscale("log")
        ax.set_ylim(-1, L + 3)
        ticks = sorted({0, L // 4, L // 2, 3 * L // 4, L})
        labels = [f"{k} edge" if k == 0 else f"{k} local" if k == L else str(k) for k in ticks]
        ax.set_yticks([*ticks, L + 2], [*labels, "cloud"])
        ax.set_title(_policy_label(spec, result.deployable[spec]), fontsize=9)
        ax.set_xlabel("measured uplink throughput (Mbps, newest sample; >= 0.01)", fontsize=8)
        ax.set_ylabel("chosen split k (layers on device)", fontsize=8)
        ax.grid(True, alpha=0.3)
    for j in range(len(specs), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"Chosen split against the measured uplink throughput, per policy\n{subtitle}")
    fig.tight_layout()
    fig.savefig(out / "split_vs_throughput.png", dpi=110)
    plt.close(fig)
    plots["split_vs_throughput"] = "split_vs_throughput.png"

    # 3. per-family bars of mean reward with 95% CIs
    fig, ax = plt.subplots(figsize=(min(14.0, max(7.0, 0.3 * n_fam * len(specs) + 3)), 5.5))
    width = 0.8 / len(specs)
    x = np.arange(n_fam)
    for i, spec in enumerate(specs):
        means = [metrics["families"][f][spec]["mean_reward"] for f in families]
        halves = [metrics["families"][f][spec]["mean_reward_ci95"] for f in families]
        ax.bar(
            x + (i - (len(specs) - 1) / 2) * width,
            [np.nan if m is None else m for m in means],
            width,
            yerr=[0.0 if h is None else h for h in halves],
            capsize=2,
            color=colors(i % 10),
            hatch="//" if not result.deployable[spec] else None,
            label=_policy_label(spec, result.deployable[spec]),
        )
    ax.set_xticks(x, families, rotation=20, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("mean reward per request (higher is better)")
    ax.set_title(f"Mean reward per trace family and policy (error bars: 95% CI over episodes)\n"
                 f"{subtitle}")  # fmt: skip
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "family_reward.png", dpi=110)
    plt.close(fig)
    plots["family_reward"] = "family_reward.png"
    return plots


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _write_report(metrics: dict[str, Any], plots: dict[str, str], path: Path) -> None:
    args = metrics["args"]
    pol = metrics["policies"]
    lines = [
        "# Policy evaluation",
        "",
        "Every policy ran exactly the same episodes (pinned trace, offset and workload seed).",
        "Policies marked *hindsight* read the future from the simulator and are **not**",
        "deployable; they are an upper reference.",
        "",
        "Command arguments: " + ", ".join(f"`{k}={v}`" for k, v in args.items()),
        "",
        "## All families",
        "",
        "| policy | deployable | mean reward (95% CI) | latency mean / p50 / p95 / p99 (s) "
        "| TTFT (s) | SLO viol. | energy (J/req) | cache hit | edge / split / device / cloud "
        "| requests | paired diff. to best deployable (95% CI) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, m in pol.items():
        ts = m["tier_share"]
        lines.append(
            f"| `{spec}` | {'yes' if m['deployable'] else '**no (hindsight)**'} "
            f"| {_fmt(m['mean_reward'])} ± {_fmt(m['mean_reward_ci95'])} "
            f"| {_fmt(m['mean_latency_s'], 2)} / {_fmt(m['latency_p50_s'], 2)} / "
            f"{_fmt(m['latency_p95_s'], 2)} / {_fmt(m['latency_p99_s'], 2)} "
            f"| {_fmt(m['mean_ttft_s'], 2)} | {_fmt(m['slo_violation_rate'])} "
            f"| {_fmt(m['energy_j_per_request'], 2)} | {_fmt(m['cache_hit_rate'])} "
            f"| {ts['edge']:.2f} / {ts['split']:.2f} / {ts['device']:.2f} / {ts['cloud']:.2f} "
            f"| {m['n_requests']} | {_fmt(m.get('paired_diff'))} ± "
            f"{_fmt(m.get('paired_diff_ci95'))} |"
        )
    specs = list(pol)
    lines += [
        "",
        "## Mean reward per trace family (95% CI over episodes)",
        "",
        "| family | " + " | ".join(f"`{s}`" for s in specs) + " |",
        "|---|" + "---|" * len(specs),
    ]
    for family, per_policy in metrics["families"].items():
        best = _best_policy({k: v for k, v in per_policy.items() if v["deployable"]})
        cells = []
        for s in specs:
            m = per_policy[s]
            cell = f"{_fmt(m['mean_reward'])} ± {_fmt(m['mean_reward_ci95'])}"
            cells.append(f"**{cell}**" if s == best else cell)
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Bold: the best deployable policy of the family. Differences between policies are best",
        "read from the paired differences (`paired_diff` in metrics.json): every policy ran the",
        "same episodes, so episode-to-episode variation cancels.",
        "",
        "## Plots",
        "",
    ]
    captions = {
        "latency_cdf": "Latency CDF per policy",
        "split_vs_throughput": "Chosen split against measured uplink throughput, per policy",
        "family_reward": "Mean reward per trace family",
    }
    for key, file in plots.items():
        lines += [f"### {captions.get(key, key)}", "", f"![{captions.get(key, key)}]({file})", ""]
    lines += [
        "TensorBoard: `tensorboard --logdir tb` shows one run per policy with the same tags "
        "(`eval/*` and `family/*` at step 0, `episode/*` per episode index).",
        "",
    ]
    path.write_text("\n".join(lines))
