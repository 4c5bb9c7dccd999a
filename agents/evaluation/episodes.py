"""The episode set: pinned (trace, offset, workload seed) episodes shared by every policy."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from offload_rl.errors import ConfigError
from offload_rl.scenario_facts import ResolvedScenario


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
        """What ``env.reset`` needs to replay exactly this episode."""
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
