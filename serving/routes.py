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
from serving.guard import BODY_SCOPE_KEY
from serving.metrics import ServiceMetrics
from serving.openapi import request_body
from serving.policy_runtime import DecisionRuntime
from serving.request_parsing import batch_parser, decision_parser
from serving.schemas import (
    EXAMPLE_STATE,
    MAX_BATCH,
    DecisionBatchRequest,
    DecisionBatchResponse,
    DecisionRequest,
    DecisionResponse,
    ErrorResponse,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
}


class ServiceState:
    """What the endpoints share: the runtime, its metrics, the parsers for its policy's layers
    and the micro-batcher (``None`` when micro-batching is off)."""

    def __init__(self, runtime: DecisionRuntime, micro_batching: bool) -> None:
        self.runtime = runtime
        self.metrics = metrics = ServiceMetrics()
        metrics.set_policy(runtime.version, "onnx" if runtime.live is not None else "fallback")
        n_layers = runtime.spec.n_layers
        self.parse_decision = decision_parser(n_layers)
        self.parse_batch = batch_parser(n_layers)
        self.batcher = (
            DecisionBatcher(
                runtime,
                on_decisions=metrics.decisions,
                parse=self.parse_decision,
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


async def _body(request: Request) -> bytes:
    body = request.scope.get(BODY_SCOPE_KEY)
    return body if isinstance(body, bytes) else await request.body()


def add_decision_routes(app: FastAPI, service: ServiceState) -> None:
    """``POST /v1/decide`` and ``POST /v1/decide/batch``."""
    rt, metrics, batcher = service.runtime, service.metrics, service.batcher
    parse_decision, parse_batch = service.parse_decision, service.parse_batch

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
            d = rt.decide(parse_decision(body))
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
        ds = rt.decide_many(req.states)  # the bodies carry the fields the encoder reads
        metrics.decisions(ds)
        body = b'{"decisions":[' + b",".join([d.body for d in ds]) + b"]}"
        return Response(body, media_type="application/json")


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
