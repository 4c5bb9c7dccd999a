"""Classic placement heuristics: the baselines every learned agent is compared with.

numpy-only on purpose: the decision service imports this module as its fallback when no ONNX
policy is loaded, so it must never pull in torch, gymnasium or stable-baselines3.

A heuristic sees exactly what a deployed policy sees — a :class:`DecisionState` and the action
mask — and returns a *valid* joint action (:mod:`offload_rl.actions`). Names compose a base
policy, an optional throughput estimator (``greedy`` only) and an optional cache rule::

    local | edge | cloud | random | greedy
    greedy-hmean, greedy-ewma-always, greedy-last-likely, local-always, edge-never, ...

Cache rules (what the ``keep`` half of the action is):

* ``never``  — drop the session's KV after every request;
* ``always`` — keep it (the edge memory is LRU, so old sessions fall out on their own);
* ``likely`` — keep it iff the session is more likely than not to have another turn:
  ``P(N > t + 1 | N >= t + 1) >= 1/2`` at 0-based turn ``t``, with ``N`` (turns per session)
  from the workload's fitted turns distribution (``workloads.py`` default parameters, or the
  scenario's parameter file). With the embedded default (a mixture of geometrics fitted to
  BurstGPT) that probability is 0.62 at the first turn and grows with every turn, so ``likely``
  keeps as ``always`` does; with a workload of mostly single-turn sessions (Mooncake: mean 1.63
  turns) it drops first turns. Why not also ask whether the entry survives the LRU until the
  session returns: an evaluation of that variant kept only 17% of entries and lost reward
  against ``always`` on every trace family, because keeping evicts only the least recently
  used entry, whose own chance of a hit is about as low.

Default cache rule of ``local``, ``edge`` and ``greedy``: :data:`DEFAULT_CACHE_RULE`, the same
for all of them so that comparisons isolate the placement. ``cloud`` is stateless (always
drops) and ``random`` draws the cache choice with the placement.

Plain ``greedy`` is ``greedy-ewma-always``. Over the six recorded trace families (default
scenario, 8 episodes each) ``ewma`` and ``last`` tied at a mean reward of -0.341 ahead of
``hmean`` at -0.352 (the harmonic mean under-estimates a fluctuating link, so it runs locally
or in the cloud more often than it should), and ``always`` beat ``never`` by 0.05.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from offload_rl.actions import DROP, KEEP, ActionLayout
from offload_rl.compiled_profile import CompiledProfile
from offload_rl.cost_model import EnergyModel, LinkModel, Tiers, request_cost
from offload_rl.errors import ConfigError
from offload_rl.features import DecisionState, FeatureSpec
from offload_rl.profiles import load_profile
from offload_rl.scenario import Scenario
from offload_rl.traces import Trace
from offload_rl.workloads import (
    PARAMS_SUFFIXES,
    GeometricMixtureTurns,
    PmfTurns,
    WorkloadParams,
    default_workload_params,
    load_workload_params,
)

ESTIMATORS: tuple[str, ...] = ("last", "hmean", "ewma")
CACHE_RULES: tuple[str, ...] = ("never", "always", "likely")
BASE_POLICIES: tuple[str, ...] = ("local", "edge", "cloud", "random", "greedy")

DEFAULT_ESTIMATOR = "ewma"
DEFAULT_CACHE_RULE = "always"

EWMA_ALPHA = 0.3  # weight of the newest sample (half-life ~2 samples of 1 s)
LIKELY_THRESHOLD = 0.5
MIN_ESTIMATE_MBPS = 1e-3  # a zero estimate would make a transfer never finish


def _all_names() -> tuple[str, ...]:
    names: list[str] = list(BASE_POLICIES)
    names += [f"greedy-{e}" for e in ESTIMATORS]
    names += [f"greedy-{c}" for c in CACHE_RULES]
    names += [f"greedy-{e}-{c}" for e in ESTIMATORS for c in CACHE_RULES]
    names += [f"{b}-{c}" for b in ("local", "edge") for c in CACHE_RULES]
    return tuple(names)


HEURISTIC_NAMES: tuple[str, ...] = _all_names()
"""Every name :func:`make_heuristic` accepts."""


@runtime_checkable
class Policy(Protocol):
    """A deployable policy: decides from the device's state and the mask only."""

    name: str

    def reset(self) -> None:
        """Start of an episode (forget per-episode memory, re-seed)."""
        ...

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        """A joint action that is valid under ``mask``."""
        ...


