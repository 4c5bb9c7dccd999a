"""How busy the rest of the machine was while a request replayed (from ``/proc``).

The machine is shared: a repeat during which other processes kept more than
:data:`CONTENTION_CPUS` CPUs busy is "contended", and the summary prefers the quiet repeats.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

# A repeat during which other processes kept more than this many CPUs busy is "contended"
# (the profiler uses the same threshold when it re-measures a point).
CONTENTION_CPUS = 0.3


class CpuLoad:
    """CPUs used by processes other than this one and the edge child while replaying."""

    def __init__(self, exclude_pids: Sequence[int] = ()) -> None:
        self.exclude = [os.getpid(), *exclude_pids]
        self._tick = float(os.sysconf("SC_CLK_TCK"))
        self._start = self._sample()
        self._created = self._start

    def restart(self) -> None:
        """Count from now on (:meth:`others`)."""
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                values = [int(v) for v in stat.readline().split()[1:]]
            ours = 0
            for pid in self.exclude:
                with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                ours += int(parts[11]) + int(parts[12])
        except (OSError, IndexError, ValueError):
            return None
        busy = sum(values) - values[3] - values[4] - sum(values[8:])
        return time.monotonic(), float(busy), float(ours)

    def others(self) -> float | None:
        """Average CPUs busy with other work since the last (re)start."""
        return self._between(self._start, self._sample())

    def others_since_creation(self) -> float | None:
        """Average CPUs busy with other work since this monitor was made."""
        return self._between(self._created, self._sample())

    def _between(
        self, start: tuple[float, float, float] | None, end: tuple[float, float, float] | None
    ) -> float | None:
        if end is None or start is None or end[0] <= start[0]:
            return None
        busy = (end[1] - start[1]) - (end[2] - start[2])
        return max(0.0, busy / self._tick) / (end[0] - start[0])


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
