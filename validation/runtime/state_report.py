"""The edge runtime reports its own state to the decision service (``POST /v1/edge/state``).

The service beside a runtime that exports no Prometheus metrics learns the edge's state this
way (``offload-rl serve --edge-push``): what runs, what waits, the share of the KV pool in use,
and which sessions' KV the edge keeps, most recently used first (their recency ranks). Posts go
out from a daemon thread, latest report only, so a slow or absent service never delays a
request; a failed post is counted and the next report tries again. Stdlib only (``urllib``).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

PUSH_PATH = "/v1/edge/state"


class StateReporter:
    """Posts the latest report to ``service_url`` + ``/v1/edge/state``."""

    def __init__(self, service_url: str, token: str | None = None, timeout_s: float = 1.0) -> None:
        self.url = service_url.rstrip("/") + PUSH_PATH
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self._latest: dict[str, Any] | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="edge-state-report", daemon=True)
        self._thread.start()

    def report(
        self,
        n_running: int,
        n_waiting: int,
        kv_usage: float,
        pool_tokens: int | None = None,
        running_tokens: int | None = None,
        sessions: dict[str, dict[str, int]] | None = None,
    ) -> None:
        """Queue a report (replacing one not sent yet)."""
        body: dict[str, Any] = {
            "n_running": int(n_running),
            "n_waiting": int(n_waiting),
            "kv_usage": min(max(float(kv_usage), 0.0), 1.0),
        }
        if pool_tokens:
            body["pool_tokens"] = int(pool_tokens)
        if running_tokens is not None:
            body["running_tokens"] = int(running_tokens)
        if sessions is not None:
            body["sessions"] = sessions
        with self._wake:
            self._latest = body
            self._wake.notify()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until the queued report has been posted (tests, shut-down)."""
        with self._wake:
            return self._wake.wait_for(lambda: self._latest is None, timeout=timeout_s)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._latest is not None or self._closed)
                if self._latest is None:
                    return
                body = self._latest
            self._post(body)
            with self._wake:
                if self._latest is body:
                    self._latest = None
                self._wake.notify_all()

    def _post(self, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
            self.sent += 1
            self.last_error = None
        except (urllib.error.URLError, OSError, ValueError) as err:
            self.failed += 1
            self.last_error = f"{type(err).__name__}: {err}"
