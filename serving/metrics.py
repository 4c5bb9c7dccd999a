"""Prometheus metrics of the decision service.

Each app gets its own registry (several apps may live in one test process). With several
uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` must be set before ``prometheus_client`` is first
imported (``offload-rl serve`` does it); values then live in per-process files and
``/metrics`` aggregates every worker's.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Sequence
from operator import attrgetter

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from serving.policy_runtime import Decision

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

# Decisions per micro-batch (serving.batcher), up to the batcher's default cap of 256.
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256)

_LABELS = attrgetter("tier", "meaning", "fallback")  # of a decision, for its counter


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


disable_created_metrics()  # the *_created series only double the output


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "offload_rl_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "offload_rl_request_latency_seconds",
            "Time from request start to response end, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decision_count = Counter(
            "offload_rl_decisions",
            "Decisions by tier, joint action and who answered (policy or fallback)",
            ["tier", "action", "source"],
            registry=r,
        )
        self.batch_size = Histogram(
            "offload_rl_micro_batch_size",
            "Single decisions per micro-batch (one onnxruntime run for the batch)",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "offload_rl_fallback_decisions",
            "Decisions the heuristic fallback answered",
            registry=r,
        )
        self.reloads = Counter(
            "offload_rl_policy_reloads",
            "Policy reload attempts by result",
            ["result"],
            registry=r,
        )
        self.policy_info = Gauge(
            "offload_rl_policy_info",
            "1 for the policy version this process serves (source: onnx or fallback)",
            ["version", "source"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.edge_reports = Counter(
            "offload_rl_edge_reports",
            "Edge state reports by source (pull, push) and result (ok, failed)",
            ["source", "result"],
            registry=r,
        )
        self.edge_last_report = Gauge(
            "offload_rl_edge_last_report_timestamp_seconds",
            "Unix time of the last usable edge state report (its age: time() minus this)",
            registry=r,
            multiprocess_mode="max",
        )
        self._policy_labels: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._request_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._decision_children: dict[tuple[str, str, bool], Counter] = {}

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, str(status)),
                self.latency.labels(endpoint),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def _decision_child(self, key: tuple[str, str, bool]) -> Counter:
        child = self._decision_children.get(key)
        if child is None:
            tier, meaning, fallback = key
            child = self.decision_count.labels(tier, meaning, "fallback" if fallback else "policy")
            self._decision_children[key] = child
        return child

    def decision(self, d: Decision) -> None:
        """Count one decision (the per-request path of :meth:`decisions`)."""
        self._decision_child((d.tier, d.meaning, d.fallback)).inc()
        if d.fallback:
            self.fallbacks.inc()

    def decisions(self, decisions: Sequence[Decision]) -> None:
        if len(decisions) == 1:  # a request alone (the common case off peak): no tally
            self.decision(decisions[0])
            return
        counts = collections.Counter(map(_LABELS, decisions))
        n_fallback = 0
        for key, n in counts.items():
            self._decision_child(key).inc(n)
            if key[2]:
                n_fallback += n
        if n_fallback:
            self.fallbacks.inc(n_fallback)

    def micro_batch(self, size: int) -> None:
        """One micro-batch of ``size`` single decisions (how well requests coalesce)."""
        self.batch_size.observe(size)

    def edge_report(self, source: str, ok: bool) -> None:
        """One edge state report (a poll, or a push) and whether it was usable."""
        self.edge_reports.labels(source, "ok" if ok else "failed").inc()
        if ok:
            self.edge_last_report.set_to_current_time()

    def reload(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "rejected").inc()

    def set_policy(self, version: str, source: str) -> None:
        with self._lock:
            labels = (version, source)
            if self._policy_labels == labels:
                return
            if self._policy_labels is not None:
                self.policy_info.labels(*self._policy_labels).set(0)
            self.policy_info.labels(*labels).set(1)
            self._policy_labels = labels

    def render(self) -> tuple[bytes, str]:
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        if multiprocess_dir():
            multiprocess.mark_process_dead(os.getpid())
