"""What a scenario resolves to: the one place its derived facts are computed.

A :class:`~offload_rl.scenario.Scenario` is configuration. Everything that is *derived* from it
(compiled profiles, the feature spec, token scaling, the reward rule, link constants, what a
planner may assume about the workload) is computed here once, by :func:`scenario_facts`, and
read from the resulting :class:`ScenarioFacts` by the environment, the heuristics, export and
the decision service. Two copies of such a rule drift apart silently (the heuristics and the
environment once each compiled their own profiles and feature spec); one object cannot.

:class:`ScenarioFacts` needs no traces, so the decision service and the heuristics build it
cheaply; :class:`ResolvedScenario` adds the loaded traces the environment runs on.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from offload_rl.actions import ActionLayout
from offload_rl.compiled_profile import CompiledProfile
from offload_rl.cost_model import EnergyModel, LinkModel, Tiers
from offload_rl.errors import ConfigError, OffloadRLError
from offload_rl.features import FeatureSpec
from offload_rl.profiles import Profile, load_profile
from offload_rl.reward import RewardRule
from offload_rl.scenario import SYNTHETIC_PREFIX, Scenario
from offload_rl.traces import Trace, load_traces
from offload_rl.workloads import (
    PARAMS_SUFFIXES,
    SYNTHETIC_NAMES,
    GeometricMixtureTurns,
    PmfTurns,
    TokenScaling,
    Workload,
    WorkloadParams,
    default_correlated_params,
    default_workload_params,
    load_field_mapping,
    load_workload,
    load_workload_params,
)

OUTPUT_MEAN_SAMPLES = 20_000  # draws behind the planners' mean output length (fixed seed 0)


@dataclass(frozen=True)
class ScenarioFacts:
    """A scenario's derived facts, without its traces (see the module docstring)."""

    scenario: Scenario
    tiers: Tiers
    spec: FeatureSpec
    token_scaling: TokenScaling
    energy: EnergyModel
    reward_rule: RewardRule
    rtt_edge_s: float
    rtt_cloud_extra_s: float
    backhaul_bytes_per_s: float
    slo_targets: tuple[tuple[float, float], ...]  # (ttft_s, tpot_s) per SLO class
    slo_shares: tuple[float, ...]
    device_memory_layers: int  # layers the device holds without memory pressure
    workload_params: WorkloadParams  # what a planner may assume about the requests
    mean_output_tokens: float  # after token scaling and the output cap
    continuation: np.ndarray  # P(another turn | the session reached 0-based turn t)
    # (main model, lite model) benchmark scores; None without a device-lite model
    quality_scores: tuple[float, float] | None = None

    @property
    def n_layers(self) -> int:
        return self.tiers.n_layers

    @property
    def has_lite(self) -> bool:
        """Whether the scenario has a device-lite model (tier ``L + 2``)."""
        return self.tiers.lite is not None

    @property
    def layout(self) -> ActionLayout:
        return ActionLayout(self.n_layers, lite=self.has_lite)

    def quality_of(self, tier_index: int) -> float:
        """Benchmark score of the model that answers at ``tier_index`` (lite scenarios only)."""
        if self.quality_scores is None:
            raise ValueError("quality scores exist only with a device-lite model")
        main, lite = self.quality_scores
        return lite if tier_index == self.n_layers + 2 else main

    def workload(self) -> Workload:
        """The scenario's request source, with its token scaling (and field mapping)."""
        wl = self.scenario.workload
        named = wl.source in SYNTHETIC_NAMES
        source = wl.source if named else str(self.scenario.resolve_path(wl.source))
        mapping = wl.mapping
        if isinstance(mapping, str):
            try:
                mapping = load_field_mapping(self.scenario.resolve_path(mapping))
            except ConfigError as err:
                raise ConfigError(f"workload.mapping: {err}") from None
        return load_workload(source, self.token_scaling, mapping)

    def link(self, uplink: Trace, downlink: Trace) -> LinkModel:
        """The radio link over these traces, with the scenario's RTTs and backhaul."""
        return LinkModel(
            uplink=uplink,
            downlink=downlink,
            rtt_edge_s=self.rtt_edge_s,
            rtt_cloud_extra_s=self.rtt_cloud_extra_s,
            backhaul_bytes_per_s=self.backhaul_bytes_per_s,
        )


@dataclass(frozen=True)
class ResolvedScenario:
    """A scenario with its facts and its traces loaded: what the environment runs."""

    facts: ScenarioFacts
    uplinks: list[Trace]
    downlinks: list[Trace]

    @property
    def scenario(self) -> Scenario:
        return self.facts.scenario

    @property
    def tiers(self) -> Tiers:
        return self.facts.tiers

    @property
    def spec(self) -> FeatureSpec:
        return self.facts.spec

    @property
    def n_layers(self) -> int:
        return self.facts.n_layers


