"""Who places a replayed request when the policy is not forced: a heuristic or the service.

With ``--policy URL`` the device asks the decision service through :mod:`serving.client`
(which falls back to the local greedy heuristic); with a heuristic name it decides locally.
Either way the decider sees a :class:`~offload_rl.features.DecisionState` built from what the
device knows (:func:`_decision_state`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    from offload_rl.heuristics import feature_spec, make_heuristic, scenario_tiers

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
    spec = feature_spec(scenario, scenario_tiers(scenario).n_layers)

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


def _decision_state(
    req: ReplayRequest,
    trace: Trace,
    trace_t: float,
    cached: tuple[int | None, int],
    rtt_ms: float,
    n_layers: int,
    last: dict[int, tuple[float, int]],
) -> Any:
    """What the device knows when it places ``req`` (its own throughput samples, 1 s each)."""
    from offload_rl.features import DecisionState

    end = math.floor(trace_t)
    samples = [trace.mean_mbps(end - (8 - i), end - (7 - i)) for i in range(8)]
    prev = last.get(req.session)
    return DecisionState(
        throughput_mbps=samples,
        rtt_ms=rtt_ms,
        new_tokens=req.new_tokens,
        context_tokens=req.context_tokens,
        turn=req.turn,
        private=False,
        slo_ttft_s=1.0,
        slo_tpot_s=0.1,
        cached_split=cached[0],
        cached_tokens=min(cached[1], req.context_tokens),
        edge_kv_occupancy=0.0,
        edge_load=0.0,
        device_memory_layers=n_layers,
        prev_output_tokens=prev[1] if prev else 0,
        since_last_turn_s=req.arrival_s - prev[0] if prev else 0.0,
    )
