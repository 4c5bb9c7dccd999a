"""The service's endpoints, registered on an app from the state they share.

Handlers are ``async def`` and call onnxruntime inline: a decision takes microseconds, a
thread-pool hop would cost more than the model. Each registering function binds what its
handlers use to locals first, so a request pays no attribute look-ups on the way to the model.
The decision handlers read the body the guard already took (:mod:`serving.guard`) and parse it
themselves (:mod:`serving.request_parsing`); a single decision is parsed in the micro-batcher's
flush, with the requests that arrived with it (:mod:`serving.batcher`).
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from serving.batcher import DecisionBatcher
from serving.edge_state.decider import EdgeDecider
from serving.edge_state.mapping import EdgeDefaults, RuntimeReport, SessionEntry
from serving.edge_state.store import EdgeStateStore
from serving.guard import BODY_SCOPE_KEY
from serving.metrics import ServiceMetrics
from serving.openapi import request_body
from serving.policy_runtime import Decision, DecisionRuntime
from serving.request_parsing import batch_parser, decision_parser, parse_body
from serving.schemas import (
    EXAMPLE_STATE,
    MAX_BATCH,
    DecisionBatchRequest,
    DecisionBatchResponse,
    DecisionRequest,
    DecisionResponse,
    ErrorResponse,
)
from serving.schemas_v2 import (
    EDGE_REPORT_EXAMPLE,
    EXAMPLE_DEVICE_STATE,
    DeviceDecisionBatchRequest,
    DeviceDecisionBatchResponse,
    DeviceDecisionRequest,
    DeviceDecisionResponse,
    EdgeStateReport,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
}


class ServiceState:
    """What the endpoints share: the runtime, its metrics, the parsers for its policy's layers
    and the micro-batchers (``None`` when micro-batching is off); the edge state (``None``: no
    adapter) and the edge-aware deciders (``v1``: ``None`` when v1 needs none, i.e. no adapter
    and a single-device policy: the plain path of before)."""

    def __init__(
        self,
        runtime: DecisionRuntime,
        micro_batching: bool,
        edge_store: EdgeStateStore | None = None,
    ) -> None:
        self.runtime = runtime
        self.edge_store = edge_store
        defaults = edge_store.defaults if edge_store else EdgeDefaults.of(runtime.scenario)
        self.v1 = (
            EdgeDecider(runtime, edge_store, 1, defaults)
            if edge_store is not None or runtime.spec.cell
            else None
        )
        self.v2 = EdgeDecider(runtime, edge_store, 2, defaults)
        self.metrics = metrics = ServiceMetrics()
        if edge_store is not None:
            edge_store.on_report = metrics.edge_report
        metrics.set_policy(runtime.version, "onnx" if runtime.live is not None else "fallback")
        n_layers = runtime.spec.n_layers
        self.parse_decision = decision_parser(n_layers)
        self.parse_batch = batch_parser(n_layers)
        v1 = self.v1
        self.batcher = (
            DecisionBatcher(
                runtime if v1 is None else v1,
                on_decisions=metrics.decisions,
                parse=self.parse_decision if v1 is None else v1.parse,
                on_batch=metrics.micro_batch,
            )
            if micro_batching
            else None
        )
        self.batcher_v2 = (
            DecisionBatcher(
                self.v2,
                on_decisions=metrics.decisions,
                parse=self.v2.parse,
                on_batch=metrics.micro_batch,
            )
            if micro_batching
            else None
        )

    def after_reload(self, ok: bool) -> None:
        """Count a reload attempt and show the version now served (it may be unchanged)."""
        rt = self.runtime
        self.metrics.reload(ok)
        self.metrics.set_policy(rt.version, "onnx" if rt.live is not None else "fallback")


def _batch_response(ds: list[Decision]) -> Response:
    """The batch answer, from the decisions' ready-made bodies."""
    body = b'{"decisions":[' + b",".join([d.body for d in ds]) + b"]}"
    return Response(body, media_type="application/json")


async def _body(request: Request) -> bytes:
    body = request.scope.get(BODY_SCOPE_KEY)
    return body if isinstance(body, bytes) else await request.body()


def add_decision_routes(app: FastAPI, service: ServiceState) -> None:
    """``POST /v1/decide`` and ``POST /v1/decide/batch`` (and v2: :func:`add_v2_routes`)."""
    rt, metrics, batcher = service.runtime, service.metrics, service.batcher
    parse_decision, parse_batch = service.parse_decision, service.parse_batch
    v1 = service.v1

    @app.post(
        "/v1/decide",
        response_model=DecisionResponse,
        responses=ERRORS,
        summary="Decide split, tier and cache action for one request",
        openapi_extra=request_body(
            DecisionRequest, {"typical": {"summary": "a follow-up turn", "value": EXAMPLE_STATE}}
        ),
    )
    async def decide(request: Request) -> Response:
        body = request.scope.get(BODY_SCOPE_KEY)
        if not isinstance(body, bytes):
            body = await request.body()
        if batcher is not None:  # parsed in the batch; counted in the metrics with it
            d = await batcher.decide(body)
        else:
            d = rt.decide(parse_decision(body)) if v1 is None else v1.decide(v1.parse(body))
            metrics.decision(d)
        return Response(d.body, media_type="application/json")

    @app.post(
        "/v1/decide/batch",
        response_model=DecisionBatchResponse,
        responses=ERRORS,
        summary=f"Decide for up to {MAX_BATCH} requests at once",
        openapi_extra=request_body(
            DecisionBatchRequest,
            {"two": {"summary": "two states", "value": {"states": [EXAMPLE_STATE] * 2}}},
        ),
    )
    async def decide_batch(request: Request) -> Response:
        req = parse_batch(await _body(request))
        # without v1's decider the bodies carry the fields the encoder reads
        ds = rt.decide_many(req.states) if v1 is None else v1.decide_v1_batch(req.states)
        metrics.decisions(ds)
        return _batch_response(ds)

    add_v2_routes(app, service)


