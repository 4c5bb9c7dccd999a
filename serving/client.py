"""Client for edge runtimes: ask the decision service, decide locally when it cannot answer.

A device must place every request, service or not. :class:`DecisionClient` asks
``POST /v1/decide`` (:meth:`~DecisionClient.decide`, a :class:`DecisionState`) or
``POST /v2/decide`` (:meth:`~DecisionClient.decide_device`, a :class:`DeviceState`: what the
device itself knows; the service has the edge's state from the edge runtime) with a short
timeout and falls back to a local heuristic (the same greedy one the service falls back to)
when the service is down, slow, answers an error, or answers something that is not a valid
action under the device's own mask. Every result says which answered (``source``). After a
failure the service is skipped for ``retry_after_s``, so a dead service costs one timeout, not
one per request.

With a device-lite model in the scenario (``lite:``) the default fallback is ``lite-on-outage``:
when neither the service nor the link answers, the small model on the device does, and the
decision says so (``lite`` and a ``reason`` naming it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np

from offload_rl.actions import ActionLayout
from offload_rl.cost_model import tier_of
from offload_rl.features import (
    STATE_FIELDS,
    DecisionState,
    FeatureSpec,
    RequestFacts,
    action_mask,
)
from offload_rl.heuristics import LITE_ON_OUTAGE, Policy, make_heuristic
from offload_rl.scenario import Scenario, load_scenario
from offload_rl.scenario_facts import scenario_facts
from serving.edge_state.mapping import prior_load

Source = Literal["service", "fallback"]


@dataclass(frozen=True, slots=True)
class ClientDecision:
    """What the runtime does with one request, and who decided it."""

    action: int
    meaning: str
    tier: str
    split: int
    keep: bool
    source: Source  # "service": the service answered; "fallback": the local heuristic did
    policy_version: str
    service_fallback: bool = False  # the service answered, but with its own fallback
    reason: str = ""  # why the local fallback answered
    edge_state: str = ""  # v2 (or v1 with the service's edge adapter on): fresh|stale|missing
    lite: bool = False  # the device-lite model answers (tier "lite"), not the main model


_FLOAT_FIELDS = ("rtt_ms", "slo_ttft_s", "slo_tpot_s", "edge_kv_occupancy", "edge_load")
_INT_FIELDS = (
    "new_tokens",
    "context_tokens",
    "turn",
    "cached_tokens",
    "device_memory_layers",
    "prev_output_tokens",
)


def state_to_json(state: DecisionState) -> dict[str, Any]:
    """The request body of a state, plain JSON types (numpy scalars converted). Non-finite
    numbers stay as they are: the service rejects them and the local fallback answers."""
    body: dict[str, Any] = {
        "throughput_mbps": [float(x) for x in state.throughput_mbps],
        "private": bool(state.private),
        "cached_split": None if state.cached_split is None else int(state.cached_split),
        "since_last_turn_s": float(state.since_last_turn_s),
    }
    for name in _FLOAT_FIELDS:
        body[name] = float(getattr(state, name))
    for name in _INT_FIELDS:
        body[name] = int(getattr(state, name))
    missing = {f.name for f in dataclasses.fields(state)} - set(body)
    assert not missing, f"state_to_json does not know {missing}"
    return body


@dataclass(slots=True)
class DeviceState(RequestFacts):
    """What a device knows when one request must be placed: the body of ``POST /v2/decide``
    (:class:`serving.schemas_v2.DeviceDecisionRequest`): the link, request and session facts
    it shares with :class:`DecisionState` (:class:`~offload_rl.features.RequestFacts`, one
    definition), then its own. The edge's state is not here: the service has it from the edge
    runtime. ``edge_kv_occupancy`` / ``edge_load``: what the device last heard of the edge,
    if anything (used when the service has no fresh state, and by the local fallback)."""

    device_memory_layers: int
    prev_output_tokens: int = 0
    since_last_turn_s: float = 0.0
    throughput_age_s: float = 0.0
    thermal_level: str = "nominal"  # nominal | fair | serious | critical
    radio_state: str = "idle"  # idle | promotion | connected | tail
    device_class: str = "flagship"  # flagship | mid-range | budget
    session_id: str | None = None
    edge_kv_occupancy: float | None = None
    edge_load: float | None = None

    def decision_state(self, prior_load: float) -> DecisionState:
        """The single-device state the local fallback reads (the edge as last heard, else an
        empty cache at ``prior_load``)."""
        return DecisionState(
            **{f: getattr(self, f) for f in STATE_FIELDS if f not in _EDGE_FIELDS},
            edge_kv_occupancy=self.edge_kv_occupancy or 0.0,
            edge_load=prior_load if self.edge_load is None else self.edge_load,
        )


_EDGE_FIELDS = ("edge_kv_occupancy", "edge_load")


def device_state_to_json(state: DeviceState) -> dict[str, Any]:
    """The ``/v2/decide`` body of a state, plain JSON types (numpy scalars converted)."""
    body: dict[str, Any] = {}
    for f in dataclasses.fields(state):
        v = getattr(state, f.name)
        if f.name == "throughput_mbps":
            v = [float(x) for x in v]
        elif isinstance(v, bool | str) or v is None:
            pass
        elif f.name in _INT_FIELDS or f.name in ("cached_split", "device_memory_layers"):
            v = int(v)
        else:
            v = float(v)
        body[f.name] = v
    return body


class DecisionClient:
    """Synchronous client with a local fallback.

    ``fallback``: a heuristic name or a ready policy (default: ``lite-on-outage`` when the
    scenario has a device-lite model, else ``greedy``); ``scenario``: the scenario the device
    runs (fixes the mask and the heuristic's cost model).
    """

    def __init__(
        self,
        url: str,
        timeout: float = 0.25,
        token: str | None = None,
        fallback: str | Policy | None = None,
        scenario: str | Scenario = "default",
        retry_after_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        sc = load_scenario(scenario) if isinstance(scenario, str) else scenario
        facts = scenario_facts(sc)
        self.spec: FeatureSpec = facts.spec
        self.prior_load = prior_load(sc)  # the fallback's edge load when none was heard
        self.layout: ActionLayout = self.spec.layout
        if fallback is None:
            fallback = LITE_ON_OUTAGE if facts.has_lite else "greedy"
        self.fallback: Policy = (
            make_heuristic(fallback, sc) if isinstance(fallback, str) else fallback
        )
        self.retry_after_s = retry_after_s
        self._skip_until = 0.0
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            headers=headers,
            transport=transport,
        )
        self.stats = {"service": 0, "fallback": 0}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DecisionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decide(self, state: DecisionState) -> ClientDecision:
        """``POST /v1/decide`` (the device reports the edge as it heard it)."""
        return self._ask("/v1/decide", state, lambda: state_to_json(state))

    def decide_device(self, state: DeviceState) -> ClientDecision:
        """``POST /v2/decide``: the device's own facts; the service knows the edge."""
        fallback_state = state.decision_state(self.prior_load)
        return self._ask("/v2/decide", fallback_state, lambda: device_state_to_json(state))

    def _ask(
        self, path: str, state: DecisionState, body: Callable[[], dict[str, Any]]
    ) -> ClientDecision:
        mask = action_mask(state, self.spec)
        now = time.monotonic()
        if now < self._skip_until:
            return self._local(state, mask, "service skipped after a recent failure")
        try:
            payload = json.dumps(body(), allow_nan=False).encode()
        except (TypeError, ValueError, OverflowError):  # NaN, inf, a non-number
            return self._local(state, mask, "state has non-finite or non-numeric values")
        try:
            response = self._http.post(
                path, content=payload, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException:
            return self._failed(state, mask, "service timed out")
        except (httpx.HTTPError, ValueError) as err:
            return self._failed(state, mask, f"service unreachable ({type(err).__name__})")
        if response.status_code != 200:
            return self._failed(state, mask, f"service answered HTTP {response.status_code}")
        try:
            answer = response.json()
            action = int(answer["action"])
            version = str(answer.get("policy_version", ""))
            service_fallback = bool(answer.get("fallback", False))
            edge_state = str(answer.get("edge_state", ""))
        except (ValueError, KeyError, TypeError):
            return self._failed(state, mask, "service answered something unreadable")
        if not (0 <= action < self.layout.n_actions and mask[action]):
            return self._failed(state, mask, f"service chose action {action}, invalid here")
        self.stats["service"] += 1
        decision = self._decision(action, "service", version, service_fallback=service_fallback)
        return dataclasses.replace(decision, edge_state=edge_state) if edge_state else decision

    def _failed(self, state: DecisionState, mask: np.ndarray, reason: str) -> ClientDecision:
        self._skip_until = time.monotonic() + self.retry_after_s
        return self._local(state, mask, reason)

    def _local(self, state: DecisionState, mask: np.ndarray, reason: str) -> ClientDecision:
        a = int(self.fallback.act(state, mask))
        if not (0 <= a < len(mask) and mask[a]):
            a = self.layout.nearest_valid(a, mask)
        self.stats["fallback"] += 1
        if (a >> 1) == self.layout.lite_index:
            reason += "; the device-lite model answers"
        return self._decision(a, "fallback", f"local:{self.fallback.name}", reason=reason)

    def _decision(
        self,
        action: int,
        source: Source,
        version: str,
        service_fallback: bool = False,
        reason: str = "",
    ) -> ClientDecision:
        tier_index, keep = self.layout.decode(action)
        L = self.spec.n_layers
        return ClientDecision(
            action=action,
            meaning=self.layout.meaning(action),
            tier=tier_of(tier_index, L),
            split=tier_index if tier_index <= L else 0,
            keep=bool(keep),
            source=source,
            policy_version=version,
            service_fallback=service_fallback,
            reason=reason,
            lite=tier_index == self.layout.lite_index,
        )
