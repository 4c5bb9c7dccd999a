"""Shared set-up of the EdgeCell tests: scenario variants and request capture."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell.simulator import CellRequest
from offload_rl.scenario import Scenario, load_scenario
from offload_rl.workloads import Request


def cell_scenario(reward: dict[str, Any] | None = None, **cell: Any) -> Scenario:
    """The embedded cell scenario with ``cell`` and ``reward`` keys replaced."""
    sc = load_scenario("cell")
    assert sc.cell is not None
    update: dict[str, Any] = {"cell": sc.cell.model_copy(update=cell)}
    if reward:
        update["reward"] = sc.reward.model_copy(update=reward)
    return sc.model_copy(update=update)


def capture(env: EdgeCellEnv) -> list[CellRequest]:
    """Every request the env dispatches, in decision order (wraps ``sim.dispatch``)."""
    seen: list[CellRequest] = []
    original = env.sim.dispatch

    def dispatch(i: int, tier_index: int, keep: bool) -> CellRequest:
        cr = original(i, tier_index, keep)
        seen.append(cr)
        return cr

    env.sim.dispatch = dispatch  # type: ignore[method-assign]
    return seen


class FixedWorkload:
    """A hand-built request stream (the ``Workload`` hook), the same on every draw."""

    name = "fixed"

    def __init__(self, requests: list[Request]) -> None:
        self.requests = requests

    def sample(self, rng: np.random.Generator, n_requests: int) -> list[Request]:
        return self.requests[:n_requests]


def request(t: float, sid: int, new: int, out: int, turn: int = 0, ctx: int = 0) -> Request:
    return Request(t, sid, turn, new, ctx, out, None)
