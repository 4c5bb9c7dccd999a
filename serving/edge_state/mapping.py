"""How the edge runtime's state becomes the edge half of the observation: the one table.

The decision service runs beside the edge runtime, so the edge's state comes from the runtime
(pulled from its Prometheus endpoint, or pushed by the runtime) rather than from the device's
request. The observation wants more than vLLM exports; :data:`EDGE_FIELD_SOURCES` says, for
every field the encoder (:mod:`offload_rl.features`) reads about the edge, where its value
comes from and what fills it when the runtime does not say. This module is the only place
that turns runtime facts into those fields (:class:`EdgeView`, :func:`entry_fields`).

vLLM's metric names, read in vLLM's source (``vllm/v1/metrics/loggers.py``,
``PrometheusStatLogger.__init__``; labels ``model_name`` and ``engine``, one series per engine
under data parallelism): ``vllm:num_requests_running`` ("Number of requests in model execution
batches"), ``vllm:num_requests_waiting``, ``vllm:gpu_cache_usage_perc`` ("GPU KV-cache usage.
1 means 100 percent usage", the V0 engine's and early V1's name; vllm-project/vllm commit
a6f0308) and its successor ``vllm:kv_cache_usage_perc`` (same meaning; commit 005a810 sets
both, marking the old one deprecated), ``vllm:cache_config_info`` (an info gauge whose labels
are the CacheConfig, ``num_gpu_blocks`` and ``block_size`` among them) and the histogram
``vllm:request_prompt_tokens`` (prompt tokens of each finished request).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import scenario_facts
from serving.edge_state.prometheus_text import Sample

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # new name first
CACHE_CONFIG = "vllm:cache_config_info"
PROMPT_TOKENS_SUM = "vllm:request_prompt_tokens_sum"
PROMPT_TOKENS_COUNT = "vllm:request_prompt_tokens_count"

# field -> (pulled from vLLM's /metrics, pushed by a runtime, when the runtime does not say)
EDGE_FIELD_SOURCES: dict[str, tuple[str, str, str]] = {
    "edge_kv_occupancy": (
        "`vllm:kv_cache_usage_perc` (else `vllm:gpu_cache_usage_perc`), mean over engines",
        "`kv_usage`",
        "v1: the request's own value; v2: the request's `edge_kv_occupancy` if sent",
    ),
    "edge_load": (
        "busy share: the share of the polls of the last `--edge-load-window` s (5) with a "
        "request running or waiting (the simulator's busy share of the GPU since the cell's "
        "previous decision)",
        "`busy_share`, else as pulled (from the pushed reports)",
        "v1: the request's own value; v2: the request's `edge_load` if sent",
    ),
    "edge_waiting": ("`vllm:num_requests_waiting`, summed over engines", "`n_waiting`", "-"),
    "edge_waiting_tokens": (
        "estimate: waiting x mean prompt tokens of finished requests (`vllm:request_prompt_"
        "tokens_sum / _count`), before any has finished the scenario workload's mean first "
        "prompt",
        "`waiting_tokens`, else as pulled",
        "-",
    ),
    "edge_running": ("`vllm:num_requests_running`, summed over engines", "`n_running`", "-"),
    "edge_running_tokens": (
        "estimate: KV usage x pool tokens (`vllm:cache_config_info` num_gpu_blocks x "
        "block_size, else the scenario's edge KV bytes / KV bytes per token)",
        "`running_tokens`, else as pulled",
        "-",
    ),
    "entry_bytes_share": (
        "not exported by vLLM; estimate from the device's kept KV (cached_split k < L, "
        "cached_tokens t): t x (L - k) / (L x pool tokens), the edge layers' share of the pool",
        "`sessions[session_id]` (tokens, split), the same formula; 0 if the runtime "
        "reports no entry for the session",
        "0",
    ),
    "entry_recency_rank": (
        "not exported by vLLM; assumed 0 (most recent) when the device holds an edge entry, "
        "else -1",
        "`sessions[session_id].recency_rank`; -1 if the runtime reports no entry",
        "-1",
    ),
}
"""When the edge state is stale or missing, a policy that reads the edge fields (every policy
does: the single-device ones read ``edge_kv_occupancy`` and ``edge_load``) is not asked: the
heuristic fallback answers, unless the request carries the device's last report of the two
fields a single-device policy reads (v1 always does)."""


def mapping_table() -> str:
    """:data:`EDGE_FIELD_SOURCES` as a markdown table (the README shows it)."""
    rows = ["| field | pulled (vLLM) | pushed | unknown |", "|---|---|---|---|"]
    rows += [f"| {k} | {a} | {b} | {c} |" for k, (a, b, c) in EDGE_FIELD_SOURCES.items()]
    return "\n".join(rows)


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """What the runtime keeps of one session: KV of layers ``split..L`` for ``tokens``."""

    tokens: int
    split: int
    recency_rank: int = 0


@dataclass(frozen=True, slots=True)
class RuntimeReport:
    """What the edge runtime said, once (pulled or pushed); ``None``: it did not say."""

    n_running: int
    n_waiting: int
    kv_usage: float
    pool_tokens: float | None = None
    mean_prompt_tokens: float | None = None
    running_tokens: int | None = None
    waiting_tokens: int | None = None
    busy_share: float | None = None
    sessions: Mapping[str, SessionEntry] | None = None


class MissingMetricsError(ValueError):
    """A scrape without the metrics the adapter needs."""


def _values(samples: Iterable[Sample], name: str) -> list[float]:
    return [s.value for s in samples if s.name == name and math.isfinite(s.value)]


def report_from_vllm(samples: list[Sample]) -> RuntimeReport:
    """The :class:`RuntimeReport` in a vLLM scrape (``busy_share`` is the poller's)."""
    running, waiting = _values(samples, RUNNING), _values(samples, WAITING)
    usage: list[float] = []
    for name in KV_USAGE_NAMES:
        usage = _values(samples, name)
        if usage:
            break
    missing = [n for n, v in ((RUNNING, running), (WAITING, waiting)) if not v]
    if not usage:
        missing.append(" or ".join(KV_USAGE_NAMES))
    if missing:
        raise MissingMetricsError(f"no {', '.join(missing)} in the scrape")
    pool: float | None = None
    for s in samples:
        if s.name == CACHE_CONFIG:
            try:
                blocks = float(s.labels["num_gpu_blocks"]) * float(s.labels["block_size"])
            except (KeyError, ValueError):  # 'None' before the engine has profiled memory
                continue
            if blocks > 0 and math.isfinite(blocks):
                pool = (pool or 0.0) + blocks
    total, count = (
        sum(_values(samples, PROMPT_TOKENS_SUM)),
        sum(_values(samples, PROMPT_TOKENS_COUNT)),
    )
    return RuntimeReport(
        n_running=int(sum(running)),
        n_waiting=int(sum(waiting)),
        kv_usage=min(max(sum(usage) / len(usage), 0.0), 1.0),
        pool_tokens=pool,
        mean_prompt_tokens=total / count if count > 0 else None,
    )


def prior_load(scenario: Scenario) -> float:
    """The edge load the scenario expects when nobody says: its load process's stationary
    mean (what a heuristic assumes of an edge it cannot see)."""
    load = scenario.edge.load
    if load.kind == "constant":
        return float(load.calm_util)
    calm, busy = load.mean_calm_s, load.mean_busy_s
    return float((load.calm_util * calm + load.busy_util * busy) / (calm + busy))


@dataclass(frozen=True, slots=True)
class EdgeDefaults:
    """What the scenario says where the runtime is silent."""

    pool_tokens: float  # the edge KV pool in tokens of the whole model
    mean_prompt_tokens: float  # the workload's mean first prompt
    n_layers: int
    prior_load: float  # the edge load process's stationary mean (heuristic, edge unknown)

    @classmethod
    def of(cls, scenario: Scenario) -> EdgeDefaults:
        facts = scenario_facts(scenario)
        L = facts.n_layers
        per_token = float(facts.tiers.edge.kv_bytes_per_token[L]) or 1.0
        return cls(
            pool_tokens=max(scenario.edge.kv_cache_bytes / per_token, 1.0),
            mean_prompt_tokens=facts.workload_params.first_prompt_tokens.mean(),
            n_layers=L,
            prior_load=prior_load(scenario),
        )


@dataclass(frozen=True, slots=True)
class EdgeView:
    """The edge fields of the observation from one report (built once per report)."""

    edge_kv_occupancy: float
    edge_load: float
    edge_waiting: int
    edge_waiting_tokens: int
    edge_running: int
    edge_running_tokens: int
    pool_tokens: float
    sessions: Mapping[str, SessionEntry] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, report: RuntimeReport, busy_share: float, defaults: EdgeDefaults) -> EdgeView:
        pool = report.pool_tokens or defaults.pool_tokens
        prompt = report.mean_prompt_tokens or defaults.mean_prompt_tokens
        waiting_tokens = report.waiting_tokens
        if waiting_tokens is None:
            waiting_tokens = round(report.n_waiting * prompt)
        running_tokens = report.running_tokens
        if running_tokens is None:
            running_tokens = round(report.kv_usage * pool)
        load = report.busy_share if report.busy_share is not None else busy_share
        return cls(
            edge_kv_occupancy=report.kv_usage,
            edge_load=min(max(load, 0.0), 1.0),
            edge_waiting=report.n_waiting,
            edge_waiting_tokens=int(waiting_tokens),
            edge_running=report.n_running,
            edge_running_tokens=int(running_tokens),
            pool_tokens=pool,
            sessions=report.sessions,
        )


def entry_fields(
    view: EdgeView, session_id: str | None, cached_split: int | None, cached_tokens: int, L: int
) -> tuple[float, int]:
    """``(entry_bytes_share, entry_recency_rank)`` of the requesting session (see the table)."""
    if view.sessions is not None:
        entry = view.sessions.get(session_id) if session_id is not None else None
        if entry is None:
            return 0.0, -1
        tokens, split, rank = entry.tokens, entry.split, entry.recency_rank
    elif cached_split is not None and cached_split < L and cached_tokens > 0:
        tokens, split, rank = cached_tokens, cached_split, 0
    else:
        return 0.0, -1
    share = tokens * (L - split) / (L * view.pool_tokens)
    return min(max(share, 0.0), 1.0), rank
