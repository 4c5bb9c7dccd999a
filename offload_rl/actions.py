"""The joint action layout: where the layers run, and whether the edge keeps the session's KV.

A joint ``Discrete(2 * (L + 2))`` rather than ``MultiDiscrete([L + 2, 2])``: "cloud + keep" is a
forbidden *combination* (the cloud tier is stateless), and sb3-contrib masks each segment of a
``MultiDiscrete`` on its own, so only a joint space can mask it.

``action = tier_index * 2 + keep`` with ``tier_index`` in ``0 .. L + 1``:
``k = tier_index`` layers on the device for ``tier_index <= L`` (``0`` = edge runs everything,
``L`` = fully local), ``L + 1`` = cloud; ``keep`` 0 drops the session's KV, 1 keeps it.

With a device-lite model configured (scenario ``lite:``), one more tier follows: ``L + 2`` =
the small model fully on the device. Its answers are worse, so the reward charges the quality
gap; it keeps no main-model KV, so "lite + keep" is never valid (as "cloud + keep"). Without a
lite model the layout is exactly the one above, so existing policies keep their action space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offload_rl.cost_model import tier_of

DROP = 0
KEEP = 1


@dataclass(frozen=True, slots=True)
class ActionLayout:
    """Encoding of joint actions for a model with ``n_layers`` decoder layers."""

    n_layers: int
    lite: bool = False  # the device-lite tier exists (index L + 2)

    @property
    def n_tiers(self) -> int:
        """Splits ``0 .. L`` plus the cloud (plus the lite tier, when configured)."""
        return self.n_layers + 3 if self.lite else self.n_layers + 2

    @property
    def n_actions(self) -> int:
        return 2 * self.n_tiers

    @property
    def cloud_index(self) -> int:
        return self.n_layers + 1

    @property
    def lite_index(self) -> int | None:
        """Tier index of the device-lite model, ``None`` when none is configured."""
        return self.n_layers + 2 if self.lite else None

    def encode(self, tier_index: int, keep: int) -> int:
        """Joint action of a placement and a cache choice."""
        return tier_index * 2 + keep

    def decode(self, action: int) -> tuple[int, int]:
        """``(tier_index, keep)`` of a joint action."""
        return action >> 1, action & 1

    def meaning(self, action: int) -> str:
        """Human-readable meaning, e.g. ``split k=4, keep``, ``cloud, drop`` or ``lite, drop``."""
        tier_index, keep = self.decode(action)
        tier = tier_of(tier_index, self.n_layers)
        cache = "keep" if keep else "drop"
        if tier == "split":
            return f"split k={tier_index}, {cache}"
        return f"{tier}, {cache}"

    def meanings(self) -> list[str]:
        return [self.meaning(a) for a in range(self.n_actions)]

    def nearest_valid(self, action: int, mask: np.ndarray) -> int:
        """The valid action closest to ``action``: nearest valid placement, same cache choice
        if that is valid there. Used when an invalid action is sent anyway."""
        if 0 <= action < self.n_actions and mask[action]:
            return action
        tier_index, keep = self.decode(action) if 0 <= action < self.n_actions else (0, DROP)
        tier_ok = mask[0::2] | mask[1::2]
        candidates = np.flatnonzero(tier_ok)
        if candidates.size == 0:  # cannot happen with masks from features.action_mask
            raise ValueError("action mask has no valid action")
        best = int(candidates[np.argmin(np.abs(candidates - tier_index))])
        if mask[self.encode(best, keep)]:
            return self.encode(best, keep)
        return self.encode(best, 1 - keep)
