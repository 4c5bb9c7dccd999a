"""Classic placement heuristics: the baselines every learned agent is compared with.

numpy-only on purpose: the decision service imports this module as its fallback when no ONNX
policy is loaded, so it must never pull in torch, gymnasium or stable-baselines3.

A heuristic sees exactly what a deployed policy sees — a :class:`DecisionState` and the action
mask — and returns a *valid* joint action (:mod:`offload_rl.actions`). Names compose a base
policy, an optional throughput estimator (``greedy`` only) and an optional cache rule::

    local | edge | cloud | random | greedy | lite-on-outage
    greedy-hmean, greedy-ewma-always, greedy-last-likely, local-always, edge-never, ...

Cache rules (what the ``keep`` half of the action is):

* ``never``  — drop the session's KV after every request;
* ``always`` — keep it (the edge memory is LRU, so old sessions fall out on their own);
* ``likely`` — keep it iff the session is more likely than not to have another turn:
  ``P(N > t + 1 | N >= t + 1) >= 1/2`` at 0-based turn ``t``, with ``N`` (turns per session)
  from the workload's fitted turns distribution (``offload_rl.workloads`` default parameters, or the
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

With a device-lite model (scenario ``lite:``) the lite tier is one more placement: ``greedy``
prices it like any other (its latency and energy from the lite profile, plus the reward's
quality term) and ``random`` draws it. ``lite-on-outage`` is the fail-safe rule deployments use:
the main model placed by ``greedy``, the lite model when the link is down or when greedy's
predicted latency exceeds the request's SLO by more than :data:`LITE_SLO_FACTOR`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from offload_rl.actions import DROP, KEEP, ActionLayout
from offload_rl.cost_model import LinkModel, RequestCost, request_cost
from offload_rl.errors import ConfigError
from offload_rl.features import DecisionState, FeatureSpec, link_is_out
from offload_rl.reward import score_request
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import scenario_facts
from offload_rl.traces import Trace

ESTIMATORS: tuple[str, ...] = ("last", "hmean", "ewma")
CACHE_RULES: tuple[str, ...] = ("never", "always", "likely")
BASE_POLICIES: tuple[str, ...] = ("local", "edge", "cloud", "random", "greedy")

DEFAULT_ESTIMATOR = "ewma"
DEFAULT_CACHE_RULE = "always"

EWMA_ALPHA = 0.3  # weight of the newest sample (half-life ~2 samples of 1 s)
LIKELY_THRESHOLD = 0.5
MIN_ESTIMATE_MBPS = 1e-3  # a zero estimate would make a transfer never finish
LITE_ON_OUTAGE = "lite-on-outage"
LITE_SLO_FACTOR = 0.3
"""``lite-on-outage`` answers with the lite model when greedy's predicted latency exceeds the
SLO by this factor. Tuned on training traces only (synthetic seeds 1000-1005 of the lite
scenario's presets, disjoint from the seeds 0-5 it is evaluated on; 4 episodes per family of
256 requests) by ``python experiments/fitting/tune_lite_factor.py``: mean reward -0.679 at 0.3,
-0.714 at 0.4, -0.794 at 1, -0.839 at 2, -0.888 without the latency rule, -0.982 at 0.2. Below
1 because the lite model's answer, quality term included, is cheaper than a main-model answer
that takes a good part of its SLO (the phone's energy dominates slow answers)."""


def _all_names() -> tuple[str, ...]:
    names: list[str] = list(BASE_POLICIES)
    names += [f"greedy-{e}" for e in ESTIMATORS]
    names += [f"greedy-{c}" for c in CACHE_RULES]
    names += [f"greedy-{e}-{c}" for e in ESTIMATORS for c in CACHE_RULES]
    names += [f"{b}-{c}" for b in ("local", "edge") for c in CACHE_RULES]
    names.append(LITE_ON_OUTAGE)
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
# Cache rules
# --------------------------------------------------------------------------------------------


class CacheRule:
    """Decides the ``keep`` half of the action once the placement is chosen."""

    def __init__(self, rule: str, n_layers: int, continuation: np.ndarray) -> None:
        if rule not in CACHE_RULES:
            raise ConfigError(f"unknown cache rule {rule!r}; one of {', '.join(CACHE_RULES)}")
        self.rule = rule
        self.n_layers = n_layers
        self._cont = continuation  # P(another turn | reached 0-based turn t)

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
        self.facts = facts = scenario_facts(scenario)
        self.tiers = facts.tiers
        self.layout = facts.layout
        self.default_output_tokens = max(round(facts.mean_output_tokens), 1)
        self.cache = CacheRule(cache_rule, facts.n_layers, facts.continuation)
        self._load = scenario.edge.load
        self._cloud = scenario.cloud
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
            link = self.facts.link(trace, trace)
            self._links[key] = link
        return link

    def link_at(self, mbps: float) -> LinkModel:
        """A constant link at ``mbps``, memoised: the cell heuristics forecast with it too."""
        return self._link(mbps)

    def predicted_output_tokens(self, state: DecisionState) -> int:
        """The previous turn's output length, else the workload's mean."""
        prev = int(state.prev_output_tokens)
        return prev if prev > 0 else self.default_output_tokens

    def predict_rewards(self, state: DecisionState, mask: np.ndarray | None = None) -> np.ndarray:
        """Predicted reward of every placement ``0 .. L+1`` (``.. L+2`` with a lite model;
        ``-inf`` where ``mask`` forbids)."""
        out = np.full(self.layout.n_tiers, -np.inf)
        rule = self.facts.reward_rule
        o = self.predicted_output_tokens(state)
        for t, cost in self.predict_costs(state, mask).items():
            out[t] = score_request(cost, o, state.slo_ttft_s, state.slo_tpot_s, rule).reward
        return out

    def predict_costs(
        self, state: DecisionState, mask: np.ndarray | None = None
    ) -> dict[int, RequestCost]:
        """Predicted cost of every placement ``mask`` allows (every one without a mask)."""
        n_tiers = self.layout.n_tiers
        tiers = range(n_tiers) if mask is None else _valid_tiers(mask).tolist()
        out: dict[int, RequestCost] = {}
        link = self._link(estimate_throughput(state.throughput_mbps, self.estimator))
        o = self.predicted_output_tokens(state)
        load = self._load
        util = min(max(float(state.edge_load), 0.0), load.max_util)
        edge_queue, edge_slowdown = load.mean_queue_s(util), load.slowdown_at(util)
        for t in tiers:
            cached = state.cached_tokens if state.cached_split == t else 0
            out[t] = request_cost(
                t,
                0.0,
                state.new_tokens,
                state.context_tokens,
                cached,
                o,
                self.tiers,
                link,
                self.facts.energy,
                edge_queue_s=edge_queue,
                edge_slowdown=edge_slowdown,
                cloud_queue_s=self._cloud.queue_s,
                cloud_slowdown=self._cloud.slowdown,
            )
        return out

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        valid = _valid_tiers(mask)
        if valid.size == 1:
            best = int(valid[0])
        else:
            best = int(np.argmax(self.predict_rewards(state, mask)))
        return _finish(self.layout, best, self.cache.keep(state, best), mask)


GreedyOnMain = Callable[[np.ndarray], tuple[int, float, int]]
"""A greedy's choice among the main model's placements: (its action, predicted latency in
seconds, predicted output tokens)."""


class LiteOnOutageRule:
    """When ``lite-on-outage`` answers with the lite model instead of its greedy's placement:
    the one home of the rule, for the single-device policy below and the cell's
    (:mod:`offload_rl.cell_heuristics.lite_on_outage`), each with its own greedy."""

    def __init__(self, layout: ActionLayout, spec: FeatureSpec) -> None:
        self.layout = layout
        self.spec = spec
        lite = layout.lite_index
        self.lite_action = layout.encode(lite, DROP) if lite is not None else -1

    def main_mask(self, state: DecisionState, mask: np.ndarray) -> np.ndarray | None:
        """The main model's placements of ``mask`` that greedy may choose from: none while the
        link is down (the mask's outage rule: the lite model answers at once); None where the
        lite tier is not valid (the scenario has none, or the device cannot hold it)."""
        lite = self.layout.lite_index
        if lite is None or not mask[2 * lite]:
            return None
        main = mask.copy()
        main[2 * lite : 2 * lite + 2] = False
        if link_is_out(state, self.spec):
            main[:] = False
        return main

    def act(
        self,
        state: DecisionState,
        mask: np.ndarray,
        factor: float,
        greedy: Callable[[np.ndarray], int],
        greedy_on_main: GreedyOnMain,
    ) -> int:
        """``greedy(mask)`` where the lite tier is not valid; the lite model on an outage, when
        no main-model placement is valid, or when ``greedy_on_main``'s predicted latency
        exceeds ``factor`` x the SLO (``ttft + (o - 1) x tpot``); else greedy's choice."""
        main = self.main_mask(state, mask)
        if main is None:
            return greedy(mask)
        if not main.any():
            return self.lite_action
        action, latency_s, o = greedy_on_main(main)
        slo_total = state.slo_ttft_s + max(o - 1, 0) * state.slo_tpot_s
        return self.lite_action if latency_s > factor * slo_total else action


class LiteOnOutagePolicy(GreedyPolicy):
    """The fail-safe of a deployment with a device-lite model: the main model placed by
    ``greedy``; the lite model when the link is down (the mask's outage rule: newest sample
    below ``outage_mbps``) or when greedy's chosen placement is predicted to take more than
    ``factor`` x the request's SLO (``ttft_slo + (o - 1) * tpot_slo``). Where the lite tier
    is not valid (or the scenario has none) it is ``greedy``. (:class:`LiteOnOutageRule`.)
    """

    def __init__(self, name: str, scenario: Scenario, factor: float = LITE_SLO_FACTOR) -> None:
        super().__init__(name, scenario)
        self.factor = factor
        self.outage_mbps = self.facts.spec.outage_mbps
        self.lite_rule = LiteOnOutageRule(self.layout, self.facts.spec)

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        def greedy(m: np.ndarray) -> int:
            return super(LiteOnOutagePolicy, self).act(state, m)

        def greedy_on_main(main: np.ndarray) -> tuple[int, float, int]:
            costs = self.predict_costs(state, main)
            o = self.predicted_output_tokens(state)
            rule = self.facts.reward_rule
            best, best_reward = -1, -np.inf
            for t, cost in costs.items():
                r = score_request(cost, o, state.slo_ttft_s, state.slo_tpot_s, rule).reward
                if r > best_reward:
                    best, best_reward = t, r
            action = _finish(self.layout, best, self.cache.keep(state, best), main)
            return action, costs[best].latency_s, o

        return self.lite_rule.act(state, mask, self.factor, greedy, greedy_on_main)


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def parse_heuristic_name(name: str) -> tuple[str, str | None, str | None]:
    """``(base, estimator, cache_rule)`` of a heuristic name; unknown parts are errors."""
    if name.strip().lower() == LITE_ON_OUTAGE:
        return LITE_ON_OUTAGE, None, None
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
    facts = scenario_facts(scenario)
    L = facts.n_layers
    layout = facts.layout
    if base == LITE_ON_OUTAGE:
        return LiteOnOutagePolicy(canonical, scenario)
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
    rule = CacheRule(cache or DEFAULT_CACHE_RULE, L, facts.continuation)
    return FixedPlacementPolicy(canonical, L if base == "local" else 0, layout, rule)
