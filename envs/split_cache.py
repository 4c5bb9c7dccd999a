"""``offload_rl/SplitCache-v0``: place every LLM request between device, edge and cloud.

One step is one request of a chat workload; the agent picks where the layers run and whether
the edge keeps the session's KV cache. Costs come from measured or analytical per-layer profiles
(:mod:`offload_rl.cost_model`) and the link from a recorded or fitted bandwidth trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.episode_options import pick_episode
from offload_rl.actions import ActionLayout
from offload_rl.cost_model import RequestCost, request_cost, tier_of
from offload_rl.device_view import (
    SessionMemory,
    decision_state,
    kept_kv_tokens,
    latest_period,
    measured_throughput,
)
from offload_rl.edge_load import EdgeLoadSeries, generate_edge_load
from offload_rl.features import (
    DecisionState,
    action_mask,
    encode_observation,
    observation_table,
)
from offload_rl.kv_cache import EdgeKVCache
from offload_rl.reward import score_request
from offload_rl.scenario import Scenario, load_scenario
from offload_rl.scenario_facts import ResolvedScenario, resolve_scenario
from offload_rl.traces import Trace
from offload_rl.workloads import Request, Workload


@dataclass(slots=True)  # not frozen: built on every step, frozen __init__ is slow
class StepOutcome:
    """What serving the current request with one action would give (and, once stepped, gave)."""

    action: int
    reward: float
    cost: RequestCost
    slo_violated: bool
    cache_hit: bool
    cached_tokens: int
    usd: float


class SplitCacheEnv(gym.Env[np.ndarray, np.int64]):
    """Per-request split point, tier and KV-cache action for LLM inference at the mobile edge.

    ## Description
    A device, an edge server at the base station and a cloud share an ``L``-layer transformer.
    Requests of chat sessions arrive from a recorded (or fitted) workload; the radio link follows
    a bandwidth trace; other users load the edge. For each request the agent chooses how many
    layers run on the device before hidden states go to the edge (or whether the edge forwards
    it to the cloud), and whether the edge keeps the session's KV cache for the next turn.

    ## Action space
    ``Discrete(2 * (L + 2))``; ``action = tier_index * 2 + keep``:

    | tier_index | placement                                                  |
    |------------|------------------------------------------------------------|
    | 0          | edge: send token ids, the edge runs every layer            |
    | 1 .. L-1   | split: layers ``< k`` on the device, the rest on the edge  |
    | L          | device: fully local                                        |
    | L + 1      | cloud: the edge forwards the request to the cloud          |
    | L + 2      | lite: the device-lite model answers on the device (only    |
    |            | with a scenario ``lite:`` section; then ``2 * (L + 3)``)   |

    ``keep`` = 1 keeps the session's KV after the request (the edge's layers in the edge's LRU
    memory, the device's layers on the device), 0 drops it. A joint ``Discrete`` rather than
    ``MultiDiscrete`` because "cloud + keep" is a forbidden combination (the cloud is stateless)
    and only a joint space can mask a combination.

    ## Observation space
    ``Box(0, 1, (H + 17,), float32)`` built by :func:`offload_rl.features.encode_observation`
    from what the device knows at decision time (never the future); ``H`` is
    ``network.throughput_history``. The table is rendered from
    :data:`offload_rl.features.FEATURE_DOCS` when this module is imported:

    {observation_table}

    ## Action masks
    ``action_masks()`` returns the flat boolean mask MaskablePPO expects
    (:func:`offload_rl.features.action_mask`): privacy (a private request keeps at least
    ``k_priv`` layers on the device), device memory (at most ``device_memory_layers`` layers on
    the device), link outage (fully local only, and the lite tier when configured: it is valid
    whenever the device holds the small model; a device that holds neither gets the deepest split
    it holds, its upload waiting for the link), and never "cloud + keep" or "lite + keep". An
    invalid action
    sent anyway is replaced by the nearest valid one and costs ``invalid_action_penalty``.

    ## Reward
    ``-(w_latency * latency / SLO + w_energy * device_J + w_slo * violated + w_cost * USD
    + w_quality * quality_gap * lite)``:

    | term    | weight              | per request                                              |
    |---------|---------------------|----------------------------------------------------------|
    | latency | ``w_latency``       | latency / SLO, ``SLO = ttft_slo + (o - 1) * tpot_slo``   |
    | energy  | ``w_energy``        | device joules                                            |
    | SLO     | ``w_slo``           | 1 if the TTFT or the mean time per output token missed   |
    | cost    | ``w_cost``          | USD of edge and cloud GPU-seconds                        |
    | quality | ``lite.w_quality``  | ``lite.main_quality - lite.quality`` if the device-lite  |
    |         |                     | model answered (absent without a ``lite:`` section)      |

    With ``reward.keep_credit`` (a training aid, off by default) a keep whose session returns
    within the episode is credited at once with what a hit would save that next turn (priced in
    hindsight); the credit is taken back at that turn, or from the step whose keep evicts the
    entry. Episode returns are unchanged; only the timing of the reward moves.

    ## Episode end
    Never terminates; truncates after ``episode.requests`` requests.

    ## Reset options
    ``trace`` (index or name), ``offset_s`` (start time in the trace) and ``workload_seed``
    pin an episode for deterministic evaluation; anything not pinned is drawn from the seed.

    ## Info
    ``latency_s``, ``ttft_s``, ``energy_j``, ``slo_violated``, ``cache_hit``, ``split``,
    ``tier``, ``invalid_action``, ``action`` (the one executed), ``prefill_tokens``,
    ``upload_bytes``, ``usd``, ``private``, ``family``, ``trace``, ``measured_mbps`` (the newest
    throughput sample the device had when it decided); with a device-lite model also ``lite``
    (the lite model answered) and ``quality`` (the benchmark score of the model that answered).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        scenario: str | Scenario | ResolvedScenario = "default",
        episode_requests: int | None = None,
        traces: list[str] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(scenario, ResolvedScenario):
            resolved = scenario
        else:
            sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
            if traces:
                sc = sc.with_traces(traces)
            resolved = resolve_scenario(sc)
        self.resolved = resolved
        self.facts = facts = resolved.facts
        sc = facts.scenario
        self.scenario = sc
        self.feature_spec = facts.spec
        self.tiers = facts.tiers
        self.layout: ActionLayout = self.feature_spec.layout
        self.n_requests = episode_requests or sc.episode.requests
        self.workload: Workload = facts.workload()
        self.energy = facts.energy
        self.action_space = spaces.Discrete(self.layout.n_actions)
        self.observation_space = spaces.Box(
            0.0, 1.0, (self.feature_spec.obs_dim,), dtype=np.float32
        )
        self._slo = list(facts.slo_targets)
        self._slo_p = np.array(facts.slo_shares)
        self._kv_cache = EdgeKVCache(int(sc.edge.kv_cache_bytes))
        self._keep_credit = sc.reward.keep_credit
        self._memory = SessionMemory()
        self._i = 0
        self._requests: list[Request] = []

    # -- episode set-up -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        uplinks = self.resolved.uplinks
        idx, self._offset, wseed = pick_episode(uplinks, self.np_random, options)
        self._trace_index = idx
        uplink: Trace = uplinks[idx]
        world = np.random.default_rng(int(wseed))
        self._link = self.facts.link(uplink, self.resolved.downlinks[idx])
        # one extra request gives the observation that follows the last step
        reqs = self.workload.sample(world, self.n_requests + 1)
        self._requests = reqs
        n = len(reqs)
        n_sessions = max(r.session_id for r in reqs) + 1
        wl = self.scenario.workload
        self._private = (world.random(n_sessions) < wl.private_share).tolist()
        self._slo_class = world.choice(len(self._slo), size=n_sessions, p=self._slo_p).tolist()
        dev = self.scenario.device
        full = self.facts.device_memory_layers
        pressure = world.random(n) < dev.memory_pressure_share
        self._k_mem = np.where(pressure, min(dev.memory_pressure_layers, full), full).tolist()
        queue_draw = world.exponential(1.0, size=n)
        self._cloud_queue = (world.exponential(1.0, size=n) * self.scenario.cloud.queue_s).tolist()
        horizon = reqs[-1].arrival_s + 60.0
        load = generate_edge_load(self.scenario.edge.load, horizon, world)
        self._load: EdgeLoadSeries = load
        # per-request edge conditions, precomputed: the true ones (hindsight, for costs) and
        # the lagged report the device sees
        arrivals = np.array([r.arrival_s for r in reqs])
        util = load.util_at_many(arrivals)
        self._edge_queue = (load.params.mean_queue_s(util) * queue_draw).tolist()
        self._edge_slowdown = load.params.slowdown_at(util).tolist()
        self._edge_reported = load.util_at_many(arrivals - load.params.report_lag_s).tolist()
        self._build_throughput_samples(uplink, horizon, world)
        self._kv_cache.clear()
        self._credit: dict[int, float] = {}  # session -> keep credit not yet taken back
        self._next_turn = self._next_turn_indices(reqs) if self._keep_credit else []
        self._device_kv: dict[int, int] = {}
        self._memory.clear()
        self._i = 0
        self._episode_info = {
            "trace": uplink.name,
            "family": uplink.family,
            "offset_s": self._offset,
            "workload_seed": int(wseed),
        }
        self._prepare_request()
        return self._obs, dict(self._episode_info)

    def _build_throughput_samples(
        self, uplink: Trace, horizon: float, world: np.random.Generator
    ) -> None:
        """Per-period mean uplink capacity, with measurement noise, from ``H`` periods before
        the episode to its end: the device's view of its own link (vectorised: one reset must
        stay cheap next to 128 steps)."""
        net = self.scenario.network
        period = net.throughput_sample_s
        H = net.throughput_history
        m = H + math.ceil(horizon / period) + 1
        values = measured_throughput(
            uplink, self._offset, -H, m, period, net.throughput_noise, world
        )
        self._samples = values.tolist()
        self._sample_period = period

    def _samples_before(self, t: float) -> list[float]:
        """The ``H`` most recent complete sample periods before episode time ``t``."""
        H = self.feature_spec.history
        end = H + latest_period(t, self._sample_period)
        return self._samples[end - H : end]

    def _prepare_request(self) -> None:
        """Build the decision state, observation and mask of the current request."""
        req = self._requests[self._i]
        sid = req.session_id
        state = decision_state(
            req,
            throughput_mbps=self._samples_before(req.arrival_s),
            rtt_ms=self.scenario.network.rtt_edge_ms,
            private=self._private[sid],
            slo=self._slo[self._slo_class[sid]],
            cached=self._session_cache(sid, req.context_tokens),
            edge_kv_occupancy=self._kv_cache.occupancy(),
            edge_load=self._edge_reported[self._i],
            device_memory_layers=self._k_mem[self._i],
            memory=self._memory,
        )
        self._state = state
        self._obs = encode_observation(state, self.feature_spec)
        self._mask = action_mask(state, self.feature_spec)

    def _session_cache(self, sid: int, context: int) -> tuple[int | None, int]:
        """Split and usable tokens of the session's kept KV (device entry wins if both)."""
        if sid in self._device_kv:
            return self.feature_spec.n_layers, min(self._device_kv[sid], context)
        entry = self._kv_cache.peek(sid)
        if entry is None:
            return None, 0
        return entry.split, min(entry.tokens, context)

    # -- acting ---------------------------------------------------------------------------
    @property
    def state(self) -> DecisionState:
        """The decision state of the current request (what the device knows)."""
        return self._state

    @property
    def current_request(self) -> Request:
        return self._requests[self._i]

    def action_masks(self) -> np.ndarray:
        """Flat boolean mask over the joint actions (sb3-contrib MaskablePPO)."""
        return self._mask.copy()

    def what_if(self, action: int) -> StepOutcome:
        """The outcome of serving the current request with ``action``, without stepping.

        Uses the true link capacity and edge queue: hindsight that only the oracle may use.
        ``action`` must be valid under the current mask.
        """
        req = self._requests[self._i]
        tier_index = action >> 1
        cached_split, usable = self._session_cache(req.session_id, req.context_tokens)
        hit = cached_split is not None and cached_split == tier_index and usable > 0
        return self._outcome(self._i, action, usable if hit else 0)

    def _outcome(self, i: int, action: int, cached: int) -> StepOutcome:
        """Outcome of request ``i`` served with ``action`` and ``cached`` usable KV tokens."""
        req = self._requests[i]
        sid = req.session_id
        tier_index = action >> 1
        cost = request_cost(
            tier_index,
            self._offset + req.arrival_s,
            req.new_tokens,
            req.context_tokens,
            cached,
            req.output_tokens,
            self.tiers,
            self._link,
            self.energy,
            edge_queue_s=self._edge_queue[i],
            edge_slowdown=self._edge_slowdown[i],
            cloud_queue_s=self._cloud_queue[i],
            cloud_slowdown=self.scenario.cloud.slowdown,
        )
        ttft_slo, tpot_slo = self._slo[self._slo_class[sid]]
        score = score_request(cost, req.output_tokens, ttft_slo, tpot_slo, self.facts.reward_rule)
        return StepOutcome(
            action=action,
            reward=score.reward,
            cost=cost,
            slo_violated=score.slo_violated,
            cache_hit=cached > 0,
            cached_tokens=cached,
            usd=score.usd,
        )

    def step(
        self, action: np.int64 | int
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        if not self._requests:
            raise RuntimeError("call reset() before step()")
        a = int(action)
        invalid = not (0 <= a < self.layout.n_actions and self._mask[a])
        if invalid:
            a = self.layout.nearest_valid(a, self._mask)
        out = self.what_if(a)
        req = self._requests[self._i]
        sid = req.session_id
        L = self.feature_spec.n_layers
        tier_index, keep = self.layout.decode(a)
        self._update_cache(sid, tier_index, keep, req)
        reward = out.reward - (self.scenario.reward.invalid_action_penalty if invalid else 0.0)
        if self._keep_credit:
            reward += self._redistribute(sid, tier_index, keep)
        cost = out.cost
        info = {
            "latency_s": cost.latency_s,
            "ttft_s": cost.ttft_s,
            "energy_j": cost.energy_j,
            "slo_violated": out.slo_violated,
            "cache_hit": out.cache_hit,
            "split": tier_index if tier_index <= L else 0,
            "tier": tier_of(tier_index, L),
            "keep": bool(keep),
            "action": a,
            "invalid_action": invalid,
            "prefill_tokens": cost.prefill_tokens,
            "upload_bytes": cost.upload_bytes,
            "usd": out.usd,
            "private": self._private[sid],
            "family": self._link.uplink.family,
            "trace": self._link.uplink.name,
            "measured_mbps": self._state.throughput_mbps[-1],
        }
        if self.facts.has_lite:
            info["lite"] = cost.lite
            info["quality"] = self.facts.quality_of(tier_index)
        self._i += 1
        truncated = self._i >= self.n_requests
        self._prepare_request()
        return self._obs, float(reward), False, bool(truncated), info

    @staticmethod
    def _next_turn_indices(reqs: list[Request]) -> list[int]:
        """For each request, the index of its session's next request (-1: none)."""
        nxt = [-1] * len(reqs)
        seen: dict[int, int] = {}
        for j in range(len(reqs) - 1, -1, -1):
            sid = reqs[j].session_id
            nxt[j] = seen.get(sid, -1)
            seen[sid] = j
        return nxt

    def _redistribute(self, sid: int, tier_index: int, keep: int) -> float:
        """Reward moved in time by ``reward.keep_credit`` (call after the cache action).

        A keep whose session comes back within the episode is credited at once with what a
        hit would save that next turn at the same split (priced in hindsight); the credit is
        taken back when the next turn comes (which then earns the real hit, or not) or from
        the step whose keep evicts the entry. Every credit is taken back within the episode,
        so episode returns are unchanged; only the timing moves, from ~30 requests later to
        the decision that made the hit possible.
        """
        owed = self._credit.pop(sid, 0.0)
        for evicted in self._kv_cache.last_evicted:
            owed += self._credit.pop(evicted, 0.0)
        # consumed: a later step without a store() (drop, device keep) must not charge them
        # again, e.g. once the evicted session has been kept on the device and re-credited
        self._kv_cache.last_evicted = []
        j = self._next_turn[self._i]
        if keep and j >= 0 and j < self.n_requests:
            if tier_index == self.feature_spec.n_layers:
                tokens = self._device_kv.get(sid, 0)
            else:
                entry = self._kv_cache.peek(sid)  # None if it did not fit
                tokens = entry.tokens if entry is not None else 0
            if tokens > 0:
                cached = min(tokens, self._requests[j].context_tokens)
                action = tier_index << 1
                gain = self._outcome(j, action, cached).reward - self._outcome(j, action, 0).reward
                self._credit[sid] = gain
                owed -= gain
        return -owed

    def _update_cache(self, sid: int, tier_index: int, keep: int, req: Request) -> None:
        """Apply the cache action.

        The session's KV holds :func:`~offload_rl.device_view.kept_kv_tokens` positions.
        """
        L = self.feature_spec.n_layers
        self._memory.remember(req)
        tokens = kept_kv_tokens(req.context_tokens, req.new_tokens, req.output_tokens)
        self._device_kv.pop(sid, None)
        if not keep or tier_index == L + 1:
            self._kv_cache.drop(sid)
        elif tier_index == L:
            self._kv_cache.drop(sid)
            self._device_kv[sid] = tokens
        else:
            nbytes = self.tiers.edge.edge_kv_bytes(tier_index, tokens)
            self._kv_cache.store(sid, tier_index, tokens, nbytes)


SplitCacheEnv.__doc__ = (SplitCacheEnv.__doc__ or "").replace(
    "{observation_table}", observation_table(indent="    ").lstrip()
)
