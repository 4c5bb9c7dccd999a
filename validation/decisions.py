"""Who places a replayed request when the policy is not forced: a heuristic or the service.

With ``--policy URL`` the device asks the decision service through :mod:`serving.client`
(which falls back to the local greedy heuristic); with a heuristic name it decides locally.
Either way the decider sees a :class:`~offload_rl.features.DecisionState` built from what the
device knows (:func:`device_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from offload_rl.device_view import SessionMemory, decision_state, latest_period, measured_throughput
from offload_rl.features import DecisionState
from offload_rl.scenario_facts import ScenarioFacts
from offload_rl.traces import Trace
from validation.config import ValidationConfig
from validation.request_stream import ReplayRequest

Decide = Callable[[Any], tuple[int, str]]


def validation_scenario(profile_path: Path, traces: Sequence[str], rtt_ms: float) -> Any:
    """A scenario of this validation (the decision client needs one for its mask)."""
    from offload_rl.scenario import NetworkConfig, ProfilesConfig, Scenario

    ref = str(profile_path.resolve())
    synthetic = [t.split("*", 1)[0] for t in traces if t.startswith("synthetic:")]
    return Scenario(
        name="validation",
        profiles=ProfilesConfig(device=ref, edge=ref, cloud=ref),
        network=NetworkConfig(traces=synthetic or ["synthetic:ghent-4g-lte"], rtt_edge_ms=rtt_ms),
    )


def decider(cfg: ValidationConfig, scenario: Any) -> tuple[Decide, str]:
    """A function DecisionState -> (action, source), and a description of it."""
    from offload_rl.features import action_mask
    from offload_rl.heuristics import make_heuristic
    from offload_rl.scenario_facts import scenario_facts

    policy = cfg.policy
    note = ""
    if policy.startswith(("http://", "https://")):
        client = _decision_client(policy, cfg.service_timeout_s, scenario)
        if client is not None:

            def ask(state: Any) -> tuple[int, str]:
                decision = client.decide(state)
                return decision.action, decision.source

            return ask, f"decision service {policy} (its client falls back to local greedy)"
        policy = "greedy"
        note = " (serving.client is not importable: no service asked)"
    heuristic = make_heuristic(policy, scenario)
    spec = scenario_facts(scenario).spec

    def local(state: Any) -> tuple[int, str]:
        return int(heuristic.act(state, action_mask(state, spec))), f"local:{heuristic.name}"

    return local, f"local heuristic {heuristic.name}{note}"


def _decision_client(url: str, timeout_s: float, scenario: Any) -> Any | None:
    """The decision service's client, or None where ``serving`` is not installed (the switch:
    the device then decides with the same greedy heuristic the client falls back to)."""
    try:
        from serving.client import DecisionClient
    except ImportError:
        return None
    return DecisionClient(url, timeout=timeout_s, scenario=scenario)


def forced_split(seed: int, session: int, splits: Sequence[int]) -> int:
    """The cell validation's forced placement of a session's turns: one split of ``splits``,
    drawn per session from a generator seeded with the run's seed and the session (a rerun
    draws the same; every turn of a session at one split, so kept entries are reused)."""
    rng = np.random.default_rng([seed, session, 29])
    return int(splits[int(rng.integers(len(splits)))])


# The validation edge runs nothing but the replayed device's requests: it reports an empty
# KV memory and no load from other users.
EDGE_KV_OCCUPANCY = 0.0
EDGE_LOAD = 0.0


def device_state(
    req: ReplayRequest,
    trace: Trace,
    trace_t: float,
    cached: tuple[int | None, int],
    facts: ScenarioFacts,
    memory: SessionMemory,
    *,
    private: bool = False,
    device_memory_layers: int | None = None,
) -> DecisionState:
    """What the device knows when it places ``req``: the shared converter
    (:func:`offload_rl.device_view.decision_state`) fed with its own throughput samples on the
    trace's clock, the scenario's first SLO class and an unloaded edge (a service with the
    edge's pushed state replaces the edge's part). The cell validation's devices hold no
    layer (``device_memory_layers = 0``)."""
    net = facts.scenario.network
    H, period = facts.spec.history, net.throughput_sample_s
    samples = measured_throughput(trace, 0.0, latest_period(trace_t, period) - H, H, period)
    return decision_state(
        req,
        throughput_mbps=samples.tolist(),
        rtt_ms=net.rtt_edge_ms,
        private=private,
        slo=facts.slo_targets[0],
        cached=cached,
        edge_kv_occupancy=EDGE_KV_OCCUPANCY,
        edge_load=EDGE_LOAD,
        device_memory_layers=(
            facts.device_memory_layers if device_memory_layers is None else device_memory_layers
        ),
        memory=memory,
    )