# --------------------------------------------------------------------------------------------
# Throughput estimators
# --------------------------------------------------------------------------------------------


def estimate_throughput(samples: Sequence[float], estimator: str) -> float:
    """Uplink capacity estimate (Mbps) from recent samples, oldest first (0 when none).

    ``last``: the newest sample; ``hmean``: harmonic mean (dominated by the slow samples, the
    robust choice of FESTIVE/MPC); ``ewma``: exponentially weighted, ``alpha`` =
    :data:`EWMA_ALPHA` on the newest sample.
    """
    values = [max(float(s), 0.0) if s == s else 0.0 for s in samples]  # NaN -> 0
    if not values:
        return 0.0
    if estimator == "last":
        return values[-1]
    if estimator == "hmean":
        inv = sum(1.0 / max(v, MIN_ESTIMATE_MBPS) for v in values)
        return len(values) / inv
    if estimator == "ewma":
        acc = values[0]
        for v in values[1:]:
            acc = EWMA_ALPHA * v + (1.0 - EWMA_ALPHA) * acc
        return acc
    raise ConfigError(f"unknown throughput estimator {estimator!r}; one of {', '.join(ESTIMATORS)}")


# --------------------------------------------------------------------------------------------
# What a heuristic knows about the scenario (profiles and parameters, never traces)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _compiled(ref: str) -> CompiledProfile:
    return CompiledProfile.from_profile(load_profile(ref))


def scenario_tiers(scenario: Scenario) -> Tiers:
    """Compiled profiles of the scenario's three tiers (cached per profile reference)."""
    compiled = {}
    for tier in ("device", "edge", "cloud"):
        ref = getattr(scenario.profiles, tier)
        path = scenario.resolve_path(ref)
        try:
            compiled[tier] = _compiled(str(path) if path.suffix == ".json" else ref)
        except ConfigError as err:
            raise ConfigError(f"profiles.{tier}: {err}") from None
    return Tiers(device=compiled["device"], edge=compiled["edge"], cloud=compiled["cloud"])


def scenario_workload_params(scenario: Scenario) -> WorkloadParams:
    """Workload parameters a heuristic may assume: the scenario's parameter file, else the
    embedded default (recorded files are not re-fitted here: the default is fitted to them)."""
    src = scenario.workload.source
    if src != "default":
        path = scenario.resolve_path(src)
        if path.suffix.lower() in PARAMS_SUFFIXES and path.is_file():
            return load_workload_params(path)
    return default_workload_params()


def feature_spec(scenario: Scenario, n_layers: int) -> FeatureSpec:
    """The scenario's feature spec, without loading traces."""
    return FeatureSpec(
        n_layers=n_layers,
        history=scenario.network.throughput_history,
        k_priv=scenario.workload.k_priv,
        outage_mbps=scenario.network.outage_mbps,
    )


def _turns_pmf(params: WorkloadParams) -> np.ndarray:
    """``pmf[n - 1]`` = P(a session has ``n`` turns)."""
    turns = params.turns
    if isinstance(turns, PmfTurns):
        p = np.asarray(turns.pmf, dtype=float)
        return p / p.sum()
    assert isinstance(turns, GeometricMixtureTurns)
    n = np.arange(1, turns.max_turns + 1, dtype=float)
    w = np.asarray(turns.weights, dtype=float)
    w = w / w.sum()
    pmf = np.zeros(turns.max_turns)
    for wi, mean in zip(w, turns.means, strict=True):
        q = 1.0 / mean
        comp = q * (1.0 - q) ** (n - 1)
        comp[-1] = (1.0 - q) ** (turns.max_turns - 1)  # the cap collects the tail
        pmf += wi * comp
    return pmf / pmf.sum()


