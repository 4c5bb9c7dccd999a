"""The hindsight oracle: an upper reference for how much information is worth. NOT deployable.

For every request it asks the environment what each valid placement *would* cost with the true
future link capacity and the true edge queue (:meth:`SplitCacheEnv.what_if`) and takes the best
reward. Its cache choice uses hindsight too: keep the session's KV iff the session comes back
within the episode (``current_request.gap_to_next_turn_s is not None``), unless keeping is
invalid there. It is myopic (best reward per request, not per episode), so it is a reference
point, not a proven upper bound; evaluation outputs label it ``deployable: false``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from offload_rl.actions import DROP, KEEP

if TYPE_CHECKING:
    from envs.split_cache import SplitCacheEnv


class OraclePolicy:
    """Hindsight best action per request; needs the environment itself (``act_env``)."""

    name = "oracle"
    deployable = False

    def reset(self) -> None:
        return None

    def act_env(self, env: SplitCacheEnv) -> int:
        """The best valid action for the environment's current request, in hindsight."""
        mask = env.action_masks()
        layout = env.layout
        best_tier = int(np.argmax(hindsight_tier_rewards(env)))  # ties: the lowest tier index
        returns = env.current_request.gap_to_next_turn_s is not None
        keep = KEEP if returns else DROP
        action = layout.encode(best_tier, keep)
        return action if mask[action] else layout.nearest_valid(action, mask)


def hindsight_tier_rewards(env: SplitCacheEnv) -> np.ndarray:
    """Reward of the current request at every placement ``0 .. L+1`` in hindsight (true link
    and queue; keep where keeping is valid), ``-inf`` where the mask forbids the placement."""
    mask = env.action_masks()
    layout = env.layout
    out = np.full(layout.n_tiers, -np.inf)  # L + 3 with a device-lite model
    for tier in np.flatnonzero(mask[0::2] | mask[1::2]).tolist():
        action = layout.encode(tier, KEEP if mask[layout.encode(tier, KEEP)] else DROP)
        out[tier] = env.what_if(action).reward
    return out
