"""What the simulator predicts for a replayed request, and a per-message variant of it.

:func:`predict` is :func:`offload_rl.cost_model.request_cost` itself, unmodified, with the
replay's conditions: one request at a time (no edge queue, no slowdown). The validation's
headline errors are that function's.

:func:`per_message_latency` is a deliberately different model, not a second copy of the cost
model: it prices every message at its own start time as the real runtime's paced link sends
it, which ``request_cost`` does not do on purpose (see its docstring: it integrates the decode
uploads as one transfer for speed, and gives the downlink no capacity). It is reported beside
the headline to isolate those two approximations from the profile's errors. Its prefill leg is
``request_cost``'s own; only the decode and the tokens coming back are walked message by
message, with the same per-token compute as ``request_cost`` sums in closed form.
"""

from __future__ import annotations

import math
from typing import Any

from offload_rl.compiled_profile import CompiledProfile
from offload_rl.cost_model import EnergyModel, LinkModel, RequestCost, Tiers, request_cost
from offload_rl.traces import Trace
from validation.request_stream import ReplayRequest

PER_TOKEN_UPLOADS = "per_token_uploads"
PER_MESSAGE_LINK = "per_message_link"


def predict(
    k: int,
    trace_t: float,
    req: ReplayRequest,
    cached: int,
    tiers: Tiers,
    link: LinkModel,
) -> RequestCost:
    """``request_cost`` of split ``k`` with no edge queue and no slowdown (requests replay one
    after another: the edge has no other user)."""
    return request_cost(
        k,
        trace_t,
        req.new_tokens,
        req.context_tokens,
        cached,
        req.output_tokens,
        tiers,
        link,
        EnergyModel(),
        edge_queue_s=0.0,
        edge_slowdown=1.0,
    )


def per_message_latency(
    k: int,
    trace_t: float,
    req: ReplayRequest,
    cached: int,
    tiers: Tiers,
    link: LinkModel,
    downlink: bool,
) -> tuple[float, float] | None:
    """(TTFT, latency) with every message priced on the link at its own start time.

    The same compute and RTTs as :func:`request_cost`, walked token by token: each decode
    upload starts when its token's device layers finish (``request_cost`` integrates the
    ``o - 1`` uploads as one transfer from the end of prefill) and, with ``downlink``, each
    token id (4 bytes) crosses the downlink trace (FIFO) before its RTT/2 (``request_cost``
    gives the downlink no capacity: an outage there delays nothing). Differences from
    ``request_cost`` isolate those approximations from the profile's errors; on a constant
    link without ``downlink`` both agree. ``None`` for a fully local request.
    """
    if not 0 <= k < tiers.n_layers:
        return None
    half = link.rtt_edge_s / 2.0
    # the first token leaves the edge when request_cost's prefill says, RTT/2 before its TTFT
    leave = trace_t + predict(k, trace_t, req, cached, tiers, link).ttft_s - half
    deliver = _Downlink(
        link.downlink if downlink else None,
        float(tiers.device.activation_bytes_per_token[0]),  # token ids
        half,
    )
    total_ctx = req.context_tokens + req.new_tokens
    n_decode = max(req.output_tokens - 1, 0)
    if k == 0:
        end = _edge_decode(tiers.edge, leave, total_ctx, n_decode, deliver)
        return end[0] - trace_t, end[1] - trace_t
    t = deliver.arrival(leave)
    ttft = t - trace_t
    dev, edge = tiers.device, tiers.edge
    step_bytes = float(dev.activation_bytes_per_token[k])
    for j in range(n_decode):
        ctx = total_ctx + j
        t += (
            dev.layers_decode_s(0, k, 1, ctx)
            + dev.embed_decode[0]
            + dev.embed_decode[1] * (total_ctx)
        )
        t = link.uplink.finish_time(t, step_bytes) + half
        t += (
            edge.layers_decode_s(k, tiers.n_layers, 1, ctx)
            + edge.head_decode[0]
            + edge.head_decode[1] * total_ctx
        )
        t = deliver.arrival(t)
    return ttft, t - trace_t


class _Downlink:
    """Token ids on their way to the device: over the downlink trace (or instantly), + RTT/2."""

    def __init__(self, trace: Trace | None, token_bytes: float, half_rtt_s: float) -> None:
        self.trace = trace
        self.token_bytes = token_bytes
        self.half = half_rtt_s

    def done(self, t: float) -> float:
        """When a token that starts crossing at ``t`` has crossed (before the RTT/2)."""
        return self.trace.finish_time(t, self.token_bytes) if self.trace is not None else t

    def arrival(self, t: float) -> float:
        """When a token that leaves the edge at ``t`` reaches the device."""
        return self.done(t) + self.half


def _edge_decode(
    edge: CompiledProfile, leave: float, total_ctx: int, n_decode: int, deliver: _Downlink
) -> tuple[float, float]:
    """(first, last) arrival times of the tokens of a request the edge decodes alone
    (``k = 0``): its tokens queue on the downlink in order."""
    L = edge.n_layers
    emitted = [leave]
    t = leave
    e0 = edge.embed_decode[0] + edge.head_decode[0]
    e1 = edge.embed_decode[1] + edge.head_decode[1]
    for j in range(n_decode):
        ctx = total_ctx + j
        t += edge.layers_decode_s(0, L, 1, ctx) + e0 + e1 * ctx
        emitted.append(t)
    free = -math.inf
    arrivals: list[float] = []
    for sent in emitted:
        free = deliver.done(max(sent, free))
        arrivals.append(free + deliver.half)
    return arrivals[0], arrivals[-1]


def prediction_values(cost: RequestCost, cached_positions: int) -> dict[str, float]:
    """The figures of a prediction that the report keeps."""
    return {
        "ttft_s": cost.ttft_s,
        "latency_s": cost.latency_s,
        "upload_s": cost.upload_s,
        "upload_bytes": cost.upload_bytes,
        "device_busy_s": cost.device_busy_s,
        "edge_s": cost.edge_gpu_s,
        "cached_tokens": float(cached_positions),
    }


def predictions(
    record: Any,
    trace_t: float,
    req: ReplayRequest,
    tiers: dict[str, Tiers],
    link: LinkModel,
    primary: str,
) -> dict[str, dict[str, float]]:
    """Every profile's prediction of what ``record`` (a runtime's request record) measured,
    and, for the ``primary`` profile, what request_cost would give with per-message timing."""
    out: dict[str, dict[str, float]] = {}
    k, cached = record.split, record.cached_positions
    for label, tier in tiers.items():
        out[label] = prediction_values(predict(k, trace_t, req, cached, tier, link), cached)
        if label != primary:
            continue
        for variant, with_downlink in ((PER_TOKEN_UPLOADS, False), (PER_MESSAGE_LINK, True)):
            walked = per_message_latency(k, trace_t, req, cached, tier, link, with_downlink)
            values = dict(out[label])
            if walked is not None:
                if with_downlink:
                    values["ttft_s"] = walked[0]
                values["latency_s"] = walked[1]
            out[f"{label}+{variant}"] = values
    return out
