"""The requests ``offload-rl validate`` replays: the default workload, scaled to the model.

Lengths are clipped to the configured ranges and each session's context is recomputed from the
clipped lengths, so the replay keeps the KV model's invariant (a turn's context is its session's
history) that the runtime's caches rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offload_rl.workloads import TokenScaling, load_workload
from validation.config import ValidationConfig


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """One request of the replayed stream (token lengths scaled to the runtime's model)."""

    index: int
    arrival_s: float
    session: int
    turn: int
    new_tokens: int
    context_tokens: int
    output_tokens: int

    @property
    def session_id(self) -> int:
        """The session, under the name :mod:`offload_rl.device_view` reads."""
        return self.session


def replay_requests(cfg: ValidationConfig, max_positions: int, seed: int) -> list[ReplayRequest]:
    """Requests of the default workload, lengths x ``token_scale`` clipped to the configured
    ranges; each session's context is recomputed from the clipped lengths (the KV model's
    invariant), and a session whose next turn would overflow the model's positions restarts
    with an empty context."""
    workload = load_workload("default", TokenScaling())
    raw = workload.sample(np.random.default_rng(seed), cfg.requests)
    totals: dict[int, int] = {}
    out: list[ReplayRequest] = []
    for i, r in enumerate(raw):
        new = int(np.clip(round(r.new_tokens * cfg.token_scale), cfg.min_new, cfg.max_new))
        o = int(np.clip(round(r.output_tokens * cfg.token_scale), cfg.min_out, cfg.max_out))
        new = min(new, max_positions - o)
        context = totals.get(r.session_id, 0) if r.turn > 0 else 0
        if context + new + o > max_positions:
            context = 0
        totals[r.session_id] = context + new + o
        out.append(ReplayRequest(i, r.arrival_s, r.session_id, r.turn, new, context, o))
    return out
