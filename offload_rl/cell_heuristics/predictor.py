"""The cell greedy's forecast: each placement's latency, energy and reward, from what the device
and the edge know now.

The single-device ``greedy`` turns the edge's busy share into a queue and slowdown through the
scenario's exogenous load model; in the cell the runtime beside the decision service knows its
queue and batch exactly, and the device knows its class, its heat level and its radio state. The
forecast of placement ``t`` for the current request:

1. **the cost model** (:func:`~offload_rl.cost_model.request_cost`) on a constant link at the
   predicted uplink rate (the device's own samples, :func:`~offload_rl.heuristics.
   estimate_throughput` x a tuned margin) with the predicted output length
   (:mod:`.output_length`) and the cached tokens where the placement matches the kept split;
   for the edge tiers its queue is the edge outlook's wait plus what the batch adds to the
   prefill (:mod:`.edge_outlook`), and what the batch adds to the decode is added to the
   latency;
2. **the device** (:mod:`.device_outlook`): the local and edge paths start once the phone's
   compute queue is free (the simulated phone runs one thing at a time, and a token-id upload
   waits for it too); the state does not say how long that is, but the OS thermal level does
   (a phone that is serious has almost always been running a local request for a while), so
   the wait is the training episodes' mean wait at that level (tuned); its work runs through
   the thermal model from the temperature its OS level implies (the throttle stretches it), at
   its class's power; a
   remote tier waits out any radio promotion, and the radio's energy is what the state machine
   spends for the transfers the cell makes (upload, then the token stream; the cloud's whole
   request), tail included, beyond what it spends anyway;
3. **the reward rule** (:func:`~offload_rl.reward.score_request`) on that cost: the formula the
   cell's ledger accrues for a request over its time in the system.

The edge's GPU dollars are left out of the cost, as the cell leaves them out (``usd`` is counted
for the cloud tier only). What the forecast cannot know is listed in the modules it uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from offload_rl.cell.batch_roofline import BatchRoofline, for_profile
from offload_rl.cell.config import CellConfig
from offload_rl.cell.radio import RADIOS, RadioParams
from offload_rl.cell.thermal import DEVICE_CLASSES, DeviceClass
from offload_rl.cell_heuristics.device_outlook import (
    marginal_radio_energy,
    run_on_device,
    temperature_estimate,
    wake_delay,
)
from offload_rl.cell_heuristics.edge_outlook import EdgeBatchModel, EdgeOutlook, EdgeView
from offload_rl.cell_heuristics.output_length import OutputLengthPredictor
from offload_rl.cell_heuristics.tuned import PredictorParams
from offload_rl.cost_model import (
    TIER_CLOUD,
    TIER_DEVICE,
    TIER_EDGE,
    TIER_LITE,
    TIER_SPLIT,
    LinkModel,
    RequestCost,
    request_cost,
    tier_of,
)
from offload_rl.errors import ConfigError
from offload_rl.features import CellDecisionState
from offload_rl.heuristics import MIN_ESTIMATE_MBPS, GreedyPolicy, estimate_throughput
from offload_rl.profiles import load_profile
from offload_rl.reward import RequestScore, score_request
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import scenario_facts
from offload_rl.traces import BYTES_PER_MBIT

CLASS_LIST: tuple[DeviceClass, ...] = tuple(DEVICE_CLASSES.values())


@dataclass(slots=True)
class TierForecast:
    """One placement's forecast for the current request."""

    tier: int
    reward: float
    latency_s: float
    ttft_s: float
    energy_j: float
    slo_violated: bool
    device_work_s: float  # full-clock seconds of compute it asks of the device
    externality_s: float  # seconds of delay it imposes on the edge's other requests
    output_tokens: int


def edge_roofline(scenario: Scenario) -> BatchRoofline:
    """The batched roofline of the scenario's edge profile (what the simulated edge runs)."""
    path = scenario.resolve_path(scenario.profiles.edge)
    profile = load_profile(str(path) if path.suffix == ".json" else scenario.profiles.edge)
    return for_profile(profile)


def cell_radio(cell: CellConfig) -> RadioParams:
    """The radio a heuristic assumes: the cell's cellular radio (timers zero when switched off)."""
    radio = RADIOS[cell.radio]
    if not cell.radio_state_machine:
        radio = replace(radio, promo_s=0.0, promo_w=0.0, tail_s=0.0, tail_w=0.0)
    return radio


