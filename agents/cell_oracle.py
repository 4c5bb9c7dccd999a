"""EdgeCell-v0's hindsight oracle, NOT deployable: a one-step lookahead on a copy of the future.

For each decision it forks the simulator (:func:`fork_simulator`: a deep copy, random state
included, so the copy's future is the one that will happen), plays each candidate action in its
own copy, lets a fixed *base policy* take every later decision of a window, runs the cell until
every request of the window has left it, and sums the cost the
:class:`~offload_rl.reward.CostLedger` accrued from the decision to a common end time. The
cheapest candidate wins (ties: the base policy's own action, then the lowest action). Because the
whole cell's ledger is summed, the externality counts: a long prompt that slows the batch, a kept
entry that evicts another session, heat that slows the device's next local request.

What it knows (everything the simulator will do):

* every device's future link capacity (the traces), the radios' states and the heat;
* the edge's queue, batch and KV pool, iteration by iteration, with the later requests' load;
* the true output length of every request, the later arrivals (times, sizes, devices);
* whether and when the session comes back (the window is stretched to include its next turn
  when that comes within ``return_horizon_s``, so keeping is priced by the hit it gives).

What it does not know or do:

* it is a **one-step lookahead with a base policy**, not a global optimum: later decisions are
  the base policy's (not its own), the window ends (decisions after it are not taken, the requests
  of the window are run to completion with no later load), and the actions it takes itself
  later are not those the rollout assumed;
* it prunes candidates, for speed (measured: ~10 rollouts and ~60 ms per decision on the
  embedded cell at load 1, against ~60 actions unpruned): interior splits are cut to
  ``max_splits`` evenly spaced valid ones (the lowest valid one, which a private request needs,
  among them) because in a decoder every boundary sends the same ``d_model`` activations per
  token, so interior splits differ smoothly by how many layers run on the (throttled) device;
  ``keep`` is evaluated only where the session returns within the window (elsewhere keeping
  cannot pay off inside the window and only takes memory). The edge, device and cloud
  placements and the base policy's own action are always evaluated;
* the base policy is reset before every rollout, so it must be a policy whose actions depend
  only on what it sees after a reset (``greedy`` is stateless).

Its scores are a reference for how much information and planning could be worth, marked
``deployable: false`` in every report; it is never exported or served.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from offload_rl.actions import ActionLayout
from offload_rl.cell.simulator import CellSimulator
from offload_rl.cost_model import TIER_SPLIT, tier_of
from offload_rl.features import action_mask
from offload_rl.heuristics import Policy

if TYPE_CHECKING:
    from envs.edge_cell import EdgeCellEnv

REPORT_NOTE = (
    "`oracle` on the cell is a hindsight one-step lookahead (agents/cell_oracle.py): for each "
    "decision it plays every candidate action on a copy of the simulator, whose future (links, "
    "edge queue and batch, true output lengths, later arrivals, whether the session returns) is "
    "the one that happens, lets `greedy` take the later decisions of a window, and keeps the "
    "action with the least cost for the whole cell. It is not a global optimum (later decisions "
    "in its window are greedy's, and the window ends) and it is not deployable."
)
"""What evaluation reports say about the cell oracle (one home for the text)."""

DEFAULT_HORIZON_S = 30.0
"""Seconds after the decision in which the base policy takes the later decisions."""
DEFAULT_RETURN_HORIZON_S = 300.0
"""The window is stretched to the session's next turn when it comes within this many seconds."""
DEFAULT_MAX_SPLITS = 3
"""Interior splits evaluated per decision (evenly spaced over the valid ones)."""


def fork_simulator(sim: CellSimulator) -> CellSimulator:
    """A copy of ``sim`` whose future is the same as the original's (random state included).

    What never changes after ``reset`` (the scenario, traces, profiles, the drawn requests and
    per-request facts) is shared, not copied: a fork costs what the mutable state (devices,
    edge, ledgers) costs.
    """
    shared: list[object] = [
        sim.resolved,
        sim.facts,
        sim.cell,
        sim.tiers,
        sim.batch_cost,
        sim.workload,
        sim.requests,
        sim.private,
        sim.slo_class,
        sim.k_mem,
        sim.cloud_queue,
        sim.device_of,
    ]
    for d in sim.devices:
        shared += [d.link, d.uplink, d.cls, d.radio.params]
    memo: dict[int, object] = {id(x): x for x in shared}
    return copy.deepcopy(sim, memo)


@dataclass
class OracleCost:
    """What the oracle spent: decisions, rollouts and seconds of wall time (not in results)."""

    decisions: int = 0
    rollouts: int = 0
    wall_s: float = 0.0

    @property
    def seconds_per_decision(self) -> float:
        return self.wall_s / self.decisions if self.decisions else 0.0


