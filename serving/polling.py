"""A daemon thread that does one thing every ``interval_s`` seconds until stopped.

The service's background work (the policy-file watch, the edge metrics poll) runs beside the
event loop on such threads: a tick that raises is logged and the next tick still comes.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("offload_rl.serving")


class IntervalThread:
    """Calls :meth:`tick` every ``interval_s`` (first at once if ``tick_at_start``)."""

    def __init__(self, interval_s: float, name: str, tick_at_start: bool = False) -> None:
        self.interval_s = interval_s
        self._tick_at_start = tick_at_start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        if self._tick_at_start:
            self._safe_tick()
        while not self._stop.wait(self.interval_s):
            self._safe_tick()

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # never let the thread die
            log.exception("%s failed", self._thread.name)
