"""A session draw whose token lengths are mapped only where the stream reads them.

An EdgeCell-v0 reset draws ~4000 requests (the steady-state warm-up) to keep 257: the stream
reads the lengths of its own requests and of their sessions' earlier turns (their prior
context), a tenth of the draw. :func:`draw_sessions_lazy` makes exactly the generator calls of
:func:`~offload_rl.workloads.synthetic.draw_sessions`, in its order (the generator's state
afterwards is the same: later draws depend on it), but keeps the lengths' raw draws (uniforms,
normals, or the correlated latents); :func:`chosen_columns_lazy` maps them for the rows the
stream needs. Every mapping is element by element (the quantile interpolation, ``exp``,
rounding), so the values are those of the whole draw, picked
(``tests/offload_rl/test_workload_lazy_draw.py``). In compiled mode the default workload's
shape takes one kernel instead (:mod:`~offload_rl.workloads.fused_draw`, the same steps); the
lazy draw serves the others (correlated or lognormal lengths, other turns or gaps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from offload_rl.workloads import kernels, quantile_interp
from offload_rl.workloads.correlation import _tokens
from offload_rl.workloads.distributions import EmpiricalDist
from offload_rl.workloads.params import WorkloadParams
from offload_rl.workloads.request import FloatArray, IntArray


@dataclass(frozen=True)
class LazyDraw:
    """A draw's layout and arrivals, and its lengths' raw draws (requests session-major).

    ``raw`` holds the first prompts', follow-ups' and outputs' raw draws (independent
    lengths) or the ``(total, 2)`` latent scores (``p.correlation`` set)."""

    params: WorkloadParams
    arrival: FloatArray
    session: IntArray
    turn: IntArray
    offset: IntArray
    turns: IntArray
    raw: tuple[FloatArray, ...]

    def lengths(self, rows: IntArray) -> tuple[IntArray, IntArray]:
        """New-prompt and output tokens of ``rows`` (ascending indices into the draw): the
        values of ``draw_sessions``' ``new`` and ``output`` there."""
        p = self.params
        session = self.session[rows]
        first = self.turn[rows] == 0
        later = ~first
        new = np.empty(len(rows))
        if p.correlation is None:
            u_first, u_follow, u_out = self.raw
            new[first] = p.first_prompt_tokens.from_raw(u_first[session[first]])
            # a later turn's place among the draw's later turns: its index less the first
            # turns at or before it (one per session up to its own)
            follow = rows[later] - session[later] - 1
            new[later] = p.followup_prompt_tokens.from_raw(u_follow[follow])
            return _tokens(new), _tokens(p.output_tokens.from_raw(u_out[rows]))
        z = self.raw[0][rows]
        new[first] = p.first_prompt_tokens.from_normal(z[first, 0])
        new[later] = p.followup_prompt_tokens.from_normal(z[later, 0])
        return _tokens(new), _tokens(p.output_tokens.from_normal(z[:, 1]))


def draw_sessions_lazy(
    p: WorkloadParams, rng: np.random.Generator, rate_per_s: float, horizon_s: float
) -> LazyDraw:
    """``draw_sessions(p, rng, rate_per_s, horizon_s)``'s generator calls and layout, the
    lengths left as their raw draws."""
    from offload_rl.workloads.synthetic import draw_layout  # synthetic imports this module

    turns, session, offset, turn, _, arrival = draw_layout(p, rng, rate_per_s, horizon_s)
    n_sessions, total = len(turns), len(session)
    raw: tuple[FloatArray, ...]
    if p.correlation is None:
        raw = (
            p.first_prompt_tokens.draw_raw(rng, n_sessions),
            p.followup_prompt_tokens.draw_raw(rng, total - n_sessions),
            p.output_tokens.draw_raw(rng, total),
        )
    else:
        raw = (p.correlation.latent(turn, rng),)
    return LazyDraw(p, arrival, session, turn, offset, turns, raw)


