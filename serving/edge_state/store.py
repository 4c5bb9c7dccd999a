"""The service's latest knowledge of the edge, with the staleness bound.

One writer at a time (the poller thread, or a push handler) replaces the whole
:class:`~serving.edge_state.mapping.EdgeView` with one reference assignment; a decision reads
it once. A view older than ``max_age_s`` is *stale*: it is not used, and the answer says so.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from serving.edge_state.mapping import EdgeDefaults, EdgeView, RuntimeReport
from serving.edge_state.settings import DEFAULT_LOAD_WINDOW_S, DEFAULT_MAX_AGE_S

EdgeStatus = Literal["fresh", "stale", "missing"]


class EdgeStateStore:
    """The latest :class:`EdgeView` and when it arrived (monotonic clock)."""

    def __init__(
        self,
        defaults: EdgeDefaults,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        load_window_s: float = DEFAULT_LOAD_WINDOW_S,
    ) -> None:
        if not (max_age_s > 0 and max_age_s < float("inf")):
            raise ValueError(f"max_age_s must be a positive number of seconds, got {max_age_s}")
        self.defaults = defaults
        self.max_age_s = float(max_age_s)
        self.load_window_s = float(load_window_s)
        self._busy: deque[tuple[float, bool]] = deque()  # (arrival, running or waiting)
        self._latest: tuple[float, EdgeView] | None = None
        self.source = ""  # "pull" or "push": where the latest view came from
        self.reports = 0
        self.errors = 0
        self.last_error: str | None = None
        self.on_report: Callable[[str, bool], None] | None = None  # (source, usable): metrics

    def put(self, report: RuntimeReport, source: str, now: float | None = None) -> EdgeView:
        """Store what the runtime just said (its arrival time is ``now``)."""
        t = time.monotonic() if now is None else now
        busy = self._busy
        busy.append((t, report.n_running + report.n_waiting > 0))
        while t - busy[0][0] >= self.load_window_s and len(busy) > 1:
            busy.popleft()  # the reports of the last load_window_s seconds (at least one)
        busy_share = sum(b for _, b in busy) / len(busy)
        view = EdgeView.of(report, busy_share, self.defaults)
        self._latest = (t, view)
        self.source = source
        self.reports += 1
        self.last_error = None
        if self.on_report is not None:
            self.on_report(source, True)
        return view

    def failed(self, reason: str) -> None:
        """A poll that got nothing usable (the last view ages towards stale)."""
        self.errors += 1
        self.last_error = reason
        if self.on_report is not None:
            self.on_report("pull", False)

    def current(self, now: float | None = None) -> tuple[EdgeView | None, EdgeStatus]:
        """The view if fresh (else ``None``) and the status the answer reports."""
        latest = self._latest
        if latest is None:
            return None, "missing"
        t = time.monotonic() if now is None else now
        if t - latest[0] > self.max_age_s:
            return None, "stale"
        return latest[1], "fresh"

    def describe(self, now: float | None = None) -> dict[str, object]:
        latest = self._latest
        t = time.monotonic() if now is None else now
        _, status = self.current(t)
        return {
            "status": status,
            "source": self.source or None,
            "age_s": None if latest is None else round(t - latest[0], 3),
            "max_age_s": self.max_age_s,
            "reports": self.reports,
            "errors": self.errors,
            "last_error": self.last_error,
            "view": None
            if latest is None
            else {
                k: getattr(latest[1], k)
                for k in (
                    "edge_kv_occupancy",
                    "edge_load",
                    "edge_waiting",
                    "edge_waiting_tokens",
                    "edge_running",
                    "edge_running_tokens",
                    "pool_tokens",
                )
            },
        }
