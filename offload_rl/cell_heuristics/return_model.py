"""Will the session come back? The return model of the value-per-byte cache rule.

A kept entry is worth its memory only if its session has another turn. The model is the share of
*training* requests at each 0-based turn ``t`` whose session had another turn, fitted by counting
(turns from :data:`MAX_TURN` on share one bin, since few sessions get there). It is fitted on
the training episodes' sessions by ``experiments/tuning/tune_cell_heuristics.py`` and shipped in
the tuned parameters, so a workload whose sessions are mostly single-turn (Mooncake) and one
whose sessions are long (BurstGPT) get their own model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from offload_rl.workloads import Request

MAX_TURN = 8
PRIOR_WEIGHT = 1.0  # pseudo-requests of a 50/50 prior per bin: an empty bin reads 0.5


def fit_return_model(streams: Iterable[Sequence[Request]]) -> tuple[list[float], int]:
    """``(p_return per turn bin, sessions seen)`` from request streams (one per episode; a
    request's ``gap_to_next_turn_s`` says whether its session had another turn)."""
    seen = [0] * (MAX_TURN + 1)
    returned = [0] * (MAX_TURN + 1)
    sessions = 0
    for stream in streams:
        sessions += len({r.session_id for r in stream})
        for r in stream:
            b = min(max(r.turn, 0), MAX_TURN)
            seen[b] += 1
            returned[b] += r.gap_to_next_turn_s is not None
    p = [(k + 0.5 * PRIOR_WEIGHT) / (n + PRIOR_WEIGHT) for k, n in zip(returned, seen, strict=True)]
    return [round(x, 4) for x in p], sessions