def gap_to_next_turn(
    arrival: FloatArray, turn: IntArray, turns: IntArray, session: IntArray, chosen: IntArray
) -> FloatArray:
    """Each chosen request's gap to its session's next turn where that turn is chosen too,
    NaN otherwise (``session``: the chosen requests' sessions; the draw's arrays, turns and
    turns per session)."""
    n = len(chosen)
    position = np.full(len(arrival) + 1, -1, dtype=np.int64)
    position[chosen] = np.arange(n)
    # the next turn's index, -1 after a session's last (SessionDraw.next_index at chosen)
    nxt = np.where(turn[chosen] == turns[session] - 1, -1, chosen + 1)
    in_stream = (nxt >= 0) & (position[nxt] >= 0)
    gap_next = np.full(n, np.nan)
    gap_next[in_stream] = arrival[nxt[in_stream]] - arrival[chosen[in_stream]]
    return gap_next


def needed_rows(d: LazyDraw, chosen: IntArray) -> IntArray:
    """The rows whose lengths the stream reads, ascending: each chosen request's session from
    its first turn to its last chosen one (the prior context sums the earlier turns)."""
    c = np.sort(chosen)
    s = d.session[c]
    last = np.ones(len(c), dtype=np.bool_)
    last[:-1] = s[1:] != s[:-1]  # a session's chosen rows are adjacent in c (session-major)
    starts = d.offset[s[last]]
    sizes = c[last] + 1 - starts
    shift = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
    return shift + np.arange(int(sizes.sum()), dtype=np.int64)


def chosen_columns_lazy(
    d: LazyDraw, chosen: IntArray
) -> tuple[FloatArray, IntArray, IntArray, IntArray, IntArray, FloatArray]:
    """``SyntheticWorkload._chosen_columns`` of the whole draw, the lengths mapped for
    :func:`needed_rows` only."""
    fast = _compiled_columns(d, chosen)
    return fast if fast is not None else numpy_columns(d, chosen)


def numpy_columns(
    d: LazyDraw, chosen: IntArray
) -> tuple[FloatArray, IntArray, IntArray, IntArray, IntArray, FloatArray]:
    """:func:`chosen_columns_lazy` in numpy (the reference of its compiled path)."""
    session = d.session[chosen]
    gap_next = gap_to_next_turn(d.arrival, d.turn, d.turns, session, chosen)
    rows = needed_rows(d, chosen)
    new, output = d.lengths(rows)
    tokens = new + output
    before = np.cumsum(tokens) - tokens
    at = rows.searchsorted(chosen)
    prior = before[at] - before[rows.searchsorted(d.offset[session])]
    arrival = d.arrival[chosen]
    return arrival - arrival[0], session, new[at], output[at], prior, gap_next


_TABLES: dict[int, tuple[EmpiricalDist, FloatArray, FloatArray]] = {}


def distribution_table(dist: EmpiricalDist) -> tuple[FloatArray, FloatArray]:
    """``dist``'s probabilities and log values as :meth:`EmpiricalDist.from_raw` interpolates
    them (float64 arrays, made once per distribution object)."""
    hit = _TABLES.get(id(dist))
    if hit is None or hit[0] is not dist:
        if len(_TABLES) >= 64:  # parameters made on the fly (tests): keep the cache small
            _TABLES.clear()
        xp = np.asarray(dist.probs, dtype=np.float64)
        hit = _TABLES[id(dist)] = (dist, xp, np.log(dist.values))
    return hit[1], hit[2]


def _compiled_columns(
    d: LazyDraw, chosen: IntArray
) -> tuple[FloatArray, IntArray, IntArray, IntArray, IntArray, FloatArray] | None:
    """:func:`chosen_columns_lazy` in two compiled calls around numpy's ``exp``
    (:func:`~offload_rl.workloads.compiled_workload.lazy_rows` and ``lazy_columns``) where the
    workload's kernels run, the interpolation kernel gave ``np.interp``'s bits, the lengths are
    independent and all empirical (the default workload); None otherwise."""
    p = d.params
    dists = (p.first_prompt_tokens, p.followup_prompt_tokens, p.output_tokens)
    module = kernels.compiled()
    if module is None or p.correlation is not None or not quantile_interp.compiled_matches():
        return None
    if not all(isinstance(dist, EmpiricalDist) for dist in dists):
        return None
    tables = [a for dist in dists for a in distribution_table(cast(EmpiricalDist, dist))]
    rows, log_new, log_out = module.lazy_rows(chosen, d.session, d.offset, *d.raw, *tables)
    return cast(
        tuple[FloatArray, IntArray, IntArray, IntArray, IntArray, FloatArray],
        module.lazy_columns(
            chosen, d.session, d.turn, d.turns, d.arrival, rows, np.exp(log_new), np.exp(log_out)
        ),
    )
