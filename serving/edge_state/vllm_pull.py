"""The pull adapter: polls the edge runtime's Prometheus endpoint (vLLM's ``/metrics``).

A daemon thread scrapes ``url`` every ``interval_s`` with a short timeout, parses the text
(:mod:`serving.edge_state.prometheus_text`), maps it (:mod:`serving.edge_state.mapping`) and
stores it (:mod:`serving.edge_state.store`). A failed scrape changes nothing but the error
count: the last view ages, and past the staleness bound decisions stop using it.
"""

from __future__ import annotations

import logging

import httpx

from serving.edge_state.mapping import MissingMetricsError, report_from_vllm
from serving.edge_state.prometheus_text import ExpositionError, parse_exposition
from serving.edge_state.settings import DEFAULT_POLL_INTERVAL_S
from serving.edge_state.store import EdgeStateStore
from serving.polling import IntervalThread

log = logging.getLogger("offload_rl.serving")


class MetricsPoller(IntervalThread):
    """Scrapes ``url`` into ``store`` every ``interval_s`` seconds until stopped."""

    def __init__(
        self,
        url: str,
        store: EdgeStateStore,
        interval_s: float = DEFAULT_POLL_INTERVAL_S,
        timeout_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        super().__init__(float(interval_s), "edge-metrics-poll", tick_at_start=True)
        self.url = url
        self.store = store
        timeout = timeout_s if timeout_s is not None else min(self.interval_s, 2.0)
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), transport=transport)

    def poll_once(self) -> bool:
        """One scrape; ``True`` if it gave a usable report."""
        try:
            response = self._http.get(self.url)
            response.raise_for_status()
            report = report_from_vllm(parse_exposition(response.text))
        except (httpx.HTTPError, ExpositionError, MissingMetricsError) as err:
            reason = f"{type(err).__name__}: {err}"[:300]
            if self.store.last_error != reason:
                log.warning("edge metrics %s: %s", self.url, reason)
            self.store.failed(reason)
            return False
        self.store.put(report, "pull")
        return True

    def tick(self) -> None:
        self.poll_once()

    def stop(self) -> None:
        super().stop()
        self._http.close()