def continuation_probability(params: WorkloadParams) -> np.ndarray:
    """``p[t]`` = P(a session that reached turn ``t`` (0-based) has another turn)."""
    pmf = _turns_pmf(params)
    reach = pmf[::-1].cumsum()[::-1]  # P(N >= n), n = 1..
    more = np.append(reach[1:], 0.0)  # P(N >= n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(reach > 0, more / reach, 0.0)
    return p


@dataclass(frozen=True, slots=True)
class _WorkloadFacts:
    """What a heuristic assumes about the requests, from the workload's fitted parameters."""

    mean_output_tokens: float  # after the scenario's token scaling and cap
    continuation: np.ndarray  # P(another turn | reached turn t)


_FACTS: dict[tuple[str, float, int], _WorkloadFacts] = {}


def workload_facts(scenario: Scenario) -> _WorkloadFacts:
    """Output-length mean and continuation probabilities of the scenario's workload (cached)."""
    wl = scenario.workload
    params = scenario_workload_params(scenario)
    key = (params.model_dump_json(), wl.token_scale, wl.max_output_tokens)
    facts = _FACTS.get(key)
    if facts is None:
        rng = np.random.default_rng(0)  # fixed: the same numbers every time
        out = params.output_tokens.sample(rng, 20000) * wl.token_scale
        out = np.clip(np.rint(out), 1, wl.max_output_tokens)
        facts = _WorkloadFacts(float(out.mean()), continuation_probability(params))
        if len(_FACTS) < 16:
            _FACTS[key] = facts
    return facts


# --------------------------------------------------------------------------------------------
# Cache rules
# --------------------------------------------------------------------------------------------


class CacheRule:
    """Decides the ``keep`` half of the action once the placement is chosen."""

    def __init__(self, rule: str, n_layers: int, facts: _WorkloadFacts) -> None:
        if rule not in CACHE_RULES:
            raise ConfigError(f"unknown cache rule {rule!r}; one of {', '.join(CACHE_RULES)}")
        self.rule = rule
        self.n_layers = n_layers
        self._cont = facts.continuation

    def p_another_turn(self, state: DecisionState) -> float:
        """P(the session has another turn), given the turns seen so far."""
        cont = self._cont
        return float(cont[min(max(int(state.turn), 0), len(cont) - 1)])

    def keep(self, state: DecisionState, tier_index: int) -> int:
        if self.rule == "never" or tier_index > self.n_layers:
            return DROP
        if self.rule == "always":
            return KEEP
        return KEEP if self.p_another_turn(state) >= LIKELY_THRESHOLD else DROP


def _valid_tiers(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask[0::2] | mask[1::2])


def _finish(layout: ActionLayout, tier_index: int, keep: int, mask: np.ndarray) -> int:
    """``(tier, keep)`` if valid, else the nearest valid action (never a masked one)."""
    return layout.nearest_valid(layout.encode(tier_index, keep), mask)


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


class FixedPlacementPolicy:
    """Always the same placement (``local``: ``k = L``, ``edge``: ``k = 0``, ``cloud``).

    Where that placement is masked they take :meth:`ActionLayout.nearest_valid`, as the
    environment does with an invalid action: ``local`` under device-memory pressure goes to
    the cloud (index ``L + 1``, next to ``L``), which beat the largest valid split (-0.96 vs
    -1.12 mean reward over the six recorded families: split decoding is round-trip bound).
    """

    def __init__(
        self, name: str, tier_index: int, layout: ActionLayout, cache: CacheRule | None
    ) -> None:
        self.name = name
        self.tier_index = tier_index
        self.layout = layout
        self.cache = cache

    def reset(self) -> None:
        return None

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        keep = self.cache.keep(state, self.tier_index) if self.cache is not None else DROP
        return _finish(self.layout, self.tier_index, keep, mask)


