"""Decisions that see the edge: parse a request, join it with the edge view, decide.

An :class:`EdgeDecider` stands where the :class:`~serving.policy_runtime.DecisionRuntime`
stands for the plain v1 path: the micro-batcher (:mod:`serving.batcher`) parks bodies with it,
and its :meth:`parse` turns each into a :class:`~serving.edge_state.observation.Resolved`
(reading the edge view once per request: a reference and a clock read), which
:meth:`decide_many` hands to the runtime in one onnxruntime run when they agree on the edge
status (they do, unless the view turned stale inside the batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from fastapi.exceptions import RequestValidationError

from serving.edge_state.mapping import EdgeDefaults, EdgeView
from serving.edge_state.observation import Resolved, resolve_v1, resolve_v2
from serving.edge_state.store import EdgeStateStore, EdgeStatus
from serving.policy_runtime import Decision, DecisionRuntime
from serving.request_parsing import layer_errors, parse_body
from serving.schemas import DecisionRequest
from serving.schemas_v2 import DeviceDecisionBatchRequest, DeviceDecisionRequest


class EdgeDecider:
    """Decisions for API ``version`` 1 or 2 with the edge view of ``store`` (``None``: no
    adapter; every request then has edge status ``missing``)."""

    def __init__(
        self,
        runtime: DecisionRuntime,
        store: EdgeStateStore | None,
        version: Literal[1, 2],
        defaults: EdgeDefaults,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.version = version
        self.defaults = defaults
        self.cell = runtime.spec.cell
        self.n_layers = runtime.spec.n_layers

    def _edge(self) -> tuple[EdgeView | None, EdgeStatus]:
        store = self.store
        return store.current() if store is not None else (None, "missing")

    def resolver(self) -> Callable[[object], Resolved]:
        """Request model -> :class:`Resolved`, with the edge view read now."""
        cell, L, defaults = self.cell, self.n_layers, self.defaults
        view, status = self._edge()
        if self.version == 1:
            return lambda req: resolve_v1(req, view, status, cell, L)  # type: ignore[arg-type]
        return lambda req: resolve_v2(req, view, status, cell, L, defaults)  # type: ignore[arg-type]

    def parse(self, body: bytes) -> Resolved:
        """One body (``POST /v{1,2}/decide``) -> resolved, or a :class:`RequestValidationError`."""
        req: DecisionRequest | DeviceDecisionRequest = (
            parse_body(DecisionRequest, body)
            if self.version == 1
            else parse_body(DeviceDecisionRequest, body)
        )
        if req.cached_split is not None and req.cached_split > self.n_layers:
            raise RequestValidationError(layer_errors(req, self.n_layers, ("body",)))
        return self.resolver()(req)

    def parse_batch_v2(self, body: bytes) -> list[Resolved]:
        """``POST /v2/decide/batch`` -> resolved states (one edge view for the batch)."""
        req = parse_body(DeviceDecisionBatchRequest, body)
        errors: list[dict[str, object]] = []
        for i, s in enumerate(req.states):
            errors += layer_errors(s, self.n_layers, ("body", "states", i))
        if errors:
            raise RequestValidationError(errors)
        resolve = self.resolver()
        return [resolve(s) for s in req.states]

    def decide_v1_batch(self, states: Sequence[DecisionRequest]) -> list[Decision]:
        """``POST /v1/decide/batch``: one edge view for the batch. A single-device policy reads
        only the edge's occupancy and load from it, the same for every state: they are written
        into the freshly parsed requests in place (no per-state copy, no :class:`Resolved`),
        and the batch goes to the runtime as the plain path sends it. A cell policy needs
        each state's own edge fields (its session's entry): :meth:`resolve_all`."""
        if self.cell:
            return self.decide_many(self.resolve_all(states))
        view, status = self._edge()
        if view is not None:
            kv, load = view.edge_kv_occupancy, view.edge_load
            for req in states:
                fields = req.__dict__  # the parsed body, owned by this request alone
                fields["edge_kv_occupancy"] = kv
                fields["edge_load"] = load
        return self.runtime.decide_many(states, status, True)

    def resolve_all(self, states: Sequence[object]) -> list[Resolved]:
        resolve = self.resolver()
        return [resolve(s) for s in states]

    def decide(self, item: Resolved) -> Decision:
        return self.runtime.decide(item.state, item.edge, item.policy)

    def decide_many(self, items: Sequence[Resolved]) -> list[Decision]:
        first = items[0]
        if all(i.edge == first.edge and i.policy == first.policy for i in items):
            return self.runtime.decide_many([i.state for i in items], first.edge, first.policy)
        return [self.decide(i) for i in items]
