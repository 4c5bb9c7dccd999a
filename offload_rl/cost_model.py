"""The cost of serving one request with one placement: latency, time to first token, energy.

Plain functions over plain floats (no numpy in the hot path): the environment calls
:func:`request_cost` once per step, and the oracle / greedy baselines once per candidate action.

Placement (``tier_index`` in ``0 .. L+1``):

* ``k = 0``            edge: the device sends token ids, the edge runs every layer;
* ``0 < k < L``        split: the device runs embedding + layers ``< k``, uploads the hidden
  states of the new tokens, the edge runs layers ``>= k`` and the LM head;
* ``k = L``            device: everything runs on the device, nothing crosses the link;
* ``k = L + 1``        cloud: token ids go to the edge, which forwards them over the backhaul;
* ``k = L + 2``        lite (only with a device-lite model, ``Tiers.lite``): the small model
  answers fully on the device, priced like fully local from *its* profile, with no kept KV
  (it recomputes the whole context) and nothing on the link.

Latency model (DESIGN.md, "System model"):

* prefill: device layers, then the uplink transfer integrated over the trace from the moment it
  starts (:meth:`Trace.finish_time`), RTT/2, the edge queue, the remote layers (slowed by edge
  load), RTT/2 for the first token back: that is the time to first token;
* decode of the remaining ``o - 1`` tokens: fully local or fully remote decoding streams
  tokens; a split strictly inside the model pays device layers + one token's activations up +
  remote layers + one full RTT per token (split decoding is round-trip bound). The decode-phase
  uploads are integrated over the trace as one transfer starting when decoding starts, which is
  exact on a constant link and a close approximation when capacity changes within the phase.
  Its blind spot is an outage that starts after those few kB are through: the real sender's
  next token waits it out. Pricing every token's upload at its own start time fixes that but
  walks one trace step per iteration, which took the environment well below its speed target
  (measured in ``docs/MEASUREMENTS.md``), and a vectorised fluid version stalls the compute
  between tokens during outages too; against the reference runtime the one-transfer pricing
  stays within the validation targets (``offload-rl validate`` reports the per-message walk
  beside it).

What is left out, on purpose: tokens coming back are 4-byte ids (32 bits per token, 0.3 ms at
0.1 Mbps against a 20 ms RTT), so their downlink transfer time is neglected (``LinkModel.downlink``
is carried for the reference runtime but unused here); the radio's receive energy is charged for
the whole time a remote tier works; contention between concurrent
requests on the same radio link is not modelled (each request sees the trace alone).
"""

from __future__ import annotations

from dataclasses import dataclass

from offload_rl.compiled_profile import CompiledProfile
from offload_rl.traces import Trace

TIER_DEVICE = "device"
TIER_SPLIT = "split"
TIER_EDGE = "edge"
TIER_CLOUD = "cloud"
TIER_LITE = "lite"
TIERS: tuple[str, ...] = (TIER_DEVICE, TIER_SPLIT, TIER_EDGE, TIER_CLOUD)
"""The main model's tiers (what every scenario reports)."""
LITE_TIERS: tuple[str, ...] = (*TIERS, TIER_LITE)
"""The tiers of a scenario with a device-lite model."""


def tier_of(tier_index: int, n_layers: int) -> str:
    """Name of the tier that a tier index (``0 .. L+2``) selects."""
    if tier_index == n_layers + 2:
        return TIER_LITE
    if tier_index == n_layers + 1:
        return TIER_CLOUD
    if tier_index == n_layers:
        return TIER_DEVICE
    if tier_index == 0:
        return TIER_EDGE
    return TIER_SPLIT


@dataclass(frozen=True, slots=True)
class EnergyModel:
    """Device power draw (watts); defaults from PARAMETERS.md (ARO lte.conf, phone SoC)."""

    compute_w: float = 5.0  # SoC + DRAM while running layers
    radio_tx_w: float = 1.2  # LTE active base power while uploading (beta)
    radio_tx_w_per_mbps: float = 0.438  # + alpha_up per Mbps of upload rate
    radio_rx_w: float = 1.06  # connected / receiving while a remote tier works (tail level)
    radio_tail_s: float = 0.0  # extra connected time after each offloaded request


