"""Timing a call on a shared machine: its median time, and the CPU other processes took meanwhile.

Contention only ever adds time (with 2 threads on 2 cores, every parallel region waits for a
preempted thread), so a point timed while other processes were busy is timed again after waiting
for a quiet moment, the fastest attempt is kept, and the load it saw is recorded so that an
inflated profile says so.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Other processes keeping more CPUs than this busy while a point is timed make it "contended":
# with 2 threads on 2 cores, even a fraction of a core taken away stalls every parallel region.
CONTENTION_THRESHOLD = 0.1


def time_call(
    fn: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    after: Callable[[], object] | None = None,
    min_total_s: float = 0.0,
    max_runs: int = 200,
) -> float:
    """Median wall time of ``fn`` over at least ``repeats`` runs after ``warmup`` runs.

    Cheap calls are repeated until ``min_total_s`` of timed work (at most ``max_runs`` runs), so
    that their median is not one lucky or unlucky run. ``after`` runs after every call, outside
    the timed region (e.g. to trim a KV cache back).
    """
    for _ in range(warmup):
        fn()
        if after is not None:
            after()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_total_s and len(times) < max_runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if after is not None:
            after()
    return statistics.median(times)


class BackgroundLoad:
    """How much CPU *other* processes (and the hypervisor, as steal time) used while we timed.

    Reads ``/proc/stat`` and ``/proc/self/stat`` (Linux); elsewhere it reports nothing. Timings
    taken while another process competes for the cores are inflated (with 2 threads, every
    parallel region waits for a preempted thread), so the profiler re-measures such points and
    records the load it saw.
    """

    def __init__(self) -> None:
        self._ticks_per_s = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = stat.readline().split()[1:]
            with open("/proc/self/stat", encoding="ascii") as own:
                parts = own.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        values = [int(v) for v in fields]
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
        busy = sum(values) - values[3] - values[4] - sum(values[8:])
        own_ticks = int(parts[11]) + int(parts[12])  # utime + stime of all our threads
        return time.monotonic(), busy, own_ticks

    def restart(self) -> None:
        self._start = self._sample()

    def cpus_used_by_others(self) -> float | None:
        """Average number of CPUs busy with other work since the last (re)start, or None."""
        end = self._sample()
        if end is None or self._start is None:
            return None
        elapsed = end[0] - self._start[0]
        if elapsed <= 0:
            return None
        others = (end[1] - self._start[1]) - (end[2] - self._start[2])
        return max(0.0, others / self._ticks_per_s / elapsed)


@dataclass
class LoadReport:
    """Background CPU load seen while timing each point (see :class:`BackgroundLoad`)."""

    threshold: float
    loads: list[float] = field(default_factory=list)
    retried: int = 0
    retry_s: float = 0.0  # seconds spent waiting for and re-timing contended points

    @property
    def contended(self) -> int:
        """Points whose best attempt still saw more than ``threshold`` CPUs of other work."""
        return sum(load > self.threshold for load in self.loads)

    def summary(self) -> str:
        if not self.loads:
            return "background load not measured"
        text = (
            f"other processes used {statistics.mean(self.loads):.2f} CPUs on average "
            f"(max {max(self.loads):.2f}) while timing; {self.retried} re-measurements"
        )
        if self.contended:
            text += (
                f"; WARNING: {self.contended} of {len(self.loads)} points were timed under "
                f"contention (> {self.threshold:.1f} CPUs busy elsewhere), so they are inflated"
            )
        return text


def wait_for_quiet(
    max_wait_s: float = 120.0,
    threshold: float = CONTENTION_THRESHOLD,
    window_s: float = 1.0,
    quiet_windows: int = 3,
) -> float | None:
    """Wait until other processes leave the CPUs alone for ``quiet_windows`` windows in a row.

    Returns the load of the last window (None where it cannot be measured); gives up after
    ``max_wait_s`` and returns the load it last saw, so a caller can say it measured anyway.
    """
    monitor = BackgroundLoad()
    deadline = time.monotonic() + max_wait_s
    streak = 0
    load: float | None = None
    while time.monotonic() < deadline:
        monitor.restart()
        time.sleep(window_s)
        load = monitor.cpus_used_by_others()
        if load is None:
            return None
        streak = streak + 1 if load <= threshold else 0
        if streak >= quiet_windows:
            break
    return load


@dataclass
class RetryingTimer:
    """Times points with :func:`time_call`, again while other processes kept the CPUs busy.

    Each point gets up to ``retries`` re-measurements (each after waiting up to ``retry_wait_s``
    for a quiet moment), as long as the re-measurements of the whole run stay within
    ``retry_budget_s``: a busy machine must not make a profile take for ever. The load each
    point's kept attempt saw goes into ``report``.
    """

    warmup: int
    repeats: int
    min_point_s: float
    retries: int
    retry_wait_s: float
    retry_budget_s: float
    threshold: float
    report: LoadReport
    monitor: BackgroundLoad

    def time(self, fn: Callable[[], object], after: Callable[[], object] | None = None) -> float:
        """Median seconds of ``fn``: of the quiet attempt if one was, else of the fastest."""
        best: tuple[float, float] | None = None  # (seconds, load seen)
        for attempt in range(self.retries + 1):
            if attempt:
                if self.report.retry_s >= self.retry_budget_s:
                    break
                self._wait_for_quiet()
            seconds, seen = self._attempt(fn, after, retrying=attempt > 0)
            quiet = seen <= self.threshold
            if best is None or (quiet, -seconds) > (best[1] <= self.threshold, -best[0]):
                best = (seconds, seen)
            if quiet:
                break
        assert best is not None
        self.report.loads.append(best[1])
        return best[0]

    def _wait_for_quiet(self) -> None:
        self.report.retried += 1
        waited_from = time.monotonic()
        wait_for_quiet(
            max_wait_s=self.retry_wait_s,
            threshold=self.threshold,
            window_s=0.5,
            quiet_windows=2,
        )
        self.report.retry_s += time.monotonic() - waited_from

    def _attempt(
        self, fn: Callable[[], object], after: Callable[[], object] | None, *, retrying: bool
    ) -> tuple[float, float]:
        """(median seconds, CPUs busy elsewhere); a re-measurement counts in the budget."""
        started = time.monotonic()
        self.monitor.restart()
        seconds = time_call(
            fn,
            warmup=self.warmup,
            repeats=self.repeats,
            after=after,
            min_total_s=self.min_point_s,
        )
        others = self.monitor.cpus_used_by_others()
        if retrying:
            self.report.retry_s += time.monotonic() - started
        return seconds, others if others is not None else 0.0
