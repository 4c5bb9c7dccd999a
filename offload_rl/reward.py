"""The reward of one served request: the one formula the environment and every planner share.

PPO-versus-greedy is only a fair comparison while the environment scores a realised request and
the greedy planner scores a predicted one with the same rule, so the rule lives here alone::

    reward = -(w_latency * latency / SLO + w_energy * device_J + w_slo * violated + w_cost * USD)

with ``SLO = ttft_slo + (o - 1) * tpot_slo`` (the latency the request's class allows for its
``o`` output tokens). A request violates its SLO if its time to first token, or its mean time
per output token after the first, exceeds the class's target. USD prices the GPU-seconds the
request used on the edge and in the cloud.

With a device-lite model (scenario ``lite:``) a request the lite model answers also costs
``w_quality * quality_gap`` (the main model's benchmark score minus the lite model's): the
worse answer it gets. Without one the term is absent (``w_quality = quality_gap = 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from heapq import heappop, heappush

from offload_rl.cost_model import RequestCost


@dataclass(frozen=True, slots=True)
class RewardRule:
    """Weights and prices of the reward (``reward.*``, ``edge``/``cloud.usd_per_hour``)."""

    w_latency: float
    w_energy: float
    w_slo: float
    w_cost: float
    usd_per_edge_s: float
    usd_per_cloud_s: float
    w_quality: float = 0.0  # per unit of benchmark score lost (lite answers only)
    quality_gap: float = 0.0  # main model's score - lite model's score

    @property
    def lite_penalty(self) -> float:
        """What one answer of the device-lite model costs: ``w_quality * quality_gap``."""
        return self.w_quality * self.quality_gap


@dataclass(slots=True)  # not frozen: built for every candidate action on the hot path
class RequestScore:
    """How one cost scores: the reward and the two facts it is made of that callers report."""

    reward: float
    slo_violated: bool
    usd: float


def slo_violated(
    cost: RequestCost, output_tokens: int, ttft_slo_s: float, tpot_slo_s: float
) -> bool:
    """Whether the request missed its time to first token or its mean time per output token."""
    return slo_violated_times(cost.ttft_s, cost.latency_s, output_tokens, ttft_slo_s, tpot_slo_s)


def slo_violated_times(
    ttft_s: float, latency_s: float, output_tokens: int, ttft_slo_s: float, tpot_slo_s: float
) -> bool:
    """:func:`slo_violated` from the two times (the cell knows them only once they happened)."""
    n_dec = output_tokens - 1
    return ttft_s > ttft_slo_s or (n_dec > 0 and (latency_s - ttft_s) / n_dec > tpot_slo_s)


def score_request(
    cost: RequestCost,
    output_tokens: int,
    ttft_slo_s: float,
    tpot_slo_s: float,
    rule: RewardRule,
) -> RequestScore:
    """The reward of serving a request at ``cost`` (see the module docstring for the formula)."""
    violated = slo_violated(cost, output_tokens, ttft_slo_s, tpot_slo_s)
    usd = cost.edge_gpu_s * rule.usd_per_edge_s + cost.cloud_gpu_s * rule.usd_per_cloud_s
    slo_total = ttft_slo_s + max(output_tokens - 1, 0) * tpot_slo_s
    reward = -(
        rule.w_latency * cost.latency_s / slo_total
        + rule.w_energy * cost.energy_j
        + rule.w_slo * (1.0 if violated else 0.0)
        + rule.w_cost * usd
    )
    if cost.lite:
        reward -= rule.lite_penalty
    return RequestScore(reward=reward, slo_violated=violated, usd=usd)


# --------------------------------------------------------------------------------------------
# The cell's rule: cost accrues through time (EdgeCell-v0)
# --------------------------------------------------------------------------------------------


class _RateTimeline:
    """A sum of rates that start and stop at given instants, integrated between collections.

    The ledger's costs are piecewise constant in time; keeping the current sum and a heap of the
    instants where it changes makes a collection cost O(changes in the interval), not O(requests
    in the system), and the cell collects twice per step. The sum is reset to exactly 0 whenever
    nothing is active, so rounding cannot leave a residual rate behind.
    """

    def __init__(self) -> None:
        self.rate = 0.0
        self.active = 0
        # (time, seq, delta rate, +1 start / -1 stop, key of a stopping request or None)
        self._changes: list[tuple[float, int, float, int, int | None]] = []
        self._seq = 0

    def clear(self) -> None:
        self.rate = 0.0
        self.active = 0
        self._changes.clear()

    def change(self, when: float, delta: float, step: int, key: int | None = None) -> None:
        """From ``when`` on, the rate moves by ``delta``; ``step`` is +1 for a start, -1 a stop."""
        self._seq += 1
        heappush(self._changes, (when, self._seq, delta, step, key))

    def integrate(self, t0: float, t: float, stopped: list[int]) -> float:
        """The integral over ``(t0, t]``; keys whose stop falls in it are appended to ``stopped``.

        A change dated before ``t0`` takes effect at ``t0`` (nothing is charged retroactively).
        """
        changes = self._changes
        total = 0.0
        at = t0
        rate = self.rate
        while changes and changes[0][0] <= t:
            when, _, delta, step, key = heappop(changes)
            if when > at:
                total += rate * (when - at)
                at = when
            rate += delta
            self.active += step
            if not self.active:
                rate = 0.0
            if key is not None:
                stopped.append(key)
        if t > at:
            total += rate * (t - at)
        self.rate = rate
        return total


MIN_SPREAD_S = 1e-6
"""Spreads no longer than this (seconds) are charged as a lump at their start. Nothing the
simulator spends energy over is that short (the shortest spread in the cell fingerprint's
episodes is 31 ms, its largest rate 5 W), and a rate over a much shorter interval would swamp
the running sum of rates: adding and removing ``total / 2.7e-109`` lost another spread's whole
cost to float cancellation (found by hypothesis)."""


class CostLedger:
    """The cell's reward: cost that accrues while it happens, collected between decisions.

    In a shared cell a decision's consequences arrive later and fall on other requests (a long
    prompt slows the whole batch, a kept entry takes memory a later request needs), so a
    per-request score given at decision time cannot credit them. Decima (SIGCOMM'19) charges
    ``-(jobs in system) x elapsed time``; here each request in the system accrues
    ``w_latency / SLO_i`` per second (the per-request rule's latency term, spread over the
    request's time in system), device energy is charged as it is spent, and the SLO penalty and
    the GPU price when the request completes. Summed over any interval, the latency part is
    exactly ``sum_i w_latency * (time of request i in the interval) / SLO_i``; over a run in which
    every request finished, the sum of the per-request rule's latency terms (Little's law, the
    identity Decima's reward rests on).

    Usage: :meth:`open` when a request enters the system, :meth:`close` when its last token
    reaches the device (possibly a time in the future), :meth:`spread` for energy spent over an
    interval, :meth:`charge` for a lump at an instant; :meth:`collect` returns the cost of
    ``(last collected time, t]``.
    """

    def __init__(self) -> None:
        self._open: dict[int, list[float]] = {}  # key -> [start, rate, end (inf: open)]
        self._latency = _RateTimeline()  # rates of the requests in the system
        self._spreads = _RateTimeline()  # rates of costs spread over intervals
        self._lumps: list[tuple[float, float]] = []  # (time, amount)
        self._t = 0.0
        self.latency_cost = 0.0  # collected so far, by kind
        self.other_cost = 0.0

    def reset(self, t: float = 0.0) -> None:
        """Forget everything; the next collection starts at ``t``."""
        self._open.clear()
        self._latency.clear()
        self._spreads.clear()
        self._lumps.clear()
        self._t = t
        self.latency_cost = self.other_cost = 0.0

    def open(self, key: int, start: float, rate: float) -> None:
        """Request ``key`` is in the system from ``start``, costing ``rate`` per second."""
        self._open[key] = [start, rate, float("inf")]
        self._latency.change(start, rate, +1)

    def close(self, key: int, end: float) -> None:
        """Request ``key`` leaves the system at ``end`` (may lie after the last collection)."""
        entry = self._open[key]
        entry[2] = end
        self._latency.change(end, -entry[1], -1, key)

    def spread(self, start: float, end: float, total: float) -> None:
        """``total`` cost spent uniformly over ``[start, end]``; an instant at ``start`` if the
        interval is no longer than :data:`MIN_SPREAD_S` (a rate of ``total / 1e-109`` added to
        the running sum of rates would swamp every other rate in it, float cancellation)."""
        if end - start <= MIN_SPREAD_S:
            self._lumps.append((start, total))
        else:
            rate = total / (end - start)
            self._spreads.change(start, rate, +1)
            self._spreads.change(end, -rate, -1)

    def charge(self, t: float, amount: float) -> None:
        """A lump of cost at time ``t`` (collected by the first collection at or after it)."""
        self._lumps.append((t, amount))

    def collect(self, t: float) -> tuple[float, float]:
        """``(latency cost, other cost)`` accrued in ``(last collection, t]``."""
        t0 = self._t
        left: list[int] = []
        latency = self._latency.integrate(t0, t, left)
        for key in left:
            del self._open[key]
        other = self._spreads.integrate(t0, t, left)
        if self._lumps:
            now = 0.0  # summed in list order (sum() compensates from Python 3.12 on)
            kept: list[tuple[float, float]] = []
            for lump in self._lumps:
                if lump[0] <= t:
                    now += lump[1]
                else:
                    kept.append(lump)
            self._lumps = kept
            other += now
        self._t = t
        self.latency_cost += latency
        self.other_cost += other
        return latency, other

    @property
    def n_open(self) -> int:
        return len(self._open)

    def open_until(self) -> float:
        """When the last request not yet collected leaves the system (``inf`` while one of
        them has no end yet; ``-inf`` if there is none): a lookahead runs the cell to here."""
        return max((end for _, _, end in self._open.values()), default=-float("inf"))