@dataclass(frozen=True, slots=True)
class LinkModel:
    """The radio link and the backhaul, for one episode."""

    uplink: Trace
    downlink: Trace
    rtt_edge_s: float
    rtt_cloud_extra_s: float
    backhaul_bytes_per_s: float


@dataclass(frozen=True, slots=True)
class Tiers:
    """Compiled profiles of the three places a layer can run, and of the device-lite model
    (a different, smaller model fully on the device; ``None`` when none is configured)."""

    device: CompiledProfile
    edge: CompiledProfile
    cloud: CompiledProfile
    lite: CompiledProfile | None = None

    @property
    def n_layers(self) -> int:
        return self.device.n_layers


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is 3x slower (hot path)
class RequestCost:
    """What one placement of one request costs."""

    ttft_s: float
    latency_s: float  # arrival to last token
    energy_j: float  # device side
    device_busy_s: float
    upload_s: float
    upload_bytes: float
    edge_gpu_s: float
    cloud_gpu_s: float
    prefill_tokens: int
    lite: bool = False  # answered by the device-lite model (the reward charges its quality gap)


def request_cost(
    tier_index: int,
    t0: float,
    new_tokens: int,
    context_tokens: int,
    cached_tokens: int,
    output_tokens: int,
    tiers: Tiers,
    link: LinkModel,
    energy: EnergyModel,
    edge_queue_s: float = 0.0,
    edge_slowdown: float = 1.0,
    cloud_queue_s: float = 0.0,
    cloud_slowdown: float = 1.0,
) -> RequestCost:
    """Cost of serving one request with placement ``tier_index`` starting at trace time ``t0``.

    ``cached_tokens`` (<= ``context_tokens``) are already in a valid KV cache of this placement
    and are neither recomputed nor re-sent. The device is assumed to keep the KV of its own
    layers for a cached session, so a hit shortens prefill on both sides. Queueing delay and
    slowdown (layer time multiplier from batching with other users) are given per tier.
    """
    L = tiers.n_layers
    total_ctx = context_tokens + new_tokens  # positions present once prefill is done
    cached = min(cached_tokens, context_tokens)
    prefill = total_ctx - cached
    n_decode = output_tokens - 1 if output_tokens > 1 else 0
    if tier_index == L:
        return _device_cost(tiers.device, L, prefill, cached, n_decode, total_ctx, energy)
    if tier_index == L + 2:
        return lite_cost(tiers, new_tokens, context_tokens, output_tokens, energy)

    is_cloud = tier_index == L + 1
    if is_cloud:  # token ids to the edge, forwarded over the backhaul
        remote, k, queue, slowdown = tiers.cloud, 0, cloud_queue_s, cloud_slowdown
        rtt = link.rtt_edge_s + link.rtt_cloud_extra_s
    else:
        remote, k, queue, slowdown = tiers.edge, tier_index, edge_queue_s, edge_slowdown
        rtt = link.rtt_edge_s
    dev = tiers.device

    # -- prefill ------------------------------------------------------------------------
    if k > 0:
        dev_prefill = dev.embed_prefill_s(prefill) + dev.layers_prefill_s(0, k, prefill, cached)
    else:
        dev_prefill = 0.0
    up_bytes = float(prefill * dev.activation_bytes_per_token[k])
    t_up = t0 + dev_prefill
    up_time = link.uplink.finish_time(t_up, up_bytes) - t_up if up_bytes > 0 else 0.0
    backhaul = up_bytes / link.backhaul_bytes_per_s if is_cloud else 0.0
    remote_prefill = (
        (remote.embed_prefill_s(prefill) if k == 0 else 0.0)
        + remote.layers_prefill_s(k, L, prefill, cached)
        + remote.head_first_token_s()
    ) * slowdown
    ttft = dev_prefill + up_time + backhaul + rtt + queue + remote_prefill

    # -- decode -------------------------------------------------------------------------
    if k == 0:  # the remote tier decodes alone and streams token ids down
        remote_decode = (
            remote.layers_decode_s(0, L, n_decode, total_ctx)
            + remote.embed_head_decode_s(n_decode, total_ctx)
        ) * slowdown
        dev_decode = dec_up_time = dec_up_bytes = 0.0
        decode = remote_decode
    else:
        dev_decode, remote_decode, dec_up_bytes, dec_up_time = _split_decode(
            dev, remote, k, n_decode, total_ctx, slowdown, link.uplink, t0 + ttft
        )
        decode = dev_decode + dec_up_time + remote_decode + n_decode * rtt

    latency = ttft + decode
    gpu_s = remote_prefill + remote_decode
    return RequestCost(
        ttft_s=ttft,
        latency_s=latency,
        energy_j=_device_energy(
            energy,
            latency,
            dev_prefill + dev_decode,
            up_time + dec_up_time,
            up_bytes + dec_up_bytes,
        ),
        device_busy_s=dev_prefill + dev_decode,
        upload_s=up_time + dec_up_time,
        upload_bytes=up_bytes + dec_up_bytes,
        edge_gpu_s=0.0 if is_cloud else gpu_s,
        cloud_gpu_s=gpu_s if is_cloud else 0.0,
        prefill_tokens=prefill,
    )