# --------------------------------------------------------------------------------------------
# Building the facts
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _profile(ref: str) -> Profile:
    return load_profile(ref)


@functools.lru_cache(maxsize=16)
def _compiled(ref: str) -> CompiledProfile:
    return CompiledProfile.from_profile(_profile(ref))


def memory_layers_for(facts: ScenarioFacts, budget_bytes: float | None) -> int:
    """Decoder layers a device that can give the model ``budget_bytes`` holds, in the unit of
    ``device_memory_layers`` (``L``: the whole model, so full-local runs are allowed), capped by
    the scenario's ``device.memory_layers``; None: no budget of its own (the scenario's value).

    The rule the cell scenario's device comment states: the device profile's embedding
    weights, then per decoder layer its weights and its KV at the workload's context cap; the
    whole model also needs the LM head."""
    L, cap, scenario = facts.n_layers, facts.device_memory_layers, facts.scenario
    if budget_bytes is None:
        return cap
    ref = scenario.profiles.device
    path = scenario.resolve_path(ref)
    profile = _profile(str(path) if path.suffix == ".json" else ref)
    context = scenario.workload.max_context_tokens
    need = float(profile.embedding.weight_bytes)
    held = 0
    for layer in profile.layers:
        need += layer.weight_bytes + layer.kv_bytes(context)
        if need > budget_bytes:
            break
        held += 1
    if held == L and need + profile.head.weight_bytes > budget_bytes:
        held = L - 1
    return min(held, cap)


def scenario_tiers(scenario: Scenario) -> Tiers:
    """Compiled profiles of the scenario's three tiers; errors name the ``profiles`` key."""
    compiled = {}
    for tier in ("device", "edge", "cloud"):
        ref = getattr(scenario.profiles, tier)
        path = scenario.resolve_path(ref)
        try:
            compiled[tier] = _compiled(str(path) if path.suffix == ".json" else ref)
        except OffloadRLError as err:
            raise ConfigError(f"profiles.{tier}: {err}") from None
    n = {tier: c.n_layers for tier, c in compiled.items()}
    if len(set(n.values())) != 1:
        raise ConfigError(f"profiles: the tiers disagree on the number of layers: {n}")
    lite = None
    if scenario.lite is not None:
        ref = scenario.lite.profile
        path = scenario.resolve_path(ref)
        try:
            lite = _compiled(str(path) if path.suffix == ".json" else ref)
        except OffloadRLError as err:
            raise ConfigError(f"lite.profile: {err}") from None
    return Tiers(
        device=compiled["device"], edge=compiled["edge"], cloud=compiled["cloud"], lite=lite
    )


def lite_memory_layers(tiers: Tiers) -> int:
    """The device memory the lite model needs, counted in main-model decoder layers (the unit
    of ``device_memory_layers``): the fewest layers whose weights hold the lite model's decoder
    weights; 0 without a lite model. The lite tier is valid when the device holds that many."""
    if tiers.lite is None:
        return 0
    need = tiers.lite.weight_bytes[-1]
    main = tiers.device.weight_bytes
    for k in range(1, tiers.n_layers + 1):
        if main[k] >= need:
            return k
    raise ConfigError(
        f"lite.profile: the lite model's weights ({need / 1e9:.2f} GB) exceed the main "
        f"model's ({main[-1] / 1e9:.2f} GB): a device-lite model must be the smaller one"
    )


def planner_workload_params(scenario: Scenario) -> WorkloadParams:
    """Workload parameters a planner may assume: the scenario's parameter file, else the
    embedded default (recorded files are not re-fitted here: the default is fitted to them)."""
    src = scenario.workload.source
    if src == "default-correlated":
        return default_correlated_params()
    if src not in SYNTHETIC_NAMES:
        path = scenario.resolve_path(src)
        if path.suffix.lower() in PARAMS_SUFFIXES and path.is_file():
            return load_workload_params(path)
    return default_workload_params()


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


def _mean_output_tokens(params: WorkloadParams, scaling: TokenScaling) -> float:
    """Mean output length after scaling and the cap (fixed seed: the same number every time)."""
    rng = np.random.default_rng(0)
    out = params.output_tokens.sample(rng, OUTPUT_MEAN_SAMPLES) * scaling.scale
    return float(np.clip(np.rint(out), 1, scaling.max_output_tokens).mean())


_FACTS_CACHE: dict[tuple[str, str | None], ScenarioFacts] = {}
_FACTS_CACHE_SIZE = 32


def scenario_facts(scenario: Scenario) -> ScenarioFacts:
    """The facts of ``scenario``, cached on its JSON and folder (a Scenario holds lists and is
    not hashable): a process resolves the same scenario once."""
    key = (scenario.model_dump_json(), scenario.base_dir)
    facts = _FACTS_CACHE.get(key)
    if facts is None:
        facts = _build_facts(scenario)
        if len(_FACTS_CACHE) >= _FACTS_CACHE_SIZE:
            _FACTS_CACHE.pop(next(iter(_FACTS_CACHE)))
        _FACTS_CACHE[key] = facts
    return facts