class CellOraclePolicy:
    """Hindsight one-step lookahead on a forked cell; needs the environment (``act_env``)."""

    name = "oracle"
    deployable = False

    def __init__(
        self,
        base: Policy,
        horizon_s: float = DEFAULT_HORIZON_S,
        return_horizon_s: float = DEFAULT_RETURN_HORIZON_S,
        max_splits: int = DEFAULT_MAX_SPLITS,
    ) -> None:
        if horizon_s < 0 or return_horizon_s < 0 or max_splits < 0:
            raise ValueError("horizon_s, return_horizon_s and max_splits must be >= 0")
        self.base = base
        self.horizon_s = float(horizon_s)
        self.return_horizon_s = float(return_horizon_s)
        self.max_splits = int(max_splits)
        self.cost = OracleCost()
        self.last_costs: dict[int, float] = {}  # candidate -> cost, of the latest decision
        self.last_end_s = 0.0  # the common end time those costs run to

    def reset(self) -> None:
        self.base.reset()

    # --- the decision -------------------------------------------------------------------------

    def act_env(self, env: EdgeCellEnv) -> int:
        """The cheapest candidate action for the environment's current request, in hindsight."""
        started = time.perf_counter()
        mask = env.action_masks()
        self.base.reset()
        base_action = int(self.base.act(env.state, mask))
        i = env.request_index
        candidates = self.candidates(
            mask, env.layout, base_action, self.returns_in_window(env.sim, i)
        )
        end_s = self.window_end(env.sim, i)
        forks = [self._rollout(env, i, a, end_s) for a in candidates]
        # the common end: after every fork's last request, and the radio tails that follow it
        common = max(t for _, t in forks) + _longest_tail(env.sim)
        costs = [self._cost_until(sim, common) for sim, _ in forks]
        self.last_costs = dict(zip(candidates, costs, strict=True))
        self.last_end_s = common
        best = min(
            range(len(candidates)),
            key=lambda j: (costs[j], candidates[j] != base_action, candidates[j]),
        )
        self.cost.decisions += 1
        self.cost.rollouts += len(candidates)
        self.cost.wall_s += time.perf_counter() - started
        return candidates[best]

    def candidates(
        self, mask: np.ndarray, layout: ActionLayout, base_action: int, returns: bool = True
    ) -> list[int]:
        """Valid actions to evaluate: every non-split placement, ``max_splits`` interior splits
        (evenly spaced over the valid ones, the lowest first) and the base policy's action;
        both cache choices where the session comes back in the window (``returns``), else
        only ``drop`` (keeping cannot pay off in the window and only takes memory)."""
        L = layout.n_layers
        valid = [(a, *layout.decode(a)) for a in np.flatnonzero(mask).tolist()]
        splits = sorted({t for _, t, _ in valid if tier_of(t, L) == TIER_SPLIT})
        picked: set[int] = set()
        if splits and self.max_splits > 0:
            grid = np.linspace(0, len(splits) - 1, num=min(self.max_splits, len(splits)))
            picked = {splits[round(float(g))] for g in grid}
        out = []
        for a, tier, keep in valid:
            placement_ok = tier_of(tier, L) != TIER_SPLIT or tier in picked
            cache_ok = returns or not keep or not mask[layout.encode(tier, 1 - keep)]
            if a == base_action or (placement_ok and cache_ok):
                out.append(a)
        return out

    def returns_in_window(self, sim: CellSimulator, i: int) -> bool:
        """Whether request ``i``'s session comes back within ``return_horizon_s`` (hindsight)."""
        gap = sim.requests[i].gap_to_next_turn_s
        return gap is not None and gap <= self.return_horizon_s

    def window_end(self, sim: CellSimulator, i: int) -> float:
        """Decisions arriving before this time are taken by the base policy in the rollout:
        ``horizon_s`` after the decision, or just past the session's next turn if it comes
        within ``return_horizon_s`` (hindsight: the oracle knows whether it returns)."""
        req = sim.requests[i]
        end = req.arrival_s + self.horizon_s
        if self.returns_in_window(sim, i):
            end = max(end, req.arrival_s + float(req.gap_to_next_turn_s or 0.0) + 1e-9)
        return end

    # --- one rollout --------------------------------------------------------------------------

    def _rollout(
        self, env: EdgeCellEnv, i: int, action: int, end_s: float
    ) -> tuple[CellSimulator, float]:
        """Play ``action`` for request ``i`` on a fork, the base policy for the window's later
        decisions, and run the cell until every request has left it; (the fork, that time)."""
        sim = fork_simulator(env.sim)
        layout, spec = env.layout, env.feature_spec
        self.base.reset()
        tier_index, keep = layout.decode(action)
        sim.dispatch(i, tier_index, bool(keep))
        j = i + 1
        while j < env.n_requests and sim.requests[j].arrival_s < end_s:
            t = sim.requests[j].arrival_s
            sim.advance(t)
            state = sim.decision_state(j)
            mask = action_mask(state, spec)  # an invalid action is played as the env would
            a = layout.nearest_valid(int(self.base.act(state, mask)), mask)
            tier_j, keep_j = layout.decode(a)
            sim.dispatch(j, tier_j, bool(keep_j))
            j += 1
        return sim, empty_time(sim, sim.requests[j - 1].arrival_s)

    @staticmethod
    def _cost_until(sim: CellSimulator, t: float) -> float:
        """Cost the fork's ledger accrues from the decision (its last collection) to ``t``."""
        before = sim.ledger.latency_cost + sim.ledger.other_cost
        sim.advance(t)
        sim.ledger.collect(t)
        return sim.ledger.latency_cost + sim.ledger.other_cost - before


def settle(sim: CellSimulator, t: float) -> float:
    """Run ``sim`` from ``t`` with no new decisions until every request in it has left and the
    radio tails after them have run out; the cost accrued since the ledger's last collection.

    What an episode's truncation leaves uncounted: evaluation adds it (``finish_cost``) so that
    a policy that pushes cost past the episode's end is not flattered by the boundary."""
    end = empty_time(sim, t) + _longest_tail(sim)
    return CellOraclePolicy._cost_until(sim, end)


def empty_time(sim: CellSimulator, t: float, step_s: float = 10.0) -> float:
    """Advance ``sim`` with no new decisions until every request in it has left; that time.

    The ledger is not collected here: the oracle sums the cost once, to an end time common to
    all candidates."""
    while True:
        until = sim.ledger.open_until()
        if until <= t:
            return t
        t = until if np.isfinite(until) else t + step_s
        step_s *= 2.0
        sim.advance(t)


def _longest_tail(sim: CellSimulator) -> float:
    return max(d.radio.params.tail_s for d in sim.devices)
