"""``offload_rl/EdgeCell-v0``: many phones share one edge server; each decision leaves state behind.

The Gymnasium face of :class:`offload_rl.cell.simulator.CellSimulator` (the physics live in
``offload_rl/cell/``); observation and mask come from the one encoder, :mod:`offload_rl.features`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.episode_options import pick_episode
from offload_rl.actions import ActionLayout
from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.config import CellConfig
from offload_rl.cell.device_seeding import world_generator
from offload_rl.cell.radio import RADIO_STATES
from offload_rl.cell.simulator import CellRequest, CellSimulator, Decision
from offload_rl.cell.thermal import DEVICE_CLASSES, H_TEMP
from offload_rl.cost_model import tier_of
from offload_rl.errors import ConfigError
from offload_rl.features import (
    CellDecisionState,
    FeatureSpec,
    encode_observation,
    observation_table,
    shared_action_mask,
)
from offload_rl.scenario import Scenario, load_scenario
from offload_rl.scenario_facts import ResolvedScenario, resolve_scenario
from offload_rl.workloads import Workload

OUTCOME_KEYS = (
    "latency_s",
    "ttft_s",
    "slo_violated",
    "cache_hit",
    "usd",
    "queue_s",
    "batch_at_admit",
    "preempted",
)


CLASS_NAMES = tuple(DEVICE_CLASSES)  # info["device_class"] by class index
_NO_SUMS = (0.0,) * len(OUTCOME_KEYS)  # an interval in which no request finished
_OBS_ROWS = 64  # observations per block (EdgeCellEnv._rows): ~9 KB at the cell's width


class _StepInfo:
    """A step's info, built as an instance's attributes and handed out as its ``__dict__``:
    a plain ``dict``, its keys in the order the step sets them, its values the step's. Why:
    a display of the info's 29 keys allocates a hash table past CPython's small-object
    allocator at every step (~1 us, measured at N = 32), where an instance's dict shares its
    class's keys and holds only its values (~0.35 us). No slots, no methods: only what the
    step sets (``__dict__`` holds nothing else)."""

    split: int
    tier: str
    keep: bool
    action: int
    invalid_action: bool
    prefill_tokens: int
    upload_bytes: float
    private: bool
    family: str
    trace: str
    measured_mbps: float
    device: int
    device_class: str
    device_temp_c: float
    radio_state: str
    dt: float
    energy_j: float
    n_finished: int
    latency_s: float
    ttft_s: float
    slo_violated: float
    cache_hit: float
    usd: float
    queue_s: float
    batch_at_admit: float
    preempted: float
    edge_batch: int
    edge_waiting: int
    edge_kv_occupancy: float


def interval_sums(finished: list[CellRequest]) -> tuple[float, ...]:
    """The finished requests' outcomes summed in finishing order, in OUTCOME_KEYS' order
    (floats from 0.0: the info's interval fields)."""
    latency = ttft = slo = hit = usd = queue = batch = preempted = 0.0
    for cr in finished:
        latency += cr.finish_s - cr.request.arrival_s  # cr.latency_s
        ttft += cr.ttft_s
        slo += cr.slo_violated
        hit += cr.cache_hit
        usd += cr.usd
        queue += cr.queue_s
        batch += cr.batch_at_admit
        preempted += cr.preempted
    return latency, ttft, slo, hit, usd, queue, batch, preempted


class EdgeCellEnv(gym.Env[np.ndarray, np.int64]):
    """Placement and KV-cache decisions for ``N`` phones that share one edge server.

    ## Description
    ``N`` devices (each with a class, a thermal state, an RRC radio and its own link trace at
    its own offset) send the requests of their chat sessions; one edge GPU serves them with
    continuous batching and chunked prefill over one KV pool shared by running requests and
    kept sessions (LRU eviction, then recompute preemption, as vLLM); a stateless cloud tier
    takes the rest. One step is one request's decision, whichever device's request arrives
    next; between decisions the simulator runs the edge iteration by iteration and the
    devices' clocks, heat and radios. A decision has consequences for others: a long prompt at
    the edge slows every request in the batch, a kept entry takes memory, local work heats the
    phone and slows its next local request, an offload wakes the radio.

    ## Action space
    ``Discrete(2 * (L + 2))``, the joint layout of ``SplitCache-v0``
    (:class:`offload_rl.actions.ActionLayout`), ``action = tier_index * 2 + keep``:

    | tier_index | placement                                                            |
    |------------|----------------------------------------------------------------------|
    | 0          | edge: token ids up, the edge runs every layer in its batch           |
    | 1 .. L-1   | split: layers ``< k`` on the throttled device, the rest in the batch |
    | L          | device: fully local, on the phone's compute queue                    |
    | L + 1      | cloud: stateless, cost model with the cloud's queue and slowdown     |
    | L + 2      | lite (with a scenario ``lite:`` section only): the device-lite model |
    |            | on the phone's compute queue, throttled by its heat, no radio        |

    ``keep`` = 1 leaves the session's KV in the edge pool after the request (evictable, LRU),
    or on the device for the local tier; 0 frees it.

    ## Observation space
    ``Box(0, 1, (H + 27,), float32)`` from :func:`offload_rl.features.encode_observation` with
    ``FeatureSpec(cell=True)``: the single-device features, then the device's own state and the
    edge's exact state. Its length does not depend on ``N``. Throughput samples come only from
    the device's own past transfers (``throughput_age`` says how old the newest is);
    ``edge_load`` is the edge GPU's busy share since the previous decision and
    ``edge_kv_occupancy`` the pool's used share, as the runtime knows them:

    {observation_table}

    ## Action masks
    ``action_masks()``: as ``SplitCache-v0`` (privacy, device memory, link outage from the
    device's newest sample, never cloud + keep; the lite tier, when configured, whenever the
    device holds the small model, outage or not, never lite + keep). An
    invalid action is replaced by the nearest valid one and costs ``invalid_action_penalty``.

    ## Reward
    Cost accrues through time (:class:`offload_rl.reward.CostLedger`); the reward of a step is
    minus the cost accrued between this decision and the next:

    | term      | accrues                                                                  |
    |-----------|--------------------------------------------------------------------------|
    | latency   | ``w_latency / SLO_i`` per second for each request ``i`` in the system     |
    | energy    | ``w_energy`` per device joule (compute and radio, all devices) as spent  |
    | SLO       | ``w_slo`` when a request that missed its TTFT or TPOT target completes   |
    | cost      | ``w_cost`` x cloud USD when a cloud request completes                    |
    | quality   | ``lite.w_quality`` x (``lite.main_quality - lite.quality``) when a       |
    |           | request the device-lite model answered completes (no ``lite:``: absent)  |
    | invalid   | ``invalid_action_penalty`` at the step of an invalid action              |

    ``SLO_i = ttft_slo + (o - 1) * tpot_slo``, so over a run the latency terms sum to the
    per-request rule's (Little's law). ``info["dt"]`` is the time to the next decision, for
    discounting by elapsed time.

    ## Episode end
    Continuing: never terminates; truncates after ``episode.requests`` decisions (requests
    still in the system keep the cost they accrued so far). The last step's info carries
    ``session_return_rate_in_episode`` (share of decided requests whose session's next turn
    was decided in the episode) and ``session_return_rate_unbounded`` (the workload model's
    probability of another turn, no episode boundary).

    ## Reset options
    ``trace`` (index or name) and ``offset_s`` pin device 0's link, ``workload_seed`` pins the
    requests and every other device; anything not pinned is drawn from the seed.

    ## Info
    About the decided request: ``split``, ``tier``, ``keep``, ``action`` (executed),
    ``invalid_action``, ``prefill_tokens``, ``upload_bytes``, ``private``, ``family``, ``trace``
    (its device's), ``measured_mbps`` (its newest sample), ``device``, ``device_class``,
    ``device_temp_c``, ``radio_state`` (with a device-lite model also ``lite`` and ``quality``,
    the benchmark score of the model that answers). About the interval to the next decision: ``dt``,
    ``energy_j`` (all devices), ``n_finished`` and, summed over the requests that finished in
    it, ``latency_s``, ``ttft_s``, ``slo_violated``, ``cache_hit``, ``usd``, ``queue_s``,
    ``batch_at_admit``, ``preempted`` (divide by ``n_finished`` for means); ``edge_batch``,
    ``edge_waiting``, ``edge_kv_occupancy`` at the next decision. The finished requests
    themselves (for percentiles and per-device-class figures) are ``env.last_finished``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        scenario: str | Scenario | ResolvedScenario = "cell",
        episode_requests: int | None = None,
        n_devices: int | None = None,
        workload: Workload | None = None,
    ) -> None:
        super().__init__()
        if isinstance(scenario, ResolvedScenario):
            resolved = scenario
        else:
            resolved = resolve_scenario(
                load_scenario(scenario) if isinstance(scenario, str) else scenario
            )
        sc = resolved.scenario
        if sc.cell is None:
            raise ConfigError(f"scenario {sc.name!r} has no 'cell:' section for EdgeCell-v0")
        cell: CellConfig = sc.cell
        if n_devices is not None:
            cell = cell.model_copy(update={"n_devices": int(n_devices)})
        self.resolved = resolved
        self.facts = facts = resolved.facts
        self.scenario = sc
        base = facts.spec
        self.feature_spec = FeatureSpec(
            n_layers=base.n_layers,
            history=base.history,
            k_priv=base.k_priv,
            outage_mbps=base.outage_mbps,
            cell=True,
            lite_memory_layers=base.lite_memory_layers,
        )
        self.layout: ActionLayout = self.feature_spec.layout
        self.n_requests = episode_requests or sc.episode.requests
        self.sim = CellSimulator(resolved, cell, workload)
        self.action_space = spaces.Discrete(self.layout.n_actions)
        self.observation_space = spaces.Box(
            0.0, 1.0, (self.feature_spec.obs_dim,), dtype=np.float32
        )
        self._i = 0
        self._world: np.random.Generator | None = None  # the episode's draws (reset)
        self._encode: Callable[[CellDecisionState, FeatureSpec], np.ndarray] | None = None
        self.last_finished: list[CellRequest] = []
        self._decide: ModuleType | None = None  # compiled_observation, in compiled mode
        self._masks: list[np.ndarray] = []  # the compiled decision's, by its index
        self._vals = np.zeros(0, dtype=np.float64)  # the compiled decision's state fields
        self._state: CellDecisionState | None = None
        # the decision's mask index, edge_batch, edge_waiting and edge_kv_occupancy, private
        # and newest sample, samples read (the info's; the simulator's Decision, whose layout
        # the reference path fills too)
        self._decision: Decision = (0, 0, 0, 0.0, False, 0.0, 0)
        # the compiled decision's observations: rows of a block, each handed out once (a row
        # view costs ~0.1 us less than np.empty; a kept observation keeps its block alive)
        self._rows: Iterator[np.ndarray] = iter(())
        self._tier_info = self._tier_infos()
        # asked at every step: properties that compute (the spec and layout are fixed)
        self._n_actions = self.layout.n_actions
        # each action's (tier_index, keep), from the layout's one rule (read per step)
        self._decoded = [
            (k, bool(keep)) for k, keep in map(self.layout.decode, range(self._n_actions))
        ]
        self._obs_dim = self.feature_spec.obs_dim
        self._obs_dtype = np.dtype(np.float32)  # np.empty looks a type's dtype up per call

    # -- episode set-up -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        uplinks = self.resolved.uplinks
        idx, offset_s, wseed = pick_episode(uplinks, self.np_random, options)
        # the previous episode's world seeded again (compiled mode): the same stream as a new
        # generator's (world_generator)
        self._world = world_generator(wseed, self._world)
        self.sim.reset(self._world, self.n_requests, idx, offset_s)
        self._i = 0
        self._episode_info = {
            "trace": uplinks[idx].name,
            "family": uplinks[idx].family,
            "offset_s": offset_s,
            "workload_seed": wseed,
            "n_devices": self.sim.cell.n_devices,
        }
        self._encode = self._compiled_encoder() if self.sim.edge.compiled else None
        self._decide = self._compiled_decider()
        self._prepare()
        return self._obs, dict(self._episode_info)

    @staticmethod
    def _compiled_encoder() -> Callable[[CellDecisionState, FeatureSpec], np.ndarray] | None:
        """The observation's compiled writer (bit for bit :func:`encode_observation`), with
        a compiled simulator; None (the Python encoder) if it fails to compile."""
        try:
            encode: Callable[[CellDecisionState, FeatureSpec], np.ndarray]
            encode = cd.observation().encode
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
            return None
        return encode

    def _compiled_decider(self) -> ModuleType | None:
        """:mod:`~offload_rl.cell.compiled_observation` where a decision runs in one compiled
        call (a compiled edge server and radio bank), with its buffers and the masks its
        index picks; None (the reference: state, encoder, mask) otherwise."""
        if self._encode is None or self.sim._bank is None:
            return None
        module = cd.observation()
        if not self._masks:
            self._masks = module.mask_table(self.feature_spec)
            self._vals = np.zeros(module.V_SIZE, dtype=np.float64)
        self.sim.bind_decisions(module, self.feature_spec)
        return module

    def _prepare(self) -> None:
        decide = self._decide
        if decide is not None:
            try:
                obs = next(self._rows)
            except StopIteration:
                self._rows = iter(np.empty((_OBS_ROWS, self._obs_dim), self._obs_dtype))
                obs = next(self._rows)
            self._decision = decision = self.sim.decide_compiled(self._i, decide, obs, self._vals)
            self._obs = obs
            self._mask = self._masks[decision[0]]  # read-only: copied out
            self._state = None  # built when read
            return
        state: CellDecisionState = self.sim.decision_state(self._i)
        self._state = state
        encode = self._encode or encode_observation
        self._obs = encode(state, self.feature_spec)
        self._mask = shared_action_mask(state, self.feature_spec)  # read-only: copied out
        samples = state.throughput_mbps
        self._decision = (  # the info's fields where the compiled decision has them
            0, self.sim.edge.last_batch_size, state.edge_waiting, state.edge_kv_occupancy,
            state.private, samples[-1] if samples else 0.0, len(samples),
        )  # fmt: skip

    # -- acting ---------------------------------------------------------------------------
    @property
    def state(self) -> CellDecisionState:
        """The decision state of the current request (what its device and the edge know);
        a compiled decision builds it at the first read (training never reads it)."""
        state = self._state
        if state is None:  # a compiled decision's
            state = self._state = self.sim.state_of(self._i, self._vals)
        return state

    @property
    def request_index(self) -> int:
        """Index (into ``sim.requests``) of the request being decided (the hindsight oracle's)."""
        return self._i

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask over the joint actions (sb3-contrib MaskablePPO)."""
        return self._mask.copy()

    def step(
        self, action: np.int64 | int
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        sim = self.sim
        reqs = sim.requests
        if not reqs:
            raise RuntimeError("call reset() before step()")
        a = int(action)
        invalid = not (0 <= a < self._n_actions and self._mask[a])
        if invalid:
            a = self.layout.nearest_valid(a, self._mask)
        i = self._i
        t = reqs[i].arrival_s
        tier_index, keep = self._decoded[a]
        cr = sim.dispatch(i, tier_index, keep)  # not *self._decoded[a]: ~0.09 us a call
        j = cr.device
        d = sim.devices[j]
        # the decided request's device as the decision left it: its heat (d.thermal.temp_c,
        # the same float read straight from its row of the cell's heat array), its radio
        temp_c = sim._heat.item(j, H_TEMP)
        placed = sim.placed_radio  # the compiled edge placement's (this request's, if so)
        index = placed[1] if placed is not None and placed[0] is cr else d.radio.state_index(t)
        radio = RADIO_STATES[index]
        # the decided request's privacy and newest sample (0 if none), the edge at the next
        # decision: the next _prepare's Decision replaces this one
        _, _, _, _, private, measured, n_samples = self._decision
        if not n_samples:
            measured = 0
        self._i = i + 1
        t_next = reqs[i + 1].arrival_s
        finished, latency_cost, other_cost, joules = sim.advance_and_collect(t_next)
        self.last_finished = finished
        penalty = self.scenario.reward.invalid_action_penalty if invalid else 0.0
        reward = -(latency_cost + other_cost + penalty)
        latency, ttft, slo, hit, usd, queue, at_admit, preempted = (
            interval_sums(finished) if finished else _NO_SUMS
        )  # OUTCOME_KEYS, in order
        truncated = i + 1 >= self.n_requests
        self._prepare()
        _, batch, waiting, occupancy, _, _, _ = self._decision  # the next one's: the edge now
        split, tier, lite = self._tier_info[cr.tier_index]
        uplink = d.uplink
        # the info as _StepInfo builds it (its keys in this order: the info's, always)
        fields = _StepInfo()
        fields.split = split
        fields.tier = tier
        fields.keep = cr.keep
        fields.action = a
        fields.invalid_action = invalid
        fields.prefill_tokens = cr.prefill_tokens
        fields.upload_bytes = cr.upload_bytes
        fields.private = private
        fields.family = uplink.family
        fields.trace = uplink.name
        fields.measured_mbps = measured
        fields.device = j
        fields.device_class = CLASS_NAMES[d.class_index]
        fields.device_temp_c = temp_c
        fields.radio_state = radio
        fields.dt = t_next - t
        fields.energy_j = joules
        fields.n_finished = len(finished)
        fields.latency_s = latency  # OUTCOME_KEYS, in order
        fields.ttft_s = ttft
        fields.slo_violated = slo
        fields.cache_hit = hit
        fields.usd = usd
        fields.queue_s = queue
        fields.batch_at_admit = at_admit
        fields.preempted = preempted
        fields.edge_batch = batch
        fields.edge_waiting = waiting
        fields.edge_kv_occupancy = occupancy
        info: dict[str, Any] = fields.__dict__
        if lite is not None or truncated:
            info = self._with_rare_fields(info, lite, truncated)
        return self._obs, float(reward), False, truncated, info

    def _with_rare_fields(
        self, info: dict[str, Any], lite: tuple[bool, float] | None, truncated: bool
    ) -> dict[str, Any]:
        """``info`` with ``lite`` and ``quality`` after the decided request's fields (a
        device-lite model) and the session-return rates before the edge's (the last step),
        in the order the info always had."""
        items = list(info.items())
        tail = items[-3:]  # edge_batch, edge_waiting, edge_kv_occupancy
        head, interval = items[:15], items[15:-3]
        extra = [("lite", lite[0]), ("quality", lite[1])] if lite is not None else []
        rates = list(self._return_rates().items()) if truncated else []
        return dict(head + extra + interval + rates + tail)

    def _tier_infos(self) -> list[tuple[int, str, tuple[bool, float] | None]]:
        """Per tier index, the info's ``split`` and ``tier`` and, with a device-lite model,
        ``lite`` and ``quality`` (from ``tier_of`` and ``facts.quality_of``, once)."""
        L = self.layout.n_layers
        return [
            (
                k if k <= L else 0,
                tier_of(k, L),
                (k == L + 2, self.facts.quality_of(k)) if self.facts.has_lite else None,
            )
            for k in range(self.layout.n_tiers)
        ]

    def _return_rates(self) -> dict[str, float]:
        """Session-return rates of the decided requests, with and without the boundary."""
        reqs = self.sim.requests[: self.n_requests]
        end = reqs[-1].arrival_s
        inside = sum(
            r.gap_to_next_turn_s is not None and r.arrival_s + r.gap_to_next_turn_s <= end
            for r in reqs
        )
        cont = self.facts.continuation
        model = sum(float(cont[min(r.turn, len(cont) - 1)]) for r in reqs)
        return {
            "session_return_rate_in_episode": inside / len(reqs),
            "session_return_rate_unbounded": model / len(reqs),
        }


EdgeCellEnv.__doc__ = (EdgeCellEnv.__doc__ or "").replace(
    "{observation_table}", observation_table(indent="    ", cell=True).lstrip()
)