def policy_feature_spec(scenario: Scenario) -> FeatureSpec:
    """The encoding a policy for this scenario sees: EdgeCell-v0's (``cell=True``, as the
    environment builds it) for a scenario with a ``cell:`` section, else SplitCache-v0's."""
    spec = scenario_facts(scenario).spec
    return dataclasses.replace(spec, cell=True) if scenario.cell is not None else spec


def _build_facts(scenario: Scenario) -> ScenarioFacts:
    tiers = scenario_tiers(scenario)
    L = tiers.n_layers
    net, wl, dev = scenario.network, scenario.workload, scenario.device
    if wl.k_priv > L:
        raise ConfigError(f"workload.k_priv: {wl.k_priv} exceeds the model's {L} layers")
    scaling = TokenScaling(
        scale=wl.token_scale,
        max_context_tokens=wl.max_context_tokens,
        max_new_tokens=wl.max_new_tokens,
        max_output_tokens=wl.max_output_tokens,
    )
    params = planner_workload_params(scenario)
    w = scenario.reward
    lite = scenario.lite
    return ScenarioFacts(
        scenario=scenario,
        tiers=tiers,
        spec=FeatureSpec(
            n_layers=L,
            history=net.throughput_history,
            k_priv=wl.k_priv,
            outage_mbps=net.outage_mbps,
            lite_memory_layers=lite_memory_layers(tiers),
        ),
        token_scaling=scaling,
        energy=dev.energy_model(),
        reward_rule=RewardRule(
            w_latency=w.w_latency,
            w_energy=w.w_energy,
            w_slo=w.w_slo,
            w_cost=w.w_cost,
            usd_per_edge_s=scenario.edge.usd_per_hour / 3600.0,
            usd_per_cloud_s=scenario.cloud.usd_per_hour / 3600.0,
            w_quality=lite.w_quality if lite else 0.0,
            quality_gap=lite.main_quality - lite.quality if lite else 0.0,
        ),
        rtt_edge_s=net.rtt_edge_ms / 1000.0,
        rtt_cloud_extra_s=net.rtt_cloud_extra_ms / 1000.0,
        backhaul_bytes_per_s=net.backhaul_gbps * 1e9 / 8.0,
        slo_targets=tuple((c.ttft_s, c.tpot_s) for c in wl.slo_classes),
        slo_shares=tuple(c.share for c in wl.slo_classes),
        device_memory_layers=L if dev.memory_layers is None else min(dev.memory_layers, L),
        workload_params=params,
        mean_output_tokens=_mean_output_tokens(params, scaling),
        continuation=continuation_probability(params),
        quality_scores=(lite.main_quality, lite.quality) if lite else None,
    )


# --------------------------------------------------------------------------------------------
# Traces: what only the environment needs
# --------------------------------------------------------------------------------------------


def load_scenario_traces(
    scenario: Scenario, first_seed: int | None = None
) -> tuple[list[Trace], list[Trace]]:
    """Uplink and downlink traces (same order) of the sources a scenario names.

    Synthetic presets draw seeds ``first_seed ..`` (default: the scenario's
    ``network.synthetic_first_seed``, 0 unless set): a tuning script or a training run draws
    its training traces from seeds the evaluation (seeds from 0) never sees."""
    from offload_rl.synthetic_traces import generate_trace

    net = scenario.network
    if first_seed is None:
        first_seed = net.synthetic_first_seed
    uplinks: list[Trace] = []
    downlinks: list[Trace] = []
    for i, entry in enumerate(net.sources()):
        if entry.source.startswith(SYNTHETIC_PREFIX):
            preset = entry.source[len(SYNTHETIC_PREFIX) :]
            try:
                traces = [
                    generate_trace(preset, net.synthetic_duration_s, seed=seed)
                    for seed in range(first_seed, first_seed + net.synthetic_traces)
                ]
            except OffloadRLError as err:
                raise ConfigError(f"network.traces.{i}: {err}") from None
        else:
            path = scenario.resolve_path(entry.source)
            if not path.exists():
                raise ConfigError(f"network.traces.{i}: {path} does not exist")
            traces = load_traces([path], fmt=net.trace_format)
        for t in traces:
            uplinks.append(t.scaled(entry.uplink_scale) if entry.uplink_scale != 1.0 else t)
            downlinks.append(t.scaled(entry.downlink_scale) if entry.downlink_scale != 1.0 else t)
    return uplinks, downlinks


def resolve_scenario(scenario: Scenario) -> ResolvedScenario:
    """The scenario's facts and traces; errors name the key that pointed at what failed."""
    facts = scenario_facts(scenario)
    uplinks, downlinks = load_scenario_traces(scenario)
    return ResolvedScenario(facts=facts, uplinks=uplinks, downlinks=downlinks)
