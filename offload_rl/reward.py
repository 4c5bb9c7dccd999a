"""The reward of one served request: the one formula the environment and every planner share.

PPO-versus-greedy is only a fair comparison while the environment scores a realised request and
the greedy planner scores a predicted one with the same rule, so the rule lives here alone::

    reward = -(w_latency * latency / SLO + w_energy * device_J + w_slo * violated + w_cost * USD)

with ``SLO = ttft_slo + (o - 1) * tpot_slo`` (the latency the request's class allows for its
``o`` output tokens). A request violates its SLO if its time to first token, or its mean time
per output token after the first, exceeds the class's target. USD prices the GPU-seconds the
request used on the edge and in the cloud.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    n_dec = output_tokens - 1
    return cost.ttft_s > ttft_slo_s or (
        n_dec > 0 and (cost.latency_s - cost.ttft_s) / n_dec > tpot_slo_s
    )


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
    return RequestScore(reward=reward, slo_violated=violated, usd=usd)
