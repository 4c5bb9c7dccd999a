"""Running one policy over one pinned EdgeCell-v0 episode: decision columns and finished requests.

In the cell an edge request's outcome is not known when it is decided: a step's info carries
the decided request's facts, the cell's state at the next decision and *sums* over the requests
that finished in the interval (``n_finished`` beside them). So an episode is recorded as two
tables of different lengths: one row per decision (``DECISION_COLUMNS``) and one row per
finished request (``REQUEST_COLUMNS``, prefixed ``req_``). Per-request metrics come from the
second; averaging the first's ``latency_s`` per step would weight a step that finished five
requests like one that finished none. ``finish_cost`` (one value per episode) is the cost that
accrues after the last decision until every request the episode decided has left the cell
(:func:`agents.cell_oracle.settle`): the truncated rewards leave it out, so a policy that pushes
cost past the episode's end would look better than it is. Settling runs every request still in
the cell to its last token, so those requests get ``req_`` rows too, with the latency they
really have and ``req_after_end`` = 1: every decided request has exactly one ``req_`` row, and
per-request figures are not biased toward the requests that happened to finish in time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from agents.cell_oracle import settle
from agents.evaluation.episodes import Episode
from agents.evaluation.rollout import decider
from agents.policies import AnyPolicy
from envs.edge_cell import OUTCOME_KEYS
from offload_rl.cell.thermal import DEVICE_CLASSES

if TYPE_CHECKING:
    from envs.edge_cell import EdgeCellEnv
    from offload_rl.cell.simulator import CellRequest

# info keys summed over the requests that finished in a step
INTERVAL_SUMS: tuple[str, ...] = OUTCOME_KEYS
DECISION_COLUMNS: tuple[str, ...] = (
    "reward",
    "dt",
    "time_s",
    "energy_j",
    "tier_index",
    "keep",
    "invalid_action",
    "device",
    "device_class",
    "device_temp_c",
    "edge_batch",
    "edge_kv_occupancy",
    "n_finished",
    *INTERVAL_SUMS,
)
REQUEST_COLUMNS: tuple[str, ...] = (
    "req_latency_s",
    "req_ttft_s",
    "req_slo_violated",
    "req_cache_hit",
    "req_has_context",
    "req_usd",
    "req_queue_s",
    "req_preempted",
    "req_device_class",
    "req_tier_index",
    "req_after_end",  # 1: still in the cell at the episode's end, finished by settling
)
CLASS_NAMES: tuple[str, ...] = tuple(DEVICE_CLASSES)
# with a device-lite model only: whether it answered, and the score of the model that did
LITE_REQUEST_COLUMNS: tuple[str, ...] = ("req_lite", "req_quality")


def _decision_row(info: dict[str, Any], reward: float, time_s: float) -> dict[str, float]:
    """One decision's row (``time_s`` since the episode's first decision) and its interval."""
    row = {
        "reward": reward,
        "dt": float(info["dt"]),
        "time_s": time_s,
        "energy_j": float(info["energy_j"]),
        "tier_index": float(int(info["action"]) >> 1),
        "keep": float(bool(info["keep"])),
        "invalid_action": float(bool(info["invalid_action"])),
        "device": float(info["device"]),
        "device_class": float(CLASS_NAMES.index(info["device_class"])),
        "device_temp_c": float(info["device_temp_c"]),
        "edge_batch": float(info["edge_batch"]),
        "edge_kv_occupancy": float(info["edge_kv_occupancy"]),
        "n_finished": float(info["n_finished"]),
    }
    row.update({k: float(info[k]) for k in INTERVAL_SUMS})
    return row


def _request_row(cr: CellRequest, class_index: int, after_end: bool) -> dict[str, float]:
    """One finished request's outcome."""
    return {
        "req_after_end": float(after_end),
        "req_latency_s": cr.latency_s,
        "req_ttft_s": cr.ttft_s,
        "req_slo_violated": float(cr.slo_violated),
        "req_cache_hit": float(cr.cache_hit),
        "req_has_context": float(cr.request.context_tokens > 0),
        "req_usd": cr.usd,
        "req_queue_s": cr.queue_s,
        "req_preempted": float(cr.preempted),
        "req_device_class": float(class_index),
        "req_tier_index": float(cr.tier_index),
    }


def _outcome(env: EdgeCellEnv, cr: CellRequest, after_end: bool) -> dict[str, float]:
    """A finished request's row, with the lite columns where the scenario has a lite model."""
    row = _request_row(cr, env.sim.devices[cr.device].class_index, after_end)
    if env.facts.has_lite:
        row["req_lite"] = float(cr.tier_index == env.layout.n_layers + 2)
        row["req_quality"] = env.facts.quality_of(cr.tier_index)
    return row


def settled_reward(record: dict[str, np.ndarray]) -> float:
    """An episode's reward per decision with the cost of finishing its requests counted
    (``finish_cost``): the headline score, free of the episode end's survivorship bias."""
    n = record["reward"].size
    return (float(record["reward"].sum()) - float(record["finish_cost"][0])) / n if n else 0.0


def run_cell_episode(
    policy: AnyPolicy, env: EdgeCellEnv, episode: Episode
) -> dict[str, np.ndarray]:
    """Run ``policy`` over one pinned cell episode; decision and ``req_`` columns."""
    env.reset(seed=episode.workload_seed, options=episode.reset_options())
    policy.reset()
    decide = decider(policy, env)  # type: ignore[arg-type]  # act(state, mask) only
    decisions: list[dict[str, float]] = []
    requests: list[dict[str, float]] = []
    time_s = 0.0
    while True:
        _, reward, _, truncated, info = env.step(decide())
        decisions.append(_decision_row(info, float(reward), time_s))
        time_s += float(info["dt"])
        requests += [_outcome(env, cr, after_end=False) for cr in env.last_finished]
        if truncated:
            break
    req_columns = (*REQUEST_COLUMNS, *(LITE_REQUEST_COLUMNS if env.facts.has_lite else ()))
    pending = env.sim.in_flight()
    finish_cost = settle(env.sim, env.sim.requests[env.request_index].arrival_s)
    requests += [_outcome(env, cr, after_end=True) for cr in pending]  # settled: all finished
    return {
        "finish_cost": np.array([finish_cost]),
        **{c: np.array([r[c] for r in decisions], dtype=np.float64) for c in DECISION_COLUMNS},
        **{c: np.array([r[c] for r in requests], dtype=np.float64) for c in req_columns},
    }
