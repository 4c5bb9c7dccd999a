"""The cell's discrete-event core: devices, their sessions and links, the edge server, the clock.

numpy-only; ``envs/edge_cell.py`` wraps it in Gymnasium. One decision per request, whichever
device's request arrives next. :meth:`CellSimulator.dispatch` commits the current request to a
tier; :meth:`CellSimulator.advance` runs the world to the next arrival: the edge iteration by
iteration (:class:`~offload_rl.cell.edge_server.EdgeServer`), uploads reaching it, devices' heat
and radios. Cost accrues in a :class:`~offload_rl.reward.CostLedger` while it happens.

The tiers (DESIGN.md's latency model, with the cell's shared state):

* **device** (``k = L``): the request's device work from the cost model, queued on the phone's
  compute FIFO and stretched by its throttle (:class:`~offload_rl.cell.device.Device`);
* **edge / split** (``k < L``): device layers ``< k`` (throttled, after the phone's compute FIFO;
  a token-id request, ``k = 0``, has no device work and does not wait for it), then the upload
  over the device's own trace from the moment data flows (after any radio promotion), RTT/2,
  then the shared edge server (queue, batch, KV pool; a kept entry of the same split is claimed
  there); split requests pay one round trip per token (RTT + the device's layers + one token's
  upload, set when they are submitted); the last token reaches the device RTT/2 after the edge's;
* **lite** (``k = L + 2``, a scenario with a device-lite model): the small model's work from
  its profile, on the phone's compute FIFO and throttle exactly as the device tier, no radio;
  the reward's quality term is charged when it completes;
* **cloud**: stateless, priced by :func:`~offload_rl.cost_model.request_cost` with the scenario's
  cloud queue (drawn per request) and slowdown, after any radio promotion.

Device memory: a request's device may hold the layers its class's RAM allows
(:func:`~offload_rl.scenario_facts.memory_layers_for`; a budget phone cannot hold the 7B
model), fewer under memory pressure; the mask reads it from the decision state.

What is left out, on purpose: GPU-dollar prices of edge requests (the edge's seconds are shared
by a batch, so ``usd`` is counted for the cloud tier only); a split request whose kept entry was
evicted between decision and arrival still uploads only the new tokens (the edge recomputes the
context from the boundary activations it is assumed to keep); radio calls for token streams may
come slightly out of time order, where the radio counts overlapping connected time once.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell import sequence_table as tab
from offload_rl.cell.batch_roofline import BatchRoofline, for_profile
from offload_rl.cell.config import CellConfig
from offload_rl.cell.device import Device, cell_devices, sample_storage
from offload_rl.cell.device_seeding import (
    DeviceGenerators,
    TraceTables,
    device_generators,
    pcg64_head,
    seeded_samples,
    seeded_samples_compiled,
    trace_tables,
)
from offload_rl.cell.edge_server import FINISHED, REJECTED, EdgeEvent, EdgeRequest, EdgeServer
from offload_rl.cell.flat_dispatch import ROOM_HEAP, ROOM_LUMPS, EdgeTables
from offload_rl.cell.kv_pool import KeptEntry
from offload_rl.cell.ledger_table import CompiledCostLedger, LedgerTable, cost_ledger
from offload_rl.cell.radio import RADIOS, RadioParams
from offload_rl.cell.radio_bank import RadioBank
from offload_rl.cell.sequence_table import TablePool
from offload_rl.cell.thermal import DEVICE_CLASSES, DeviceClass, heat_storage
from offload_rl.cost_model import LinkModel, request_cost
from offload_rl.device_view import kept_kv_tokens
from offload_rl.features import CellDecisionState, FeatureSpec
from offload_rl.profiles import load_profile
from offload_rl.reward import slo_violated_times
from offload_rl.scenario_facts import ResolvedScenario, memory_layers_for
from offload_rl.traces import BYTES_PER_MBIT
from offload_rl.workloads import Request, SyntheticWorkload, Workload
from offload_rl.workloads.distributions import choice_cdf

_FINISH = "compiled_finish"
# a compiled decision's answer (CellSimulator.decide_compiled): the mask's index, the edge's
# last batch size, waiting requests and KV occupancy, the request's privacy, the newest sample
# (0.0 if none) and the samples read
Decision = tuple[int, int, int, float, bool, float, int]
# DeviceMemory.previous's "none" as decide_compiled passes it: no arrival (NaN), no tokens
_NO_PREVIOUS = (math.nan, 0)


# compiled_finish once _finish_kernels loaded it: a module, kept here rather than on a
# simulator (the cell oracle deep-copies simulators, and a module does not copy)
_finish_module: ModuleType | None = None


def _finish_kernels() -> ModuleType | None:
    """:mod:`offload_rl.cell.compiled_finish`, compiled at the first call; None where it
    failed to compile (the finish path then runs the reference's calls, for good)."""
    global _finish_module
    module = None
    if cd.AVAILABLE:
        try:
            module = _finish_module = cd.kernels(_FINISH)
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
    return module


@dataclass(slots=True, eq=False)
class CellRequest:
    """One request from its decision to its last token at the device."""

    rid: int
    device: int
    request: Request
    tier_index: int
    keep: bool
    slo: tuple[float, float]
    prefill_tokens: int = 0
    upload_bytes: float = 0.0
    edge: EdgeRequest | None = None
    ttft_s: float = -1.0
    finish_s: float = -1.0  # absolute time the last token reaches the device
    usd: float = 0.0
    cache_hit: bool = False
    queue_s: float = 0.0
    batch_at_admit: int = 0
    preempted: int = 0
    rejected: bool = False
    slo_violated: bool = False

    @property
    def latency_s(self) -> float:
        return self.finish_s - self.request.arrival_s


class EdgeCellRequest(CellRequest, tab.Deferred):
    """A compiled edge placement's request (:meth:`CellSimulator._run_edge_flat`): its
    ``edge``, the :class:`EdgeRequest` the reference makes at the placement, is made at the
    first read (the sequence table's readers resolve it: its row holds this request), from
    what its slot keeps until then: the placement's ``(arrival at the edge, round trip, KV
    bytes a token)``, and once it finished unread, ``(those, its cell log row)``. Why: ~95% of
    decisions place one and training never reads it (~0.3 us a step, with _hand_out's
    writes). Field for field a :class:`CellRequest` (its ``__init__``, but for ``edge``)."""

    # what ``edge`` reads (CellRequest's own slot stays empty: a slot of this class reads
    # and writes at a plain attribute's cost, the base's through its descriptor's calls)
    __slots__ = ("_edge",)
    _edge: Any  # its EdgeRequest, or the tuple that makes it

    def __init__(
        self, rid: int, device: int, request: Request, tier_index: int, keep: bool,
        slo: tuple[float, float], prefill_tokens: int = 0, upload_bytes: float = 0.0,
        edge: EdgeRequest | tuple[Any, ...] | None = None, ttft_s: float = -1.0,
        finish_s: float = -1.0, usd: float = 0.0, cache_hit: bool = False, queue_s: float = 0.0,
        batch_at_admit: int = 0, preempted: int = 0, rejected: bool = False,
        slo_violated: bool = False,
    ) -> None:  # fmt: skip
        """The dataclass's ``__init__``, ``edge`` written to ``_edge`` (through the property's
        setter it costs ~0.1 us more)."""
        self.rid = rid
        self.device = device
        self.request = request
        self.tier_index = tier_index
        self.keep = keep
        self.slo = slo
        self.prefill_tokens = prefill_tokens
        self.upload_bytes = upload_bytes
        self._edge = edge
        self.ttft_s = ttft_s
        self.finish_s = finish_s
        self.usd = usd
        self.cache_hit = cache_hit
        self.queue_s = queue_s
        self.batch_at_admit = batch_at_admit
        self.preempted = preempted
        self.rejected = rejected
        self.slo_violated = slo_violated

    @property
    def edge(self) -> EdgeRequest:
        kept = self._edge
        if type(kept) is tuple:
            kept = self._edge = self._made_edge(kept)
        return kept

    @edge.setter
    def edge(self, er: EdgeRequest | None) -> None:
        self._edge = er

    def _made_edge(self, kept: tuple[Any, ...]) -> EdgeRequest:
        """The EdgeRequest ``_run_edge_flat`` would have made (``_run_edge``'s), with what
        ``_hand_out`` would have written in it if it finished."""
        facts, row = (kept, None) if len(kept) == 3 else kept
        arrive, round_trip, kv_bytes = facts
        req = self.request
        er = EdgeRequest(
            self.rid, req.session_id, self.tier_index, arrive, req.context_tokens,
            req.new_tokens, req.output_tokens, self.keep, round_trip,
        )  # fmt: skip
        if row is not None:
            _edge_outcome(er, row, kv_bytes)
        return er


def _edge_outcome(er: EdgeRequest, row: tuple[Any, ...], kv_bytes: int) -> None:
    """A finished (or rejected) request's edge fields from its cell log row
    (``compiled_finish.LOG_ROW``) and its split's KV bytes a token: what
    ``SequenceTable.release`` writes from its table row."""
    (
        code, _, _, _, _, _, er.computed, er.generated, er.known, er.preemptions,
        er.cached_tokens, er.batch_at_admit, er.ready_at, er.round_trip_s, er.first_token_s,
        er.admit_s, er.finish_s, er.queued_s, er.queued_since,
    ) = row  # fmt: skip
    er.kv_bytes_per_token = kv_bytes
    er.status = REJECTED if code == tab.OUT_REJECTED else FINISHED


class SharedLinks(dict[int, tuple[LinkModel, RadioParams]]):
    """Trace index -> its :class:`LinkModel` and the radio of its family, for one simulator
    (its scenario and cell are fixed): frozen values, the same at every episode, so a deep
    copy (``agents/cell_oracle.py``'s fork) shares the table instead of copying its traces."""

    def __deepcopy__(self, memo: dict[int, object]) -> SharedLinks:
        return self


def class_cdf(probs: list[float]) -> np.ndarray:
    """The normalised cumulative shares :func:`draw_index` reads (``Generator.choice``'s)."""
    return choice_cdf(probs)


def draw_index(world: np.random.Generator, cdf: np.ndarray) -> int:
    """``world.choice(len(p), p=p)`` with ``cdf = class_cdf(p)``: the same one uniform draw and
    the same index (numpy's algorithm: a search of the normalised CDF), without the ~7 us of
    argument checks per call (a reset draws one class per device;
    ``tests/offload_rl/cell/test_cell_reset.py`` checks it against ``choice``)."""
    return int(cdf.searchsorted(world.random(), side="right"))


@functools.lru_cache(maxsize=16)
def _decision_constants(
    kernels: ModuleType, probe_floor: float, history: int, rtt_ms: float, spec: FeatureSpec
) -> np.ndarray:
    """``kernels.decision_constants(...)``, made once per value (its array is the same at
    every episode of a config, and the decide kernel only reads it)."""
    consts: np.ndarray = kernels.decision_constants(probe_floor, history, rtt_ms, spec)
    return consts


def edge_batch_cost(resolved: ResolvedScenario) -> BatchRoofline:
    """The batched roofline of the edge profile's model on its hardware (one model everywhere)."""
    sc = resolved.scenario
    path = sc.resolve_path(sc.profiles.edge)
    profile = load_profile(str(path) if path.suffix == ".json" else sc.profiles.edge)
    return for_profile(profile)


class CellSimulator:
    """N devices, one edge server, the cloud: see the module docstring.

    What a reset leaves to the previous episode's objects, in compiled mode: its devices'
    generators (``Device.rng``) are this simulator's, seeded again in place for the new
    devices (:class:`~offload_rl.cell.device_seeding.DeviceGenerators`), so an old device's
    ``rng`` is not its own after a reset (a deep copy, the oracle's fork, is). An edge request
    at the edge (``CellRequest.edge``) shows its arrival's fields (``known``,
    ``kv_bytes_per_token``, ``queued_since``) once the edge's table is synced: read it through
    :meth:`in_flight`, ``edge.running`` or ``edge.waiting``, which sync first, or after it
    finished."""

    # the compiled edge placement's tables for the episode (built at its first dispatch)
    _edge_tables: EdgeTables | None = None
    # the compiled advance's log and state between its kernel's calls (made at its first call)
    _cell_log: np.ndarray | None = None
    _cell_state: np.ndarray
    # advance_cell's and decide's compiled entry points (kernel_jit.entry_point), set after
    # each kernel's first call through its dispatcher; a fork shares them (stateless). The
    # edge placement's is on its EdgeTables (EdgeTables.pin: its traces always read-only);
    # place_cloud keeps its dispatcher (two specializations: read-only recorded traces, a
    # fork's writable copies), and pinning place_local alone measured nothing (~5% of
    # decisions)
    _advance_call: Callable[..., Any] | None = None
    _decide_call: Callable[..., Any] | None = None
    # decide_compiled's leading arguments (bind_decisions') and the edge table's arrays, made
    # again when the table's ``args`` (rebuilt whenever one of its arrays is) is not the key
    _decide_key: tuple[np.ndarray, ...] | None = None
    _decide_args: tuple[np.ndarray, ...] = ()
    # compiled_reset.draw_devices' entry point, likewise
    _draw_call: Callable[..., Any] | None = None
    # the devices' generators, seeded again in place at each compiled reset (a fork's is new)
    _device_rngs: DeviceGenerators | None = None
    # the uplinks' tables for the compiled samples (trace_tables; a fork shares them)
    _tables: TraceTables | None = None
    # the last compiled edge placement's request and its device's radio state (an index into
    # RADIO_STATES) at its arrival, after the placement: what the step's info reads
    placed_radio: tuple[CellRequest, int] | None = None
    # the edge server, ledgers and radio bank the compiled finish path was found for
    # (advance_and_collect: _finish_path asked once for them)
    _finishing: tuple[EdgeServer, object, object, RadioBank | None] | None = None
    # the cell's device classes as a reset draws them (_device_classes), for its config
    _classes: tuple[CellConfig, np.ndarray, list[int], list[DeviceClass]] | None = None

    def __init__(
        self,
        resolved: ResolvedScenario,
        cell: CellConfig,
        workload: Workload | None = None,
        batch_cost: BatchRoofline | None = None,
    ) -> None:
        """``batch_cost``: the edge's batched cost when the edge profile's hardware is not a
        named one (a profile measured on this machine: ``offload-rl validate --cell``)."""
        self.resolved = resolved
        self.facts = facts = resolved.facts
        self.cell = cell
        self.tiers = facts.tiers
        self.L = facts.n_layers
        self.batch_cost = batch_cost if batch_cost is not None else edge_batch_cost(resolved)
        self.workload = workload if workload is not None else self._default_workload()
        rule = facts.reward_rule
        self.w_latency, self.w_energy, self.w_slo = rule.w_latency, rule.w_energy, rule.w_slo
        self.w_cost, self.usd_per_cloud_s = rule.w_cost, rule.usd_per_cloud_s
        self.rtt = facts.rtt_edge_s
        self.ledger = cost_ledger()  # compiled with numba (the `fast` extra); new per episode
        self.joules = cost_ledger()  # the same bookkeeping for raw device joules (info)
        self._bank: RadioBank | None = None  # the radios' arrays, in compiled mode
        self.requests: list[Request] = []
        self._durations: np.ndarray | None = None  # the uplinks' periods (compiled draws)
        # each uplink's link model and radio, made at the first episode on it (forks share it)
        self._links: SharedLinks = SharedLinks()
        self._slo_cdf = class_cdf(list(facts.slo_shares))  # what world.choice searches
        # layers each device class holds (its RAM for the model), in DEVICE_CLASSES order
        self.class_memory_layers = [
            memory_layers_for(facts, c.model_memory_bytes()) for c in DEVICE_CLASSES.values()
        ]

    def _default_workload(self) -> Workload:
        wl = self.facts.workload()
        if isinstance(wl, SyntheticWorkload) and self.cell.arrival_rate_scale != 1.0:
            rate = wl.params.session_rate_per_s * self.cell.arrival_rate_scale
            params = wl.params.model_copy(update={"session_rate_per_s": rate})
            return SyntheticWorkload(params, wl.scaling, name=f"{wl.name}x{rate:g}")
        return wl

    # --- episode set-up -------------------------------------------------------------------------

    def reset(
        self, world: np.random.Generator, n_requests: int, trace_index: int, offset_s: float
    ) -> None:
        """A new episode: ``n_requests + 1`` requests (the last one only gives the final
        observation). The draws from ``world`` come in ``SplitCache-v0``'s order (requests,
        privacy, SLO class, memory pressure, edge-queue and cloud-queue draws) so that ``N = 1``
        replays its episode; what only the cell needs is drawn after them."""
        sc = self.facts.scenario
        reqs = self.workload.sample(world, n_requests + 1)
        self.requests = reqs
        n = len(reqs)
        sessions = np.fromiter([r.session_id for r in reqs], np.int64, n)  # each request's
        ns = int(sessions.max()) + 1
        # consecutive draws of one kind in one call each (a Generator fills an array with the
        # values its calls would give one after the other): per session, privacy and SLO
        # class, then per request, memory pressure ...
        u = world.random(2 * ns + n)
        self.private = (u[:ns] < sc.workload.private_share).tolist()
        # world.choice(len(p), size=ns, p=p): one uniform per session, searched
        # (choice_indices' rule on the uniforms drawn above)
        self.slo_class = self._slo_cdf.searchsorted(u[ns : 2 * ns], side="right").tolist()
        pressure = u[2 * ns :] < sc.device.memory_pressure_share
        # ... and SplitCache's edge-queue draw (kept for the draw order), then the cloud's:
        # exponential(1.0) is 1.0 x standard_exponential, the same doubles
        queues = world.standard_exponential(2 * n)
        self.cloud_queue = (queues[n:] * sc.cloud.queue_s).tolist()
        self._build_devices(world, trace_index, offset_s)
        device_of = self._session_devices(world, ns, sessions)
        self.device_of = device_of.tolist()
        # each request's free layers: its device class's, fewer under memory pressure (in
        # arrays: one pass each instead of three Python lists of n; the same ints)
        held = self.class_memory_layers
        layers = np.array([held[d.class_index] for d in self.devices], dtype=np.int64)[device_of]
        squeezed = np.minimum(layers, sc.device.memory_pressure_layers)
        self.k_mem = np.where(pressure, squeezed, layers).tolist()
        c = self.cell
        self.edge = EdgeServer(
            self.batch_cost,
            int(c.kv_pool_bytes or self.facts.scenario.edge.kv_cache_bytes),
            c.max_num_batched_tokens,
            c.max_num_seqs if c.batching else 1,
        )
        # compiled or not as the edge server: as compiled_decode.AVAILABLE says now
        self.ledger = cost_ledger()
        self.joules = cost_ledger()
        self._submissions: list[tuple[float, int, EdgeRequest]] = []
        self._done: list[tuple[float, int, CellRequest]] = []
        self._at_edge: dict[int, CellRequest] = {}
        n_dev = len(self.devices)
        self._bank = self._radio_bank() if self.edge.compiled else None
        self._radios = [d.radio for d in self.devices]
        # compiled: the edge requests whose tokens stream down (from the edge's first tokens),
        # each with its row in the bank's streams
        self._streaming: dict[int, int] | None = None
        if self._bank is not None:
            self._streaming = {}
            self.edge.first_tokens = []
        self._energy_j = [0.0] * n_dev  # radio joules charged to the ledger, per device
        # radios settle lazily: only the awake ones (possibly out of idle) are settled per step;
        # an asleep radio is charged idle power from its time in _asleep_since
        self._awake: dict[int, None] = {}  # device index -> None, in waking order
        self._asleep_since = [0.0] * n_dev
        self._asleep_w: dict[float, int] = {}  # idle power -> number of asleep radios with it
        for radio in self._radios:
            w = radio.params.idle_w
            self._asleep_w[w] = self._asleep_w.get(w, 0) + 1
        self._t = 0.0
        # the edge's busy mark: the previous decision's time and the edge's busy seconds then
        # (_edge_utilisation; the compiled decision's kernel reads and writes it in place)
        self._busy_mark = np.zeros(2)

    def _session_devices(
        self, world: np.random.Generator, n_sessions: int, sessions: np.ndarray
    ) -> np.ndarray:
        """Each session's device drawn from ``world`` (``integers(n_devices, size=n_sessions)``),
        then each request's (``sessions``: its session); in compiled mode in one call
        (:func:`~offload_rl.cell.compiled_reset.session_devices`: the same draws and state)."""
        head = pcg64_head(world)
        n = self.cell.n_devices
        if not cd.AVAILABLE or head is None:
            return world.integers(n, size=n_sessions)[sessions]
        try:
            kernels = cd.kernels("compiled_reset")
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
            return world.integers(n, size=n_sessions)[sessions]
        out = np.empty(len(sessions), dtype=np.int64)
        kernels.session_devices(head, n, sessions, np.empty(n_sessions, dtype=np.int64), out)
        return out

    def _radio_bank(self) -> RadioBank | None:
        """In compiled mode, the devices' radios moved into one :class:`RadioBank` (with a
        compiled edge server only: the bank's token streams come from its first tokens)."""
        if not cd.AVAILABLE:
            return None
        try:
            bank = RadioBank([d.radio.params for d in self.devices])
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
            return None
        for j, d in enumerate(self.devices):
            d.radio = bank.radio(j)
        return bank

    def _build_devices(self, world: np.random.Generator, trace_index: int, offset_s: float) -> None:
        """Device 0 on the pinned trace and offset; the others on drawn traces and offsets.

        The world's draws come device by device as they always did (:meth:`_draw_devices`);
        the devices' generators and their samples before t = 0 are then made for all at once
        (:mod:`~offload_rl.cell.device_seeding`: the same streams and values, bit for bit, as
        ``default_rng(seed)`` and :meth:`Device.seed_samples` per device)."""
        net = self.facts.scenario.network
        ups, downs = self.resolved.uplinks, self.resolved.downlinks
        _, index_of, class_of = self._device_classes()
        drawn = self._draw_devices_compiled(world, trace_index, offset_s)
        if drawn is None:
            idxs, offsets, picked, rngs = self._draw_devices(world, trace_index, offset_s)
        else:
            idxs, offsets, picked = drawn[0].tolist(), drawn[1].tolist(), drawn[2].tolist()
            rngs = drawn[3].generators
        links = self._links  # immutable: one per trace, kept across episodes
        device_links, radios = [], []
        for idx in idxs:
            hit = links.get(idx)
            if hit is None:
                up = ups[idx]
                radio = self._device_radio("wifi" in up.family.lower())
                hit = links[idx] = (self.facts.link(up, downs[idx]), radio)
            device_links.append(hit[0])
            radios.append(hit[1])
        # the cell's sample and heat rows, the samples seeded first (each device's from its own
        # generator), then the devices made straight onto them (row = index)
        samples = self._samples = sample_storage(len(idxs))
        heat = self._heat = heat_storage(len(idxs))
        history, period_s = net.throughput_history, net.throughput_sample_s
        times, mbps, counts = samples
        if drawn is None:
            mbps[:, :history] = seeded_samples(
                [link.uplink for link in device_links], offsets, history, period_s,
                net.throughput_noise, rngs,
            )  # fmt: skip
        else:
            self._seed_all_samples(history, period_s, drawn[0], drawn[1], drawn[3])
        times[:, :history] = [(i - history + 1) * period_s for i in range(history)]
        counts[:] = history  # the devices' sample count (cell_devices reads it)
        self.devices = cell_devices(
            [index_of[c] for c in picked], [class_of[c] for c in picked], radios, device_links,
            offsets, thermal=self.cell.thermal, noise_sd=net.throughput_noise, rngs=rngs,
            heat=heat, samples=samples,
        )  # fmt: skip

    def _device_classes(self) -> tuple[np.ndarray, list[int], list[DeviceClass]]:
        """The cell's device classes as a reset draws them: the CDF of their shares
        (``world.choice``'s, :func:`class_cdf`) and, per drawn class, its index in
        ``DEVICE_CLASSES`` and its :class:`DeviceClass` (made once per config: it is frozen)."""
        hit = self._classes
        if hit is None or hit[0] is not self.cell:
            names, probs = self.cell.class_probabilities()
            order = list(DEVICE_CLASSES)
            index_of = [order.index(name) for name in names]
            hit = (self.cell, class_cdf(probs), index_of, [DEVICE_CLASSES[n] for n in names])
            self._classes = hit
        return hit[1], hit[2], hit[3]

    def _draw_devices(
        self, world: np.random.Generator, trace_index: int, offset_s: float
    ) -> tuple[list[int], list[float], list[int], list[np.random.Generator]]:
        """Each device's trace, offset, class (an index into the cell's class names) and
        generator, the world's draws device by device (the reference of
        :func:`~offload_rl.cell.compiled_reset.draw_devices`)."""
        ups = self.resolved.uplinks
        cdf = self._device_classes()[0]
        n_ups = len(ups)
        n = self.cell.n_devices
        idxs, offsets, picked = [], [], []
        seeds = np.empty(n, dtype=np.int64)
        for i in range(n):
            idx = trace_index if i == 0 else int(world.integers(n_ups))
            idxs.append(idx)
            offsets.append(offset_s if i == 0 else float(world.uniform(0.0, ups[idx].duration_s)))
            picked.append(draw_index(world, cdf))  # world.choice(len(names), p=probs)
            seeds[i] = world.integers(2**63 - 1)
        return idxs, offsets, picked, device_generators(seeds)

    def _draw_devices_compiled(
        self, world: np.random.Generator, trace_index: int, offset_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, DeviceGenerators] | None:
        """:meth:`_draw_devices` in one compiled call, its lists as arrays (int64, float64,
        int64) and its generators in the simulator's :class:`DeviceGenerators` (None: Python
        mode, numba failed, or ``world``'s state is not where the kernel draws on it)."""
        head = pcg64_head(world)
        if not cd.AVAILABLE or head is None:
            return None
        try:
            kernels = cd.kernels("compiled_reset")
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
            return None
        n = self.cell.n_devices
        durations = self._durations
        if durations is None:
            durations = np.array([u.duration_s for u in self.resolved.uplinks], dtype=np.float64)
            self._durations = durations
        idx, cls, seeds = (np.empty(n, dtype=np.int64) for _ in range(3))
        offsets = np.empty(n, dtype=np.float64)
        cdf = self._device_classes()[0]
        draw = self._draw_call or kernels.draw_devices
        draw(head, trace_index, offset_s, durations, cdf, idx, offsets, cls, seeds)
        if self._draw_call is None:  # the dispatcher typed these arguments: call straight on
            from offload_rl.cell.kernel_jit import entry_point  # imports numba: compiled only

            self._draw_call = entry_point(kernels.draw_devices)
        rngs = self._device_rngs
        if rngs is None:
            rngs = self._device_rngs = DeviceGenerators()
        rngs.seeded(kernels, seeds)
        return idx, offsets, cls, rngs

    def _device_radio(self, wifi: bool) -> RadioParams:
        """The radio of a device on a WiFi or a cellular trace, as the cell's switches say
        (``RadioParams`` is frozen: devices share it)."""
        radio = RADIOS[self.cell.wifi_radio if wifi else self.cell.radio]
        if not self.cell.radio_state_machine:
            return replace(radio, promo_s=0.0, promo_w=0.0, tail_s=0.0, tail_w=0.0)
        if not self.cell.radio_tail:
            return replace(radio, tail_s=0.0)  # idle as a transfer ends; promotion kept
        return radio

    def _seed_all_samples(
        self,
        history: int,
        period_s: float,
        trace_index: np.ndarray,
        origins_s: np.ndarray,
        rngs: DeviceGenerators,
    ) -> None:
        """Every device's :meth:`Device.seed_samples` values in one compiled call (bit for bit
        :func:`seeded_samples`, the Python mode's), written into the cell's sample values:
        the devices on ``self.resolved.uplinks[trace_index[j]]`` from ``origins_s[j]``, each
        with its generator in ``rngs`` (the pool that made them: their noise in one call)."""
        noise_sd = self.facts.scenario.network.throughput_noise
        ups = self.resolved.uplinks
        tables = self._tables
        if tables is None:
            tables = self._tables = trace_tables(ups)
        mbps = self._samples[1]
        done = seeded_samples_compiled(
            tables, trace_index, origins_s, history, period_s, noise_sd, rngs, out=mbps
        )
        if done is None:  # numba failed to compile it
            mbps[:, :history] = seeded_samples(
                [ups[i] for i in trace_index.tolist()], origins_s.tolist(), history, period_s,
                noise_sd, rngs.generators,
            )  # fmt: skip

    # --- what the requesting device knows ------------------------------------------------------

    def decision_state(self, i: int) -> CellDecisionState:
        """The state device ``device_of[i]`` hands the policy for request ``i``."""
        req = self.requests[i]
        d = self.devices[self.device_of[i]]
        t = req.arrival_s
        net = self.facts.scenario.network
        if not d.sample_mbps or d.sample_mbps[-1] < net.outage_mbps:  # probe_if_out's test
            d.probe_if_out(t, net.outage_mbps, net.throughput_sample_s)
        H = net.throughput_history
        samples, newest = d.samples_until(t, H)
        age = t - newest if samples else 3600.0
        sid = req.session_id
        (used, capacity, waiting, waiting_tokens, running, running_tokens,
         e_split, e_tokens, e_bytes, rank, busy) = self.edge.decision_view(sid)  # fmt: skip
        if sid in d.kept_local:
            cached: tuple[int | None, int] = (self.L, min(d.kept_local[sid], req.context_tokens))
        elif e_split >= 0:
            cached = (e_split, min(e_tokens, req.context_tokens))
        else:
            cached = (None, 0)
        prev = d.memory.previous(sid)
        ttft, tpot = self.facts.slo_targets[self.slo_class[sid]]
        return CellDecisionState(  # positional, in the field order (the fields' names below)
            samples,  # throughput_mbps
            net.rtt_edge_ms,
            req.new_tokens,
            req.context_tokens,
            req.turn,
            self.private[sid],
            ttft,  # slo_ttft_s
            tpot,  # slo_tpot_s
            cached[0],  # cached_split
            cached[1],  # cached_tokens
            used / capacity,  # edge_kv_occupancy
            self._edge_utilisation(t, busy),  # edge_load
            self.k_mem[i],  # device_memory_layers
            prev[1] if prev else 0,  # prev_output_tokens
            0.0 if prev is None else t - prev[0],  # since_last_turn_s
            age,  # throughput_age_s
            d.class_index,  # device_class
            d.os_level(t),  # thermal_level
            d.radio_state_index(t),  # radio_state
            waiting,  # edge_waiting
            waiting_tokens,  # edge_waiting_tokens
            running,  # edge_running
            running_tokens,  # edge_running_tokens
            e_bytes / capacity if e_split >= 0 else 0.0,  # entry_bytes_share
            rank,  # entry_recency_rank
        )

    def decide_compiled(
        self, i: int, kernels: ModuleType, out: np.ndarray, vals: np.ndarray
    ) -> Decision:
        """:meth:`decision_state` and the observation of request ``i`` in one compiled call
        (:func:`~offload_rl.cell.compiled_observation.decide`, with a compiled edge server and
        radio bank; :meth:`bind_decisions` called this episode): the observation into
        ``out``, the state's other fields into ``vals`` (:meth:`state_of` builds the same
        :class:`CellDecisionState` from them only when someone reads it), with the same side
        effects as :meth:`decision_state` (the probe, the device's cooling, the busy mark).
        Returns the kernel's tuple (:data:`Decision`): the mask's index, the info's
        ``edge_*`` and the request's ``private`` and newest sample as one tuple, no other
        Python object made per decision."""
        req = self.requests[i]
        j = self.device_of[i]
        d = self.devices[j]
        t = req.arrival_s
        sid = req.session_id
        prev = d.memory._last.get(sid, _NO_PREVIOUS)  # d.memory.previous(sid), inlined
        table = self.edge._table
        if table.args is not self._decide_key:  # a new or grown table: its arrays once
            self._decide_key = table.args
            self._decide_args = (
                *self._decide_leading, table.ints, table.gi, table.gf, table.run, table.wait,
                table.kept,
            )  # fmt: skip
        call = self._decide_call or kernels.decide
        probed = False
        while True:  # once, or twice when the device probes its link first
            res: Decision = call(
                *self._decide_args, out, vals, probed, table._session_index.get(sid, -1), i, j,
                sid, t, req.new_tokens, req.context_tokens, req.turn, d.kept_local.get(sid, -1),
                prev[0], prev[1],
            )  # fmt: skip
            if res[0] >= 0:  # not kernels.PROBE
                break
            net = self.facts.scenario.network
            d.probe_if_out(t, net.outage_mbps, net.throughput_sample_s)
            probed = True  # decide on what it measured
        if self._decide_call is None:  # the dispatcher typed these arguments: call straight on
            from offload_rl.cell.kernel_jit import entry_point  # imports numba: compiled only

            self._decide_call = entry_point(kernels.decide)
        return res

    def bind_decisions(self, kernels: ModuleType, spec: FeatureSpec) -> None:
        """Keep what :meth:`decide_compiled` passes its kernel the same at every decision of
        this episode, as one tuple (no attribute reads per call; a fork copies it with the
        arrays it names): the devices' samples, the episode's constants and facts in one array
        (:func:`~offload_rl.cell.compiled_observation.decision_facts`: per session ``private``
        and its SLO targets, per request ``k_mem``, per device its class, the same values as
        the lists, read in Python ~25 ns each), the radio bank's table, the busy mark (written
        in place) and the heat rows. Once an episode, after :meth:`reset`, in compiled
        mode."""
        net = self.facts.scenario.network
        consts = _decision_constants(
            kernels, net.outage_mbps, net.throughput_history, net.rtt_edge_ms, spec
        )
        bank = self._bank
        assert bank is not None  # compiled mode (EdgeCellEnv._compiled_decider)
        slos = np.array(self.facts.slo_targets, dtype=np.float64)[self.slo_class]
        facts = kernels.decision_facts(
            consts, self.private, slos, self.k_mem, [d.class_index for d in self.devices],
            spec.history,
        )  # fmt: skip
        self._decide_leading = (*self._samples, facts, bank.table, self._busy_mark, self._heat)
        self._decide_key = None  # decide_compiled adds the table's arrays

    def state_of(self, i: int, vals: np.ndarray) -> CellDecisionState:
        """The :class:`CellDecisionState` :meth:`decide_compiled` decided on for request
        ``i``, field for field :meth:`decision_state`'s (``vals``: that call's, unchanged
        since)."""
        from offload_rl.cell import compiled_observation as co  # compiled mode only

        req = self.requests[i]
        sid = req.session_id
        ttft, tpot = self.facts.slo_targets[self.slo_class[sid]]
        v = vals.tolist()
        split = int(v[co.V_SPLIT])
        n = int(v[co.V_N_SAMPLES])
        return CellDecisionState(  # positional, in the field order (decision_state's)
            v[co.V_SAMPLES : co.V_SAMPLES + n], self.facts.scenario.network.rtt_edge_ms,
            req.new_tokens, req.context_tokens, req.turn, self.private[sid], ttft, tpot,
            None if split < 0 else split, int(v[co.V_TOKENS]), v[co.V_OCCUPANCY],
            v[co.V_LOAD], self.k_mem[i], int(v[co.V_PREV]), v[co.V_GAP], v[co.V_AGE],
            self.devices[self.device_of[i]].class_index, int(v[co.V_THERMAL]),
            int(v[co.V_RADIO]), int(v[co.V_WAITING]), int(v[co.V_WAITING_TOKENS]),
            int(v[co.V_RUNNING]), int(v[co.V_RUNNING_TOKENS]), v[co.V_SHARE], int(v[co.V_RANK]),
        )  # fmt: skip

    def _edge_utilisation(self, t: float, busy: float) -> float:
        """Busy share of the edge GPU since the previous decision (what nvidia-smi reports),
        from its busy seconds ``busy`` at ``t``."""
        mark = self._busy_mark
        t0, busy0 = mark.tolist()  # Python floats, as the reference always computed with
        mark[0], mark[1] = t, busy
        return min(max((busy - busy0) / (t - t0), 0.0), 1.0) if t > t0 else 0.0

    # --- acting ---------------------------------------------------------------------------------

    def dispatch(self, i: int, tier_index: int, keep: bool) -> CellRequest:
        """Commit request ``i`` to ``tier_index`` (valid under the mask) at its arrival."""
        L = self.L
        tables = self._edge_tables  # the episode's usable tables (_flat_edge), inlined
        if (
            tier_index < L
            and tables is not None
            and tables.usable
            and tables.devices is self.devices
            and tables.requests is self.requests
        ):
            return self._run_edge_flat(tables, i, tier_index, keep)
        flat = self._flat_edge() if tier_index <= L + 1 else None
        if flat is not None:
            if tier_index < L:
                return self._run_edge_flat(flat, i, tier_index, keep)
            if tier_index == L:
                return self._run_local_flat(flat, i, keep)
            if flat.cloud is not None:
                return self._run_cloud_flat(flat, i, keep)
        req = self.requests[i]
        d = self.devices[self.device_of[i]]
        sid = req.session_id
        slo = self.facts.slo_targets[self.slo_class[sid]]
        cr = CellRequest(i, d.index, req, tier_index, keep and tier_index <= L, slo)
        slo_total = slo[0] + max(req.output_tokens - 1, 0) * slo[1]
        self.ledger.open(i, req.arrival_s, self.w_latency / slo_total)
        pool = self.edge.pool
        entry = pool.peek(sid)
        if entry is not None and entry.split != tier_index:
            pool.drop(sid)  # the session moved: its old entry is useless
        if tier_index != L:
            d.kept_local.pop(sid, None)
        if tier_index == L or tier_index == L + 2:
            self._run_local(cr, d)
        elif tier_index == L + 1:
            self._wake(d.index)
            self._run_cloud(cr, d)
        else:
            self._wake(d.index)
            self._run_edge(cr, d, entry)
        d.memory.remember(req)
        return cr

    def _flat_edge(self) -> EdgeTables | None:
        """The episode's tables for the compiled edge placement; None where the placement runs
        in Python (no radio bank or Python ledgers: the reference; a sliding-window profile; a
        kernel that failed to compile)."""
        tables = self._edge_tables
        # tables.serves(self.devices, self.requests), inlined: asked at every decision
        if (
            tables is None
            or tables.devices is not self.devices
            or tables.requests is not self.requests
        ):
            compiled = (
                self._bank is not None
                and isinstance(self.ledger, CompiledCostLedger)
                and isinstance(self.joules, CompiledCostLedger)
                and type(self.edge.pool) is TablePool
            )
            profile = self.tiers.device if compiled else None
            cell = (self.rtt, self.w_energy, self.w_latency, self.w_slo, self.w_cost)
            bank = self._bank
            arrays = (
                (bank.table, bank.awake, bank.levels, self._heat, *self._samples) if bank else ()
            )
            tables = EdgeTables(
                self.devices, self.requests, profile, cell, self.tiers.cloud, arrays
            )
            self._edge_tables = tables
        return tables if tables.usable else None

    def _complete(self, cr: CellRequest) -> None:
        """The request's outcome is known: schedule its departure and its lump costs."""
        req = cr.request
        cr.slo_violated = cr.rejected or slo_violated_times(
            cr.ttft_s, cr.latency_s, req.output_tokens, *cr.slo
        )
        self.ledger.close(cr.rid, cr.finish_s)
        penalty = self.w_slo * cr.slo_violated + self.w_cost * cr.usd
        if penalty:
            self.ledger.charge(cr.finish_s, penalty)
        heapq.heappush(self._done, (cr.finish_s, cr.rid, cr))

    def _run_local(self, cr: CellRequest, d: Device) -> None:
        """The device tier, or the device-lite model (``L + 2``: no kept KV, quality charged)."""
        req = cr.request
        lite = cr.tier_index == self.L + 2
        cached = 0 if lite else min(d.kept_local.get(req.session_id, 0), req.context_tokens)
        cost = request_cost(
            cr.tier_index, 0.0, req.new_tokens, req.context_tokens, cached, req.output_tokens,
            self.tiers, d.link, self.facts.energy,
        )  # fmt: skip
        start, end, joules = d.compute(req.arrival_s, cost.latency_s)
        self._spend(start, end, joules)
        stretch = (end - start) / cost.latency_s if cost.latency_s > 0 else 1.0
        cr.prefill_tokens, cr.cache_hit = cost.prefill_tokens, cached > 0
        cr.ttft_s = start - req.arrival_s + cost.ttft_s * stretch
        cr.finish_s = end
        if lite:
            self.ledger.charge(end, self.facts.reward_rule.lite_penalty)
        if cr.keep:
            d.kept_local[req.session_id] = kept_kv_tokens(
                req.context_tokens, req.new_tokens, req.output_tokens
            )
        else:
            d.kept_local.pop(req.session_id, None)
        self._complete(cr)

    def _run_cloud(self, cr: CellRequest, d: Device) -> None:
        req = cr.request
        t = req.arrival_s
        wake = d.radio.wake_delay(t)
        link: LinkModel = d.link
        cost = request_cost(
            self.L + 1, d.offset_s + t + wake, req.new_tokens, req.context_tokens, 0,
            req.output_tokens, self.tiers, link, self.facts.energy,
            cloud_queue_s=self.cloud_queue[cr.rid],
            cloud_slowdown=self.facts.scenario.cloud.slowdown,
        )  # fmt: skip
        up_mbps = cost.upload_bytes / (BYTES_PER_MBIT * cost.upload_s) if cost.upload_s > 0 else 0
        d.radio.transfer(t, cost.latency_s, up_mbps, 0.0)  # connected until the last token
        if cost.upload_s > 0:
            d.record(t + wake + cost.upload_s, up_mbps)
        cr.prefill_tokens, cr.upload_bytes = cost.prefill_tokens, cost.upload_bytes
        cr.ttft_s = wake + cost.ttft_s
        cr.finish_s = t + wake + cost.latency_s
        cr.usd = cost.cloud_gpu_s * self.usd_per_cloud_s
        self._complete(cr)

    def _run_edge(self, cr: CellRequest, d: Device, entry: KeptEntry | None) -> None:
        """``entry``: the session's kept entry when :meth:`dispatch` looked (one of another
        split it dropped, and counts as none here)."""
        req = cr.request
        k = cr.tier_index
        dev = self.tiers.device
        cached = min(entry.tokens, req.context_tokens) if entry and entry.split == k else 0
        total = req.context_tokens + req.new_tokens
        prefill = total - cached
        work = 0.0
        if k:
            work = dev.embed_prefill_s(prefill) + dev.layers_prefill_s(0, k, prefill, cached)
        start, end, joules = d.compute(req.arrival_s, work)
        self._spend(start, end, joules)
        nbytes = float(prefill * dev.activation_bytes_per_token[k])
        _, up_end = d.upload(end, nbytes)
        arrive = up_end + self.rtt / 2.0
        round_trip = 0.0
        n_decode = max(req.output_tokens - 1, 0)
        if k > 0 and n_decode:
            tok_work = (
                dev.layers_decode_s(0, k, 1, total)
                + dev.embed_decode[0]
                + (dev.embed_decode[1] * total)
            )
            mbps = max(d.uplink.capacity_mbps(d.offset_s + up_end), 1e-3)
            up_tok = dev.activation_bytes_per_token[k] / (mbps * BYTES_PER_MBIT)
            round_trip = self.rtt + tok_work / d.clock(arrive) + up_tok
            s2, e2, j2 = d.compute(arrive, n_decode * tok_work)  # heat of the per-token layers
            self._spend(s2, e2, j2)
        er = EdgeRequest(
            cr.rid, req.session_id, k, arrive, req.context_tokens, req.new_tokens,
            req.output_tokens, keep=cr.keep, round_trip_s=round_trip,
        )  # fmt: skip
        cr.edge, cr.prefill_tokens, cr.upload_bytes = er, prefill, nbytes
        heapq.heappush(self._submissions, (arrive, cr.rid, er))
        self._at_edge[cr.rid] = cr

    def _run_edge_flat(self, flat: EdgeTables, i: int, k: int, keep: bool) -> CellRequest:
        """:meth:`dispatch` of request ``i`` to split ``k < L`` in compiled mode: the kept
        entry's look-up, ``ledger.open``, :meth:`_wake` and :meth:`_run_edge` in one compiled
        call (:func:`offload_rl.cell.compiled_dispatch.place_edge`, bit for bit), which also
        schedules its submission to the edge on the sequence table (the row and the place in
        time order that ``EdgeServer.schedule`` at its arrival gives it), then the objects the
        edge server and the environment read. One flat function: at ~95% of the decisions,
        each Python call and attribute look-up here is paid per step."""
        req = self.requests[i]
        j = self.device_of[i]
        d = self.devices[j]
        sid = req.session_id
        slo = self.facts.slo_targets[self.slo_class[sid]]
        keep = keep and k <= self.L  # CellRequest.keep, as dispatch sets it
        ctx, new, out = req.context_tokens, req.new_tokens, req.output_tokens
        edge = self.edge
        kv = edge._kv_bytes  # by split, for the splits the edge runs
        if not (0 <= k < len(kv) and new >= 1 and out >= 1 and ctx >= 0):  # _check's test
            # raises, as its submission would, before anything changes
            edge._check(EdgeRequest(i, sid, k, 0.0, ctx, new, out, keep))
        seq = edge._table
        d.kept_local.pop(sid, None)
        up = d.uplink
        if up is not flat.uplinks[j]:
            flat.relink(d)
        a = self.ledger._table  # type: ignore[attr-defined]
        b = self.joules._table  # type: ignore[attr-defined]
        place = flat.place
        row = seq._session_index.get(sid)  # SequenceTable.session_index's seen-before case
        if row is None:
            row = seq.session_index(sid)
        free = seq._free  # the row its submission will have (SequenceTable.take_row)
        sub = free.pop() if free else seq.take_row()
        sd = d.noise_sd  # the sample's noise drawn now where the upload certainly has bytes
        z = d.rng.standard_normal() if sd > 0 and new > 0 and flat.sends[k] else math.nan
        cum, rates = flat.traces[j]
        kvk = kv[k]
        while True:
            res = place(  # the radio bank, profile, device, heat and sample tables lead
                *flat.leading, cum, rates, a.heap, a.gi, a.lumps, a.opened, b.heap,
                b.gi, b.lumps, seq.kept, seq.gi, seq.ints, seq.floats, seq.subs, seq.sub_t, j,
                i, row, sub, req.arrival_s, slo[0], slo[1], self._t, k, ctx, new, out, keep,
                kvk, d.offset_s, sd, z,
            )  # fmt: skip
            if res[0] == res[0]:  # not NaN: done
                break
            a.make_room(i, ROOM_HEAP, ROOM_LUMPS)
            b.make_room(0, ROOM_HEAP, ROOM_LUMPS)
        if not flat.pinned:  # the dispatcher typed these arguments: call straight on
            flat.pin()
        up_end, mbps, arrive, round_trip, nbytes, prefill, count, radio = res  # heat: its row
        # the request made now, with what the placement gave it (the reference's fields when
        # its request is placed: _run_edge's); its EdgeRequest when first read
        cr = EdgeCellRequest(i, j, req, k, keep, slo, prefill, nbytes, (arrive, round_trip, kvk))
        self.placed_radio = (cr, radio)
        if count >= 0:  # the sample written in its row (Device.record's, bit for bit)
            d._n_samples = count
        elif mbps >= 0.0:
            d.record(up_end, mbps)
        # scheduled on the table (its row written, its submission in time order: what
        # _advance_cell's heap of Python placements schedules); the table's object of the row
        seq.requests[sub] = cr
        seq.row_of[i] = sub
        self._at_edge[i] = cr
        d.memory._last[sid] = (req.arrival_s, out)  # d.memory.remember(req), inlined
        return cr

    def _run_local_flat(self, flat: EdgeTables, i: int, keep: bool) -> CellRequest:
        """:meth:`dispatch` of request ``i`` to the device tier (``k = L``) in compiled mode:
        the edge's kept entry dropped, ``ledger.open``, :meth:`_run_local`'s cost, compute and
        energy and :meth:`_complete`'s SLO test and ledger close and charge in one call
        (:func:`offload_rl.cell.compiled_dispatch.place_local`, bit for bit); the session's
        kept KV on the device and the departure heap here."""
        req = self.requests[i]
        j = self.device_of[i]
        d = self.devices[j]
        sid = req.session_id
        slo = self.facts.slo_targets[self.slo_class[sid]]
        L = self.L
        cr = CellRequest(i, j, req, L, keep and True, slo)  # keep and tier_index <= L
        seq = self.edge.pool._table  # type: ignore[union-attr]
        ctx, new, out = req.context_tokens, req.new_tokens, req.output_tokens
        held = d.kept_local.get(sid, 0)
        a = self.ledger._table  # type: ignore[attr-defined]
        b = self.joules._table  # type: ignore[attr-defined]
        row = seq._session_index.get(sid, -1)
        while True:
            res = flat.place_local(
                a.heap, a.gi, a.lumps, a.opened, b.heap, b.gi, b.lumps, flat.profile, flat.table,
                seq.kept, seq.gi, j, i, row, req.arrival_s, slo[0], slo[1], L, ctx, new, out,
                held, self._heat,
            )  # fmt: skip
            if res[0] == res[0]:  # not NaN: done
                break
            a.make_room(i, ROOM_HEAP, ROOM_LUMPS)
            b.make_room(0, ROOM_HEAP, ROOM_LUMPS)
        ttft, end, prefill, violated = res  # the heat: in the device's row
        cr.prefill_tokens, cr.cache_hit = prefill, (held if held < ctx else ctx) > 0
        cr.ttft_s, cr.finish_s, cr.slo_violated = ttft, end, violated
        if cr.keep:
            d.kept_local[sid] = kept_kv_tokens(ctx, new, out)
        else:
            d.kept_local.pop(sid, None)
        heapq.heappush(self._done, (end, i, cr))
        d.memory._last[sid] = (req.arrival_s, out)  # d.memory.remember(req), inlined
        return cr

    def _run_cloud_flat(self, flat: EdgeTables, i: int, keep: bool) -> CellRequest:
        """:meth:`dispatch` of request ``i`` to the cloud (``k = L + 1``) in compiled mode:
        the edge's kept entry dropped, ``ledger.open``, :meth:`_wake`, :meth:`_run_cloud`'s
        cost and radio and :meth:`_complete`'s SLO test, ledger close and charge in one call
        (:func:`offload_rl.cell.compiled_dispatch.place_cloud`, bit for bit); the throughput
        sample (its noise draw) and the departure heap here."""
        req = self.requests[i]
        j = self.device_of[i]
        d = self.devices[j]
        sid = req.session_id
        slo = self.facts.slo_targets[self.slo_class[sid]]
        tier_index = self.L + 1
        cr = CellRequest(i, j, req, tier_index, keep and tier_index <= self.L, slo)
        d.kept_local.pop(sid, None)
        seq = self.edge.pool._table  # type: ignore[union-attr]
        bank, link = self._bank, d.link
        assert bank is not None
        up = link.uplink
        a = self.ledger._table  # type: ignore[attr-defined]
        t = req.arrival_s
        while True:
            res = flat.place_cloud(
                bank.table, bank.awake, bank.levels, up.cum_bytes, up.mbps, a.heap, a.gi,
                a.lumps, a.opened, flat.profile, flat.cloud, flat.table, seq.kept, seq.gi, j, i,
                seq._session_index.get(sid, -1), t, slo[0], slo[1], self._t, self.L,
                req.context_tokens, req.new_tokens, req.output_tokens, d.offset_s, up.step_s,
                up._period, up._total, link.rtt_edge_s, link.rtt_cloud_extra_s,
                link.backhaul_bytes_per_s, self.cloud_queue[i],
                self.facts.scenario.cloud.slowdown, self.usd_per_cloud_s,
            )  # fmt: skip
            if res[0] == res[0]:  # not NaN: done
                break
            a.make_room(i, ROOM_HEAP, ROOM_LUMPS)
        wake, upload_s, up_mbps, prefill, nbytes, ttft, end, usd, violated = res
        if upload_s > 0:
            d.record(t + wake + upload_s, up_mbps)
        cr.prefill_tokens, cr.upload_bytes, cr.ttft_s, cr.finish_s = prefill, nbytes, ttft, end
        cr.usd, cr.slo_violated = usd, violated
        heapq.heappush(self._done, (end, i, cr))
        d.memory._last[sid] = (t, req.output_tokens)  # d.memory.remember(req), inlined
        return cr

    # --- time -----------------------------------------------------------------------------------

    def advance(self, t: float) -> list[CellRequest]:
        """Run the cell to ``t``; the requests whose last token reached their device by ``t``."""
        kernels = self._finish_path()
        if kernels is not None:
            self._advance_cell(kernels, t, False)
            return self._departed(t)
        subs = self._submissions
        edge = self.edge
        while subs and subs[0][0] <= t:
            when, _, er = heapq.heappop(subs)
            edge.schedule(er, when)  # submitted by the advance, at its time (one kernel call)
        edge.advance(t)
        self._finish_python(edge.pop_finished(), t)
        return self._departed(t)

    def advance_and_collect(self, t: float) -> tuple[list[CellRequest], float, float, float]:
        """:meth:`advance` then :meth:`collect` to ``t`` (the same results): on the compiled
        path in one kernel call, :func:`offload_rl.cell.compiled_finish.advance_cell`."""
        # _finish_path's answer, asked again only when the cell's edge server, ledgers or
        # radio bank are not those it answered for (a reset makes new ones; a replay swaps in
        # a Python edge server); numba disabled since, it is asked again too
        on = self._finishing
        kernels = _finish_module
        if (
            on is None
            or on[0] is not self.edge
            or on[1] is not self.ledger
            or on[2] is not self.joules
            or on[3] is not self._bank
            or not cd.AVAILABLE
        ):
            kernels = self._finish_path()
            if kernels is None:
                self._finishing = None
                done = self.advance(t)
                return (done, *self.collect(t))
            self._finishing = (self.edge, self.ledger, self.joules, self._bank)
        assert kernels is not None
        latency, other, joules = self._advance_cell(kernels, t, True)
        done, heap = [], self._done  # _departed, inlined: one call less a step
        while heap and heap[0][0] <= t:
            done.append(heapq.heappop(heap)[2])
        self._t = t
        return done, latency, other, joules

    def _departed(self, t: float) -> list[CellRequest]:
        """The requests whose last token reached their device by ``t`` (the clock moves)."""
        done = []
        while self._done and self._done[0][0] <= t:
            done.append(heapq.heappop(self._done)[2])
        self._t = t
        return done

    def _advance_cell(
        self, kernels: ModuleType, t: float, collect: bool
    ) -> tuple[float, float, float]:
        """The compiled path of :meth:`advance` (and of :meth:`collect` when ``collect``):
        the submissions due by ``t`` scheduled (the compiled placements' are already), then
        one kernel call
        (:func:`~offload_rl.cell.compiled_finish.advance_cell`) for the edge's iterations,
        the finished requests' radios and ledger, the token streams, the radios' joules and
        the collection; the finishes and events it logged are then handed to their objects.
        The collected (latency, other, raw joules); zeros when not ``collect``."""
        subs, edge, bank = self._submissions, self.edge, self._bank
        if subs and subs[0][0] <= t:  # Python placements (a sliding-window device profile)
            at_edge = self._at_edge
            while subs and subs[0][0] <= t:
                when, rid, er = heapq.heappop(subs)
                cr = at_edge[rid]
                edge.schedule(er, when, (cr.device, cr.request.arrival_s, *cr.slo))
        assert bank is not None
        table = edge._table
        # the compiled placements' submissions are scheduled on the table already, in time
        # order (_run_edge_flat); the kernel submits those due. Their objects keep their
        # placement's fields (the reference's until its arrival) until the table writes the
        # rest, the arrival's with them (SequenceTable.sync_row, on sync and in _hand_out):
        # a request at the edge is read after sync, as its other fields always were
        ledger, raw = self.ledger, self.joules
        a = ledger._table  # type: ignore[attr-defined]
        b = raw._table  # type: ignore[attr-defined]
        if self._cell_log is None:
            self._cell_log = np.zeros((64, kernels.N_LOG_COLUMNS))
            self._cell_state = np.zeros(kernels.N_STATE, dtype=np.int64)
        cs = self._cell_state
        call = self._advance_call or kernels.advance_cell
        while True:
            status, bank.n_streams, n_log, latency, other, latency2, joules, energy, full = (
                call(
                    *table.args, *edge._cost_arrays, *bank.fixed, a.heap, a.g, a.gi, a.lumps,
                    a.opened, b.heap, b.g, b.gi, b.lumps, b.opened, bank.streams, bank.n_streams,
                    self._cell_log, cs, t, self._t, self.rtt / 2.0, self.w_energy, self.w_slo,
                    self.w_cost, collect,
                )
            )  # fmt: skip
            if status == kernels.DONE:
                break
            self._cell_room(kernels, status, a)
        if self._advance_call is None:  # the dispatcher typed these arguments: call straight on
            from offload_rl.cell.kernel_jit import entry_point  # imports numba: compiled only

            self._advance_call = entry_point(kernels.advance_cell)
        bank.settled_j += energy
        if full:
            ledger._grow_both()  # type: ignore[attr-defined]
            raw._grow_both()  # type: ignore[attr-defined]
        if n_log:
            self._hand_out(kernels, n_log)
        if collect:
            ledger.latency_cost += latency
            ledger.other_cost += other
            raw.latency_cost += latency2
            raw.other_cost += joules
        return latency, other, joules

    def _cell_room(self, kernels: ModuleType, status: int, a: LedgerTable) -> None:
        """What :func:`~offload_rl.cell.compiled_finish.advance_cell` stopped for: grow the
        array it names (it then goes on where it stopped), or raise as the reference does."""
        if status == kernels.ROOM_LOG:
            log = self._cell_log
            assert log is not None
            self._cell_log = np.concatenate([log, np.zeros_like(log)])
        elif status == kernels.ROOM_LEDGER:
            a.make_room(0, 3, 2)
        elif status == kernels.ROOM_STREAMS:
            bank = self._bank
            assert bank is not None
            bank.streams = np.concatenate([bank.streams, np.zeros_like(bank.streams)])
        else:
            self._cell_state = np.zeros(kernels.N_STATE, dtype=np.int64)
            table = self.edge._table
            if status == kernels.SUB_BEFORE_CLOCK:
                t_sub = float(table.sub_t[0])
                table.unschedule()
                raise ValueError(
                    f"submit at {t_sub} is before the server's clock {self.edge.clock}"
                )
            raise KeyError("a finished edge request the ledger had not opened")

    def _hand_out(self, kernels: ModuleType, n: int) -> None:
        """The cell log's ``n`` rows handed to objects, in order: each finished (or rejected)
        request's edge fields (what ``SequenceTable.release`` writes, from its log row and its
        split's KV bytes a token: :func:`_edge_outcome`; an :class:`EdgeCellRequest` not read
        yet keeps the row for its EdgeRequest) and cell fields, its row freed (the kernel
        marked it FREE) and its departure queued; the edge's events."""
        edge = self.edge
        table = edge._table
        kv = edge._kv_bytes  # the row's KV_BYTES: its split's (compiled_dispatch.place_edge)
        reqs, row_of, free = table.requests, table.row_of, table._free
        at_edge, done, events = self._at_edge, self._done, edge._events
        log = self._cell_log
        assert log is not None
        finished, rejected = tab.OUT_DONE, tab.OUT_REJECTED
        for row in kernels.LOG_ROW.iter_unpack(log[:n]):
            (
                code, j, when, end, ttft, violated, _, _, _, preempted, cached, at_admit, _, _, _,
                _, _, queued_s, _,
            ) = row  # fmt: skip
            if code != finished and code != rejected:
                edge._drain_event(code, j, when)
                continue
            held = reqs[j]
            reqs[j] = None  # the row freed: SequenceTable.release's
            free.append(j)
            cr: CellRequest
            if type(held) is EdgeCellRequest:  # the compiled placement's (~all of them)
                cr = held
                rid = cr.rid
                del row_of[rid], at_edge[rid]
                kept = cr._edge
                if type(kept) is tuple:  # its EdgeRequest not made yet: made from the row
                    cr._edge = (kept, row)
                else:
                    _edge_outcome(kept, row, kv[cr.tier_index])
            else:
                assert isinstance(held, EdgeRequest)
                rid = held.request_id
                del row_of[rid]
                _edge_outcome(held, row, kv[held.split])
                cr = at_edge.pop(rid)
            cr.rejected = code == rejected
            cr.finish_s, cr.ttft_s, cr.cache_hit = end, ttft, cached > 0
            cr.queue_s, cr.batch_at_admit, cr.preempted = queued_s, at_admit, preempted
            cr.slo_violated = violated == 1.0
            heapq.heappush(done, (end, rid, cr))
            if code == rejected:
                events.append(EdgeEvent(when, "rejected", cr.request.session_id, rid))

    def _finish_python(self, finished: list[EdgeRequest], t: float) -> None:
        """The reference's finished requests, token streams and radio joules up to ``t``."""
        for er in finished:
            self._edge_done(self._at_edge.pop(er.request_id), er)
        streaming = self._streaming
        if streaming is not None:
            firsts = self.edge.first_tokens
            if firsts:
                self._start_streams(firsts, streaming)
            energy = self._stream_and_settle(t)
        else:
            self._stream_tokens(t)
            energy = self._radio_energy(t)
        if energy:
            self._spend(t, t, energy)

    def in_flight(self) -> list[CellRequest]:
        """The requests decided but not yet delivered, in request order: their outcome fields
        fill in as the cell runs on (evaluation scores them after the episode's end)."""
        self.edge.sync_requests()  # a compiled server's requests' fields, written now
        pending = [c for _, _, c in self._done] + list(self._at_edge.values())
        return sorted(pending, key=lambda c: c.rid)

    def _edge_done(self, cr: CellRequest, er: EdgeRequest) -> None:
        arrival = cr.request.arrival_s
        half = self.rtt / 2.0
        cr.rejected = er.status == REJECTED
        cr.finish_s = er.finish_s + (0.0 if cr.rejected else half)
        first = er.first_token_s if er.first_token_s >= 0 else er.finish_s
        cr.ttft_s = first + half - arrival
        cr.cache_hit = er.cached_tokens > 0
        cr.queue_s, cr.batch_at_admit, cr.preempted = er.queued_s, er.batch_at_admit, er.preemptions
        if self._streaming is not None:
            row = self._streaming.pop(cr.rid, None)
            if row is not None and self._bank is not None:
                moved = self._bank.drop_stream(row)
                if moved >= 0:
                    self._streaming[moved] = row
        d = self.devices[cr.device]
        self._wake(cr.device)
        d.receive(max(first + half, self._t), cr.finish_s - max(first + half, self._t))
        self._complete(cr)

    def _finish_path(self) -> ModuleType | None:
        """The compiled finish path's kernels when this cell runs compiled (a compiled edge
        server, a radio bank, token streams, two compiled ledgers), else None:
        :meth:`_finish_python`, the reference (also where a caller swapped in a Python edge
        server: ``validation/cell_replay.py``)."""
        ledger, raw = self.ledger, self.joules
        if (
            self._bank is None
            or not self.edge.compiled
            or self._streaming is None
            or not isinstance(ledger, CompiledCostLedger)
            or not isinstance(raw, CompiledCostLedger)
            or ledger is raw
        ):
            return None
        return _finish_kernels()

    def _stream_tokens(self, t: float) -> None:
        """Keep the radios of devices receiving tokens connected through ``(last t, t]``."""
        half = self.rtt / 2.0
        last = self._t
        awake, radios = self._awake, self._radios
        for cr in self._at_edge.values():
            er = cr.edge
            if er is not None and er.first_token_s >= 0:
                lo = er.first_token_s + half
                if lo < last:  # max(first + half, last), as Device.receive was called with
                    lo = last
                if t > lo:
                    j = cr.device
                    if j not in awake:
                        self._wake(j)
                    radios[j].keep_connected(lo, t - lo)  # Device.receive, inlined

    def _start_streams(self, firsts: list[EdgeRequest], streaming: dict[int, int]) -> None:
        """The requests whose first token the edge produced (and that have not finished) start
        streaming: a row each in the bank's streams, from their first token at the device."""
        bank = self._bank
        assert bank is not None
        half = self.rtt / 2.0
        for er in firsts:
            cr = self._at_edge.get(er.request_id)
            if cr is not None and cr.rid not in streaming:  # not finished already
                streaming[cr.rid] = bank.add_stream(cr.rid, cr.device, er.first_token_s + half)
        firsts.clear()

    def _stream_and_settle(self, t: float) -> float:
        """:meth:`_stream_tokens` then :meth:`_radio_energy` in one compiled call (the bank's):
        the streams are the requests whose first token came (the edge says which), visited in
        request order as ``_stream_tokens`` visits ``_at_edge``."""
        bank = self._bank
        assert bank is not None
        return bank.stream_and_settle(t, self._t)

    def _radio_energy(self, t: float) -> float:
        """Radio joules of every device in ``(last advance, t]``, settling only awake radios.

        An asleep radio (idle, no transfer since) spends its idle power, summed per power
        level; an awake one is settled to ``t`` and goes back to sleep once idle. A transfer
        the simulator did not announce with :meth:`_wake` is not lost: it is charged when the
        device next wakes.
        """
        dt = t - self._t
        energy = 0.0
        for w, n in self._asleep_w.items():
            energy += w * n * dt
        charged, radios = self._energy_j, self._radios
        for j in list(self._awake):
            radio = radios[j]
            e = radio.energy_until(t)
            energy += e - charged[j]
            charged[j] = e
            if t >= radio.idle_from():
                del self._awake[j]
                self._asleep_since[j] = t
                w = radio.params.idle_w
                self._asleep_w[w] = self._asleep_w.get(w, 0) + 1
        return energy

    def _wake(self, j: int) -> None:
        """Device ``j``'s radio is about to transfer: settle it per step from now on."""
        if self._bank is not None:
            self._bank.wake(j, self._t)
            return
        if j in self._awake:
            return
        w = self._radios[j].params.idle_w
        self._energy_j[j] += w * (self._t - self._asleep_since[j])  # what the sum charged
        self._asleep_w[w] -= 1
        self._awake[j] = None

    def collect(self, t: float) -> tuple[float, float, float]:
        """The interval's cost up to ``t`` (latency terms, the other terms) and the devices'
        raw joules: both ledgers collected (one kernel call when both are compiled)."""
        ledger, raw = self.ledger, self.joules
        if isinstance(ledger, CompiledCostLedger) and isinstance(raw, CompiledCostLedger):
            (latency, other), (_, joules) = ledger.collect_pair(raw, t)
            return latency, other, joules
        latency, other = ledger.collect(t)
        _, joules = raw.collect(t)
        return latency, other, joules

    def _spend(self, start: float, end: float, joules: float) -> None:
        """Device energy spent over ``[start, end]``: charged as it is spent."""
        ledger, raw = self.ledger, self.joules
        if isinstance(ledger, CompiledCostLedger) and isinstance(raw, CompiledCostLedger):
            ledger.spread_pair(raw, start, end, self.w_energy * joules, joules)  # one call
            return
        ledger.spread(start, end, self.w_energy * joules)
        raw.spread(start, end, joules)