def lite_cost(
    tiers: Tiers, new_tokens: int, context_tokens: int, output_tokens: int, energy: EnergyModel
) -> RequestCost:
    """The device-lite model answers: fully local on *its* profile, the whole context
    prefilled (it keeps no KV of the main model's sessions), nothing on the link."""
    lite = tiers.lite
    if lite is None:
        raise ValueError("tier L + 2 (lite) needs a device-lite model (scenario 'lite:')")
    total_ctx = context_tokens + new_tokens
    n_decode = output_tokens - 1 if output_tokens > 1 else 0
    cost = _device_cost(lite, lite.n_layers, total_ctx, 0, n_decode, total_ctx, energy)
    cost.lite = True
    return cost


def _device_cost(
    dev: CompiledProfile,
    L: int,
    prefill: int,
    cached: int,
    n_decode: int,
    total_ctx: int,
    energy: EnergyModel,
) -> RequestCost:
    """Everything on the device: nothing crosses the link, the SoC is busy the whole time."""
    ttft = (
        dev.embed_prefill_s(prefill)
        + dev.layers_prefill_s(0, L, prefill, cached)
        + dev.head_first_token_s()
    )
    decode = dev.layers_decode_s(0, L, n_decode, total_ctx) + dev.embed_head_decode_s(
        n_decode, total_ctx
    )
    latency = ttft + decode
    return RequestCost(
        ttft_s=ttft,
        latency_s=latency,
        energy_j=energy.compute_w * latency,
        device_busy_s=latency,
        upload_s=0.0,
        upload_bytes=0.0,
        edge_gpu_s=0.0,
        cloud_gpu_s=0.0,
        prefill_tokens=prefill,
    )


def _split_decode(
    dev: CompiledProfile,
    remote: CompiledProfile,
    k: int,
    n_decode: int,
    total_ctx: int,
    slowdown: float,
    uplink: Trace,
    t_start: float,
) -> tuple[float, float, float, float]:
    """Split decoding, every token across the link and back: device seconds, remote seconds,
    upload bytes and upload seconds (one transfer from ``t_start``, see the module docstring)."""
    dev_decode = dev.layers_decode_s(0, k, n_decode, total_ctx) + n_decode * (
        dev.embed_decode[0] + dev.embed_decode[1] * total_ctx
    )
    remote_decode = (
        remote.layers_decode_s(k, remote.n_layers, n_decode, total_ctx)
        + n_decode * (remote.head_decode[0] + remote.head_decode[1] * total_ctx)
    ) * slowdown
    up_bytes = float(n_decode * dev.activation_bytes_per_token[k])
    up_time = uplink.finish_time(t_start, up_bytes) - t_start if up_bytes > 0 else 0.0
    return dev_decode, remote_decode, up_bytes, up_time


def _device_energy(
    energy: EnergyModel, latency: float, busy_s: float, upload_s: float, upload_bytes: float
) -> float:
    """Device joules of an offloaded request: compute while busy, the radio's transmit power
    (base + per Mbps of the achieved rate) while uploading, its connected power otherwise."""
    rate_mbps = upload_bytes * 8e-6 / upload_s if upload_s > 0 else 0.0
    radio_wait = max(latency - upload_s - busy_s, 0.0) + energy.radio_tail_s
    return (
        energy.compute_w * busy_s
        + (energy.radio_tx_w + energy.radio_tx_w_per_mbps * rate_mbps) * upload_s
        + energy.radio_rx_w * radio_wait
    )