class CellForecaster:
    """Forecasts every valid placement of a request in the cell (see the module docstring)."""

    def __init__(self, scenario: Scenario, params: PredictorParams) -> None:
        if scenario.cell is None:
            raise ConfigError(f"scenario {scenario.name!r} has no 'cell:' section")
        self.scenario = scenario
        self.cell = cell = scenario.cell
        self.facts = facts = scenario_facts(scenario)
        self.tiers = facts.tiers
        self.L = facts.n_layers
        self.layout = facts.layout
        self.params = params
        self.roofline = edge_roofline(scenario)
        self.edge_model = EdgeBatchModel(  # the sequence cap the simulator's scheduler gets
            self.roofline,
            cell.max_num_batched_tokens,
            cell.max_num_seqs if cell.batching else 1,
        )
        self.radio = cell_radio(cell)
        self.pool_bytes = float(cell.kv_pool_bytes or scenario.edge.kv_cache_bytes)
        self.output = OutputLengthPredictor(facts.mean_output_tokens, params.output_prev_weight)
        # the output a running request still owes, on average (length-biased: about the mean)
        self.others_remaining = float(facts.mean_output_tokens)
        self._single = GreedyPolicy("greedy-ewma-always", scenario)

    def link(self, mbps: float) -> LinkModel:
        """A constant link at ``mbps`` (the single-device greedy's memo, shared)."""
        return self._single.link_at(mbps)

    def uplink_mbps(self, state: CellDecisionState) -> float:
        """Predicted uplink rate: the device's own samples, times the tuned margin."""
        p = self.params
        return estimate_throughput(state.throughput_mbps, p.estimator) * p.throughput_margin

    def device_class(self, state: CellDecisionState) -> DeviceClass:
        return CLASS_LIST[min(max(int(state.device_class), 0), len(CLASS_LIST) - 1)]

    def forecast(
        self, state: CellDecisionState, tiers: list[int], output_tokens: int | None = None
    ) -> list[TierForecast]:
        """The forecast of each placement in ``tiers`` (``output_tokens`` replaces the
        predicted output length: for checks against the realised outcome)."""
        mbps = max(self.uplink_mbps(state), MIN_ESTIMATE_MBPS)
        link = self.link(mbps)
        o = output_tokens or self.output.predict(int(state.prev_output_tokens))
        cls = self.device_class(state)
        temp = temperature_estimate(cls, state.thermal_level) if self.cell.thermal else 0.0
        edge = EdgeView(
            state.edge_waiting, state.edge_waiting_tokens, state.edge_running,
            state.edge_running_tokens,
        )  # fmt: skip
        return [self._one(state, t, link, mbps, o, cls, temp, edge) for t in tiers]

    def _one(
        self,
        state: CellDecisionState,
        t: int,
        link: LinkModel,
        mbps: float,
        o: int,
        cls: DeviceClass,
        temp: float,
        edge: EdgeView,
    ) -> TierForecast:
        L = self.L
        kind = tier_of(t, L)  # the layout's meaning of a tier index, from its one home
        at_edge = kind in (TIER_EDGE, TIER_SPLIT)
        ctx, new = int(state.context_tokens), int(state.new_tokens)
        cached = min(int(state.cached_tokens), ctx) if state.cached_split == t else 0
        prefill = ctx + new - cached
        outlook = EdgeOutlook(0.0, 0.0, 0.0, 0.0)
        if at_edge:
            outlook = self.edge_model.outlook(edge, t, prefill, cached, o, self.others_remaining)
        sc = self.scenario
        cost = request_cost(
            t, 0.0, new, ctx, cached, o, self.tiers, link, self.facts.energy,
            edge_queue_s=outlook.wait_s + outlook.prefill_extra_s,
            cloud_queue_s=sc.cloud.queue_s, cloud_slowdown=sc.cloud.slowdown,
        )  # fmt: skip
        latency = cost.latency_s + outlook.decode_extra_s
        ttft = cost.ttft_s
        work = cost.device_busy_s
        wall, joules = self._device_run(cls, temp, work)
        on_device = kind in (TIER_DEVICE, TIER_LITE)  # the phone alone: no link, no radio
        pre_work = cost.ttft_s if on_device else self._prefill_work(t, prefill, cached)
        stretch = wall / work if work > 0 else 1.0
        ttft += (stretch - 1.0) * pre_work
        latency += wall - work
        if not on_device:
            wake = wake_delay(self.radio, state.radio_state)
            ttft += wake
            latency += wake
        level = min(max(int(state.thermal_level), 0), 3)
        busy_p = self.params.device_busy_p[level] if work > 0 else 0.0
        # the device's compute queue: only device work waits (not token ids); the queue is
        # busy with probability busy_p, for device_wait_s: the forecast is the expectation
        # over the two cases (the SLO penalty is not linear in the wait)
        branches = [(1.0 - busy_p, 0.0), (busy_p, self.params.device_wait_s[level])]
        parts = [
            (w, self._scored(state, t, cost, o, ttft + wait, latency + wait, joules,
                             on_device, stretch * pre_work, mbps))
            for w, wait in branches
            if w > 0.0
        ]  # fmt: skip
        reward = sum(w * r.reward for w, (r, _, _, _) in parts)
        exp_latency = sum(w * lat for w, (_, lat, _, _) in parts)
        exp_ttft = sum(w * ft for w, (_, _, ft, _) in parts)
        energy = sum(w * e for w, (_, _, _, e) in parts)
        violated = sum(w * float(r.slo_violated) for w, (r, _, _, _) in parts) >= 0.5
        return TierForecast(
            t, reward, exp_latency, exp_ttft, energy, violated, work, outlook.externality_s, o,
        )  # fmt: skip

    def _scored(
        self,
        state: CellDecisionState,
        t: int,
        cost: RequestCost,
        o: int,
        ttft: float,
        latency: float,
        joules: float,
        on_device: bool,
        prefill_wall: float,
        mbps: float,
    ) -> tuple[RequestScore, float, float, float]:
        """The reward rule on one case of the forecast: (score, latency, ttft, energy)."""
        energy = joules
        if not on_device:
            energy += self._radio_energy(state, t, cost, latency, ttft, prefill_wall, mbps)
        realised = RequestCost(
            ttft_s=ttft,
            latency_s=latency,
            energy_j=energy,
            device_busy_s=cost.device_busy_s,
            upload_s=cost.upload_s,
            upload_bytes=cost.upload_bytes,
            edge_gpu_s=0.0,
            cloud_gpu_s=cost.cloud_gpu_s,
            prefill_tokens=cost.prefill_tokens,
            lite=cost.lite,
        )
        score = score_request(
            realised, o, state.slo_ttft_s, state.slo_tpot_s, self.facts.reward_rule
        )
        return score, latency, ttft, energy

    def _device_run(self, cls: DeviceClass, temp: float, work: float) -> tuple[float, float]:
        """(wall seconds, joules) of ``work`` on the device, throttled when the cell heats."""
        if not self.cell.thermal:
            return work, cls.compute_w * work
        wall, joules, _ = run_on_device(cls, temp, work)
        return wall, joules

    def _prefill_work(self, t: int, prefill: int, cached: int) -> float:
        """Device seconds of a split's prefill layers (before its upload)."""
        if tier_of(t, self.L) != TIER_SPLIT:
            return 0.0
        dev = self.tiers.device
        return dev.embed_prefill_s(prefill) + dev.layers_prefill_s(0, t, prefill, cached)

    def _radio_energy(
        self,
        state: CellDecisionState,
        t: int,
        cost: RequestCost,
        latency: float,
        ttft: float,
        prefill_wall: float,
        mbps: float,
    ) -> float:
        """The radio's marginal joules for the transfers the cell makes for this placement."""
        if tier_of(t, self.L) == TIER_CLOUD:
            up = cost.upload_bytes / (BYTES_PER_MBIT * cost.upload_s) if cost.upload_s > 0 else 0
            transfers = [(0.0, cost.latency_s, float(up))]
        else:
            nbytes = (cost.prefill_tokens) * self.tiers.device.activation_bytes_per_token[t]
            up_s = nbytes / (mbps * BYTES_PER_MBIT)
            transfers = [(prefill_wall, up_s, mbps), (ttft, max(latency - ttft, 0.0), 0.0)]
        return marginal_radio_energy(self.radio, state.radio_state, transfers)


def valid_tiers(mask: np.ndarray) -> list[int]:
    """Placements with at least one valid keep choice."""
    return np.flatnonzero(mask[0::2] | mask[1::2]).tolist()
