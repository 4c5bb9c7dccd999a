"""What an evaluation produced: every policy's per-request records on the shared episodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.evaluation.episodes import Episode


@dataclass
class EvaluationResult:
    """Per policy, per episode, the per-request columns (``records[policy][episode]``).

    On the cell (``loads`` set) every episode runs at every load level (the cell's
    ``arrival_rate_scale``): ``records[policy][load_index * len(episodes) + episode]``.
    """

    policies: list[str]
    deployable: dict[str, bool]
    episodes: list[Episode]
    records: dict[str, list[dict[str, np.ndarray]]]
    n_layers: int
    args: dict[str, Any]
    wall_s: float = 0.0
    workers: int = 1
    loads: tuple[float, ...] = ()
