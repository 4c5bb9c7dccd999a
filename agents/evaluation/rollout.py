"""Running one policy over one pinned episode, recording per-request columns.

Training's validation and the evaluation harness both call :func:`run_episode`, so a policy's
validation score and its evaluation score come from the same loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from agents.evaluation.episodes import Episode
from agents.policies import AnyPolicy
from offload_rl.heuristics import Policy

if TYPE_CHECKING:
    from envs.split_cache import SplitCacheEnv

# Per-request columns collected from the environment's info (and the state before the step).
FLOAT_COLUMNS: tuple[str, ...] = ("reward", "latency_s", "ttft_s", "energy_j", "usd", "mbps")
INT_COLUMNS: tuple[str, ...] = ("tier_index",)
BOOL_COLUMNS: tuple[str, ...] = (
    "slo_violated",
    "cache_hit",
    "has_context",
    "invalid_action",
    "keep",
    "private",
)
# With a device-lite model (scenario ``lite:``) only: whether the lite model answered, and the
# benchmark score of the model that answered (absent otherwise, so records stay as they were).
LITE_COLUMNS: tuple[str, ...] = ("lite", "quality")


def decider(policy: AnyPolicy, env: SplitCacheEnv) -> Callable[[], int]:
    """The policy's next action: hindsight policies (the oracle) read the environment,
    deployable ones see only the decision state and the mask."""
    act_env: Callable[[SplitCacheEnv], int] | None = getattr(policy, "act_env", None)
    if act_env is not None:
        return lambda: int(act_env(env))
    act = cast(Policy, policy).act
    return lambda: int(act(env.state, env.action_masks()))


def run_episode(policy: AnyPolicy, env: SplitCacheEnv, episode: Episode) -> dict[str, np.ndarray]:
    """Run ``policy`` over one pinned episode; per-request columns (see ``*_COLUMNS``)."""
    env.reset(seed=episode.workload_seed, options=episode.reset_options())
    policy.reset()
    lite = env.facts.has_lite
    names = (*FLOAT_COLUMNS, *INT_COLUMNS, *BOOL_COLUMNS, *(LITE_COLUMNS if lite else ()))
    cols: dict[str, list[Any]] = {c: [] for c in names}
    L = env.layout.n_layers
    top = env.layout.n_tiers - 1
    decide = decider(policy, env)
    while True:
        state = env.state
        action = decide()
        _, reward, _, truncated, info = env.step(action)
        tier_index = int(info["action"]) >> 1
        cols["reward"].append(float(reward))
        cols["latency_s"].append(float(info["latency_s"]))
        cols["ttft_s"].append(float(info["ttft_s"]))
        cols["energy_j"].append(float(info["energy_j"]))
        cols["usd"].append(float(info.get("usd", 0.0)))
        samples = state.throughput_mbps
        measured = info.get("measured_mbps", samples[-1] if len(samples) else 0.0)
        cols["mbps"].append(float(measured))
        cols["tier_index"].append(min(tier_index, top))
        cols["slo_violated"].append(bool(info["slo_violated"]))
        cols["cache_hit"].append(bool(info["cache_hit"]))
        cols["has_context"].append(state.context_tokens > 0)
        cols["invalid_action"].append(bool(info.get("invalid_action", False)))
        cols["keep"].append(bool(info.get("keep", tier_index <= L and action & 1)))
        cols["private"].append(bool(info.get("private", state.private)))
        if lite:
            cols["lite"].append(bool(info["lite"]))
            cols["quality"].append(float(info["quality"]))
        if truncated:
            break
    out: dict[str, np.ndarray] = {}
    for c in FLOAT_COLUMNS:
        out[c] = np.asarray(cols[c], dtype=np.float64)
    for c in INT_COLUMNS:
        out[c] = np.asarray(cols[c], dtype=np.int64)
    for c in BOOL_COLUMNS:
        out[c] = np.asarray(cols[c], dtype=bool)
    if lite:
        out["lite"] = np.asarray(cols["lite"], dtype=bool)
        out["quality"] = np.asarray(cols["quality"], dtype=np.float64)
    return out


def concat_column(records: Sequence[dict[str, np.ndarray]], column: str) -> np.ndarray:
    """One column of many episodes' records, end to end."""
    return np.concatenate([r[column] for r in records]) if records else np.zeros(0)