V2_DESCRIPTION = (
    "API v2: the device sends what it knows (throughput samples and their age, RTT, thermal "
    "level, radio state, device class, the request and its session); the edge's state comes "
    "from the edge runtime (pulled from its Prometheus metrics, or pushed to "
    "POST /v1/edge/state). The answer's edge_state says whether that state was fresh; when it "
    "is not and the policy reads what is missing, the heuristic fallback answers. /v1/decide "
    "keeps its body (the device reports the edge's occupancy and load), for existing clients."
)


def add_v2_routes(app: FastAPI, service: ServiceState) -> None:
    """``POST /v2/decide`` and ``POST /v2/decide/batch``."""
    metrics, batcher, v2 = service.metrics, service.batcher_v2, service.v2

    @app.post(
        "/v2/decide",
        response_model=DeviceDecisionResponse,
        responses=ERRORS,
        summary="Decide for one request from the device's facts and the edge's own state",
        description=V2_DESCRIPTION,
        openapi_extra=request_body(
            DeviceDecisionRequest,
            {"typical": {"summary": "a follow-up turn", "value": EXAMPLE_DEVICE_STATE}},
        ),
    )
    async def decide_v2(request: Request) -> Response:
        body = await _body(request)
        if batcher is not None:
            d = await batcher.decide(body)
        else:
            d = v2.decide(v2.parse(body))
            metrics.decision(d)
        return Response(d.body, media_type="application/json")

    @app.post(
        "/v2/decide/batch",
        response_model=DeviceDecisionBatchResponse,
        responses=ERRORS,
        summary=f"v2 decisions for up to {MAX_BATCH} requests at once",
        description=V2_DESCRIPTION,
        openapi_extra=request_body(
            DeviceDecisionBatchRequest,
            {"two": {"summary": "two states", "value": {"states": [EXAMPLE_DEVICE_STATE] * 2}}},
        ),
    )
    async def decide_batch_v2(request: Request) -> Response:
        ds = v2.decide_many(v2.parse_batch_v2(await _body(request)))
        metrics.decisions(ds)
        return _batch_response(ds)


def add_edge_routes(app: FastAPI, service: ServiceState) -> None:
    """``POST /v1/edge/state`` (a runtime reports itself) and ``GET /v1/edge/state``."""
    store = service.edge_store

    @app.post(
        "/v1/edge/state",
        summary="The edge runtime reports its state (push; the pull adapter's alternative)",
        responses={**ERRORS, 409: {"model": ErrorResponse}},
        openapi_extra=request_body(
            EdgeStateReport,
            {"vllm-like": {"summary": "a busy edge", "value": EDGE_REPORT_EXAMPLE}},
        ),
    )
    async def push_edge_state(request: Request) -> Response:
        report = parse_body(EdgeStateReport, await _body(request))
        if store is None:
            return JSONResponse(
                status_code=409,
                content={"message": "edge state is off: start the service with --edge-push"},
            )
        sessions = (
            None
            if report.sessions is None
            else {
                k: SessionEntry(v.tokens, v.split, v.recency_rank)
                for k, v in report.sessions.items()
            }
        )
        store.put(
            RuntimeReport(
                n_running=report.n_running,
                n_waiting=report.n_waiting,
                kv_usage=report.kv_usage,
                pool_tokens=report.pool_tokens,
                running_tokens=report.running_tokens,
                waiting_tokens=report.waiting_tokens,
                busy_share=report.busy_share,
                sessions=sessions,
            ),
            "push",
        )
        return JSONResponse({"accepted": True, "max_age_s": store.max_age_s})

    @app.get("/v1/edge/state", summary="What the service knows of the edge, and how old it is")
    async def edge_state() -> dict[str, Any]:
        if store is None:
            return {"status": "off"}
        return store.describe()


def add_status_routes(app: FastAPI, service: ServiceState) -> None:
    """``GET /healthz``, ``GET /readyz`` and ``GET /metrics``."""
    rt, metrics = service.runtime, service.metrics

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: ready (policy) or degraded (heuristic fallback)")
    async def readyz() -> dict[str, Any]:
        d = rt.describe()
        return {
            "status": d["status"],
            "version": d["version"],
            "source": d["source"],
            "policy_path": d["policy_path"],
            "last_error": d["last_error"],
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)


def add_policy_routes(app: FastAPI, service: ServiceState) -> None:
    """``GET /v1/policy`` and ``POST /v1/policy/reload``."""
    rt, after_reload = service.runtime, service.after_reload

    @app.get("/v1/policy", summary="The live policy: version and metadata")
    async def policy() -> dict[str, Any]:
        out = rt.describe()
        live = rt.live
        out["metadata"] = live.metadata.public() if live is not None else None
        return out

    @app.post(
        "/v1/policy/reload",
        summary="Reload the policy file (validated off to the side, swapped atomically)",
        responses={409: {"model": ErrorResponse}},
    )
    async def reload() -> Response:
        result = await anyio.to_thread.run_sync(rt.reload)
        after_reload(result.ok)
        if result.ok:
            content = {"reloaded": True, "version": result.version, "changed": result.changed}
            return JSONResponse(content)
        return JSONResponse(
            status_code=409,
            content={
                "reloaded": False,
                "message": f"policy rejected, still serving {result.version}: {result.reason}",
                "version": result.version,
            },
        )