class RandomPolicy:
    """Uniform over the valid joint actions; re-seeded at every episode start, so an episode's
    draws do not depend on which episodes ran before it (or in which worker)."""

    def __init__(self, name: str, layout: ActionLayout, seed: int) -> None:
        self.name = name
        self.layout = layout
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        valid = np.flatnonzero(mask)
        if valid.size == 0:
            return self.layout.nearest_valid(self.layout.n_layers * 2, mask)
        return int(valid[self._rng.integers(valid.size)])


class GreedyPolicy:
    """Neurosurgeon-style: per request, the placement with the best *predicted* reward.

    The prediction runs the environment's own cost model (:func:`request_cost`) on the
    scenario's profiles with what the device knows: a constant link at the estimated uplink
    throughput, the mean edge queue and slowdown at the edge's reported load, the cloud's mean
    queue and slowdown, the output length of the session's previous turn (else the workload's
    mean) and the cached tokens where the placement matches the kept split.
    """

    def __init__(
        self,
        name: str,
        scenario: Scenario,
        estimator: str = DEFAULT_ESTIMATOR,
        cache_rule: str = DEFAULT_CACHE_RULE,
    ) -> None:
        if estimator not in ESTIMATORS:
            raise ConfigError(f"unknown estimator {estimator!r}; one of {', '.join(ESTIMATORS)}")
        self.name = name
        self.estimator = estimator
        self.tiers = scenario_tiers(scenario)
        L = self.tiers.n_layers
        self.layout = ActionLayout(L)
        facts = workload_facts(scenario)
        self.default_output_tokens = max(round(facts.mean_output_tokens), 1)
        self.cache = CacheRule(cache_rule, L, facts)
        net = scenario.network
        self.energy: EnergyModel = scenario.device.energy_model()
        self._rtt_s = net.rtt_edge_ms / 1000.0
        self._rtt_cloud_extra_s = net.rtt_cloud_extra_ms / 1000.0
        self._backhaul = net.backhaul_gbps * 1e9 / 8.0
        load = scenario.edge.load
        self._load_service_s = load.service_s
        self._load_slowdown = load.slowdown
        self._max_util = load.max_util
        self._cloud_queue_s = scenario.cloud.queue_s
        self._cloud_slowdown = scenario.cloud.slowdown
        self._usd_edge = scenario.edge.usd_per_hour / 3600.0
        self._usd_cloud = scenario.cloud.usd_per_hour / 3600.0
        self._reward = scenario.reward
        self._links: dict[float, LinkModel] = {}

    def reset(self) -> None:
        return None

    def _link(self, mbps: float) -> LinkModel:
        """A constant link at ``mbps`` (memoised on 3 significant digits)."""
        key = float(f"{max(mbps, MIN_ESTIMATE_MBPS):.3g}")
        link = self._links.get(key)
        if link is None:
            if len(self._links) > 4096:
                self._links.clear()
            trace = Trace.constant(key, duration_s=1.0, step_s=1.0, name="estimate")
            link = LinkModel(
                uplink=trace,
                downlink=trace,
                rtt_edge_s=self._rtt_s,
                rtt_cloud_extra_s=self._rtt_cloud_extra_s,
                backhaul_bytes_per_s=self._backhaul,
            )
            self._links[key] = link
        return link

    def predicted_output_tokens(self, state: DecisionState) -> int:
        """The previous turn's output length, else the workload's mean."""
        prev = int(state.prev_output_tokens)
        return prev if prev > 0 else self.default_output_tokens

    def predict_rewards(self, state: DecisionState, mask: np.ndarray | None = None) -> np.ndarray:
        """Predicted reward of every placement ``0 .. L+1`` (``-inf`` where ``mask`` forbids)."""
        L = self.tiers.n_layers
        tiers = range(L + 2) if mask is None else _valid_tiers(mask).tolist()
        out = np.full(L + 2, -np.inf)
        link = self._link(estimate_throughput(state.throughput_mbps, self.estimator))
        o = self.predicted_output_tokens(state)
        util = min(max(float(state.edge_load), 0.0), self._max_util)
        edge_queue = self._load_service_s * util / (1.0 - util)
        edge_slowdown = 1.0 + self._load_slowdown * util
        w = self._reward
        n_dec = o - 1
        slo_total = state.slo_ttft_s + max(n_dec, 0) * state.slo_tpot_s
        for t in tiers:
            cached = state.cached_tokens if state.cached_split == t else 0
            cost = request_cost(
                t,
                0.0,
                state.new_tokens,
                state.context_tokens,
                cached,
                o,
                self.tiers,
                link,
                self.energy,
                edge_queue_s=edge_queue,
                edge_slowdown=edge_slowdown,
                cloud_queue_s=self._cloud_queue_s,
                cloud_slowdown=self._cloud_slowdown,
            )
            violated = cost.ttft_s > state.slo_ttft_s or (
                n_dec > 0 and (cost.latency_s - cost.ttft_s) / n_dec > state.slo_tpot_s
            )
            usd = cost.edge_gpu_s * self._usd_edge + cost.cloud_gpu_s * self._usd_cloud
            out[t] = -(
                w.w_latency * cost.latency_s / slo_total
                + w.w_energy * cost.energy_j
                + w.w_slo * (1.0 if violated else 0.0)
                + w.w_cost * usd
            )
        return out

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        valid = _valid_tiers(mask)
        if valid.size == 1:
            best = int(valid[0])
        else:
            best = int(np.argmax(self.predict_rewards(state, mask)))
        return _finish(self.layout, best, self.cache.keep(state, best), mask)


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def parse_heuristic_name(name: str) -> tuple[str, str | None, str | None]:
    """``(base, estimator, cache_rule)`` of a heuristic name; unknown parts are errors."""
    parts = name.strip().lower().split("-")
    base, rest = parts[0], parts[1:]
    if base not in BASE_POLICIES:
        raise ConfigError(
            f"unknown heuristic {name!r}; valid names: {', '.join(BASE_POLICIES)} "
            f"(+ -<estimator> for greedy: {', '.join(ESTIMATORS)}; "
            f"+ -<cache rule> for local/edge/greedy: {', '.join(CACHE_RULES)})"
        )
    estimator: str | None = None
    cache: str | None = None
    if rest and rest[0] in ESTIMATORS:
        if base != "greedy":
            raise ConfigError(f"heuristic {name!r}: only greedy takes a throughput estimator")
        estimator = rest.pop(0)
    if rest and rest[0] in CACHE_RULES:
        if base in ("cloud", "random"):
            why = "the cloud is stateless" if base == "cloud" else "random draws keep/drop too"
            raise ConfigError(f"heuristic {name!r}: {base} takes no cache rule ({why})")
        cache = rest.pop(0)
    if rest:
        raise ConfigError(
            f"heuristic {name!r}: unexpected part {rest[0]!r}; expected an estimator "
            f"({', '.join(ESTIMATORS)}) then a cache rule ({', '.join(CACHE_RULES)})"
        )
    return base, estimator, cache


def make_heuristic(name: str, scenario: Scenario, seed: int = 0) -> Policy:
    """The heuristic called ``name`` (see :data:`HEURISTIC_NAMES`) for ``scenario``."""
    base, estimator, cache = parse_heuristic_name(name)
    canonical = name.strip().lower()
    tiers = scenario_tiers(scenario)
    L = tiers.n_layers
    layout = ActionLayout(L)
    if base == "greedy":
        return GreedyPolicy(
            canonical,
            scenario,
            estimator=estimator or DEFAULT_ESTIMATOR,
            cache_rule=cache or DEFAULT_CACHE_RULE,
        )
    if base == "random":
        return RandomPolicy(canonical, layout, seed)
    if base == "cloud":
        return FixedPlacementPolicy(canonical, layout.cloud_index, layout, None)
    rule = CacheRule(cache or DEFAULT_CACHE_RULE, L, workload_facts(scenario))
    return FixedPlacementPolicy(canonical, L if base == "local" else 0, layout, rule)
