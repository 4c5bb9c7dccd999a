"""The decision service: edge runtimes ask it where each LLM request should run.

``create_app`` builds a FastAPI app around a :class:`~serving.policy_runtime.DecisionRuntime`
(an ONNX policy, or the greedy heuristic when none loads). Requests carry the raw state a
device knows; the service encodes it with the same encoder the environment used in training.

Hardening, in a pure ASGI middleware in front of FastAPI (cheap, and it also covers 404s):
bearer token (``hmac.compare_digest``; only ``/healthz`` is open), body size limit (413),
``application/json`` for bodies (415), request count and latency metrics. Validation errors are
422s that name the field and never echo the offending value (a NaN in a JSON response would
itself fail). Handlers are ``async def`` and call onnxruntime inline: a decision takes
microseconds, a thread-pool hop would cost more than the model. Single decisions that arrive
together are parsed and decided together, in one onnxruntime run (:mod:`serving.batcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import math
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema

from offload_rl.features import DecisionState
from serving.batcher import DecisionBatcher
from serving.metrics import ServiceMetrics
from serving.policy_runtime import DecisionRuntime, PolicyWatcher

log = logging.getLogger("offload_rl.serving")

MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 1024
MAX_SAMPLES = 64
MAX_TOKENS = 1 << 20
MAX_LAYERS = 4096
DEFAULT_WATCH_INTERVAL_S = 2.0
GC_GEN0_THRESHOLD = 2000  # CPython 3.13's own default (700 before)
OPEN_PATHS = frozenset({"/healthz"})
BODY_SCOPE_KEY = "offload_rl.body"  # the guard puts the body it read here (handlers skip a copy)
JSON_BODY_PATHS = frozenset({"/v1/decide", "/v1/decide/batch"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# --------------------------------------------------------------------------------------------
# Request and response bodies
# --------------------------------------------------------------------------------------------

EXAMPLE_STATE: dict[str, Any] = {
    "throughput_mbps": [4.1, 3.8, 5.0, 4.6, 2.9, 3.3, 4.0, 4.4],
    "rtt_ms": 20.0,
    "new_tokens": 180,
    "context_tokens": 950,
    "turn": 2,
    "private": False,
    "slo_ttft_s": 1.0,
    "slo_tpot_s": 0.1,
    "cached_split": 6,
    "cached_tokens": 950,
    "edge_kv_occupancy": 0.42,
    "edge_load": 0.3,
    "device_memory_layers": 24,
    "prev_output_tokens": 210,
    "since_last_turn_s": 35.0,
}

Mbps = Annotated[float, Field(ge=0.0, le=100_000.0)]


class DecisionRequest(BaseModel):
    """The raw state a device knows when one request must be placed (mirrors
    :class:`offload_rl.features.DecisionState`)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={"examples": [EXAMPLE_STATE]},
    )

    throughput_mbps: list[Mbps] = Field(
        max_length=MAX_SAMPLES,
        description="recent uplink throughput samples in Mbps, oldest first (the encoder uses "
        "the newest `history`; none = link unknown, treated as an outage)",
    )
    rtt_ms: float = Field(ge=0.0, le=60_000.0, description="RTT to the edge, ms")
    new_tokens: int = Field(ge=0, le=MAX_TOKENS, description="new prompt tokens of this turn")
    context_tokens: int = Field(ge=0, le=MAX_TOKENS, description="tokens from earlier turns")
    turn: int = Field(ge=0, le=100_000, description="turn number in the session, 0 first")
    private: bool = Field(description="raw tokens must not leave the device")
    slo_ttft_s: float = Field(gt=0.0, le=3600.0, description="time-to-first-token target, s")
    slo_tpot_s: float = Field(ge=0.0, le=60.0, description="time-per-output-token target, s")
    cached_split: int | None = Field(
        ge=0,
        le=MAX_LAYERS,
        description="split k of this session's kept KV (n_layers = on the device); null if none",
    )
    cached_tokens: int = Field(ge=0, le=MAX_TOKENS, description="tokens in that kept KV")
    edge_kv_occupancy: float = Field(ge=0.0, le=1.0, description="edge KV memory in use, share")
    edge_load: float = Field(ge=0.0, le=1.0, description="edge utilisation as last reported")
    device_memory_layers: int = Field(ge=0, le=MAX_LAYERS, description="layers the device can hold")
    prev_output_tokens: int = Field(0, ge=0, le=MAX_TOKENS, description="previous turn's output")
    since_last_turn_s: float = Field(
        0.0, ge=0.0, le=1e8, description="seconds since this session's previous turn"
    )

    def to_state(self) -> DecisionState:
        # the fields are DecisionState's, name for name (a test checks)
        return DecisionState(**self.__dict__)


class DecisionBatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"states": [EXAMPLE_STATE, EXAMPLE_STATE]}]},
    )

    states: list[DecisionRequest] = Field(min_length=1, max_length=MAX_BATCH)


class DecisionResponse(BaseModel):
    action: int = Field(description="joint action index: tier_index * 2 + keep")
    meaning: str = Field(description="e.g. 'split k=6, keep'")
    tier: Literal["device", "edge", "split", "cloud"]
    split: int = Field(description="layers that run on the device (0 for edge and cloud)")
    tier_index: int = Field(description="0 = edge, 1..L-1 = split, L = device, L+1 = cloud")
    cache: Literal["keep", "drop"] = Field(description="what the edge does with the session KV")
    keep: bool
    policy_version: str = Field(description="version hash of the ONNX policy, or heuristic:NAME")
    fallback: bool = Field(description="true when the heuristic fallback answered")


class DecisionBatchResponse(BaseModel):
    decisions: list[DecisionResponse]


class ErrorResponse(BaseModel):
    message: str
    detail: Any = None


# --------------------------------------------------------------------------------------------
# ASGI guard: auth, size, content type, metrics
# --------------------------------------------------------------------------------------------


def _json_bytes(content: Any) -> bytes:
    return json.dumps(content, separators=(",", ":"), allow_nan=False).encode()


async def _send_json(
    send: Send, status: int, content: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = _json_bytes(content)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Checks that must hold before FastAPI parses anything, plus per-request metrics."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        max_body_bytes: int,
        metrics: ServiceMetrics,
        known_paths: frozenset[str],
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in self.known_paths else "other"
        status_box = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = int(message["status"])
            await send(message)

        try:
            await self._guarded(scope, receive, send_wrapper, path)
        finally:
            self.metrics.observe_request(endpoint, status_box[0], time.perf_counter() - start)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        headers = scope.get("headers") or []
        if self.token is not None and path not in OPEN_PATHS:
            auth = b""
            for k, v in headers:
                if k == b"authorization":
                    auth = v
                    break
            scheme, _, given = auth.partition(b" ")
            ok = scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)
            if not ok:
                await _send_json(
                    send,
                    401,
                    {"message": "missing or wrong bearer token (Authorization: Bearer ...)"},
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        content_type = b""
        length: int | None = None
        for k, v in headers:
            if k == b"content-type":
                content_type = v
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    await _send_json(send, 400, {"message": "invalid Content-Length header"})
                    return
        if length is not None and length > self.max_body_bytes:
            await self._too_large(send)
            return
        if path in JSON_BODY_PATHS:
            media = content_type.split(b";", 1)[0].strip().lower()
            if media != b"application/json":
                shown = media.decode("latin-1")[:80] or "none"
                await _send_json(
                    send,
                    415,
                    {"message": f"Content-Type must be application/json (got {shown})"},
                )
                return
        # read the body here (bounded), then hand it to the app in one piece
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope[BODY_SCOPE_KEY] = body
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _send_json(
            send, 413, {"message": f"request body larger than {self.max_body_bytes} bytes"}
        )


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    """loc, msg and type of each error; the input is not echoed (it may be NaN or huge)."""
    out = []
    for err in list(errors)[:20]:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        out.append(
            {"loc": loc, "msg": str(err.get("msg", ""))[:300], "type": str(err.get("type", ""))}
        )
    return out


def _error_text(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


async def _validation_error_handler(request: Request, exc: Exception) -> Response:
    errors = _clean_errors(exc.errors() if isinstance(exc, RequestValidationError) else [])
    return JSONResponse(status_code=422, content={"message": _error_text(errors), "detail": errors})


async def _unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"message": "internal error"})


def _layer_errors(
    req: DecisionRequest, n_layers: int, prefix: tuple[Any, ...]
) -> list[dict[str, Any]]:
    if req.cached_split is not None and req.cached_split > n_layers:
        return [
            {
                "loc": (*prefix, "cached_split"),
                "msg": f"must be at most {n_layers} (the model's layers; {n_layers} = device)",
                "type": "less_than_equal",
            }
        ]
    return []


BodyModel = TypeVar("BodyModel", bound=BaseModel)


def _parse(model: type[BodyModel], body: bytes) -> BodyModel:
    """Parse and validate in one pass (pydantic's JSON parser: several times faster than
    ``json.loads`` plus validation, bounded recursion, no NaN literals)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        errors = err.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _request_body(model: type[BaseModel], examples: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a handler that parses the raw body itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                    "examples": examples,
                }
            },
        }
    }


def _body_schemas() -> dict[str, Any]:
    _, schema = models_json_schema(
        [(DecisionRequest, "validation"), (DecisionBatchRequest, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    return dict(schema.get("$defs", {}))


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------


def tune_gc_for_serving() -> None:
    """Keep full garbage collections off the request path of a serving process.

    Every request parked in the micro-batcher keeps its objects alive, so with many connections
    the young generation fills, and every hundred or so young collections CPython runs a full
    one, which walks the ~80,000 objects of the imported libraries: a ~40 ms stall, the p99
    latency at 32 connections. ``gc.freeze()`` after start-up takes those objects out of the
    collector's walks, and a young threshold of 2,000 lets a burst of in-flight requests come
    and go without a collection. Reference cycles created later are still collected.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), gen1, gen2)


def create_app(
    policy_path: str | None,
    token: str | None,
    *,
    scenario: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    watch_interval_s: float | None = DEFAULT_WATCH_INTERVAL_S,
    handle_sighup: bool = True,
    last_good_path: str | None = None,
    runtime: DecisionRuntime | None = None,
    micro_batching: bool = True,
    tune_gc: bool = False,
) -> FastAPI:
    """The decision service.

    ``policy_path``: ONNX policy to serve (``None``: the heuristic fallback, readyz degraded).
    ``token``: bearer token every endpoint but ``/healthz`` requires (``None``: open).
    ``scenario``: fixes the feature spec and the fallback (default: the policy's scenario
    when it is a shipped one, else ``default``). ``watch_interval_s``: poll the policy file and
    reload on change (``None``/0: off). ``last_good_path``: where workers keep a copy of the
    last policy that loaded (so a worker restarted onto a corrupt file serves it).
    ``micro_batching``: single decisions that arrive together share one onnxruntime run
    (:mod:`serving.batcher`; the same answers, less CPU under load). ``tune_gc``: tune this
    process's garbage collector for serving at start-up (:func:`tune_gc_for_serving`; it is
    process-wide, so the serving entry point asks for it, not library users).
    """
    if runtime is None:
        runtime = DecisionRuntime(
            scenario=scenario or scenario_of(policy_path),
            policy_path=policy_path,
            last_good_path=last_good_path,
        )
    rt = runtime
    metrics = ServiceMetrics()
    metrics.set_policy(rt.version, "onnx" if rt.live is not None else "fallback")
    n_layers = rt.spec.n_layers

    def parse_decision(body: bytes) -> DecisionRequest:
        req = _parse(DecisionRequest, body)
        if req.cached_split is not None and req.cached_split > n_layers:
            raise RequestValidationError(_layer_errors(req, n_layers, ("body",)))
        return req

    batcher = (
        DecisionBatcher(
            rt, on_decisions=metrics.decisions, parse=parse_decision, on_batch=metrics.micro_batch
        )
        if micro_batching
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if tune_gc:
            tune_gc_for_serving()
        watcher: PolicyWatcher | None = None
        if watch_interval_s and rt.policy_path is not None:
            watcher = PolicyWatcher(rt, watch_interval_s, on_change=_after_reload)
            watcher.start()
        loop = asyncio.get_running_loop()
        hup = False
        if handle_sighup and hasattr(signal, "SIGHUP"):
            try:
                loop.add_signal_handler(signal.SIGHUP, _on_sighup)
                hup = True
            except (RuntimeError, ValueError, NotImplementedError):  # not the main thread
                hup = False
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            if watcher is not None:
                watcher.stop()
            metrics.close()

    def _after_reload(ok: bool) -> None:
        metrics.reload(ok)
        metrics.set_policy(rt.version, "onnx" if rt.live is not None else "fallback")

    def _on_sighup() -> None:
        log.info("SIGHUP: reloading %s", rt.policy_path)

        def work() -> None:
            result = rt.reload()
            _after_reload(result.ok)

        asyncio.get_running_loop().run_in_executor(None, work)

    app = FastAPI(
        title="offload-rl decision service",
        version="1",
        summary="Where should this LLM request run: device, split, edge or cloud, and keep its KV?",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = rt
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(Exception, _unexpected_error_handler)

    async def _body(request: Request) -> bytes:
        body = request.scope.get(BODY_SCOPE_KEY)
        return body if isinstance(body, bytes) else await request.body()

    @app.post(
        "/v1/decide",
        response_model=DecisionResponse,
        responses={422: {"model": ErrorResponse}, 401: {"model": ErrorResponse}},
        summary="Decide split, tier and cache action for one request",
        openapi_extra=_request_body(
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
        responses={422: {"model": ErrorResponse}, 401: {"model": ErrorResponse}},
        summary=f"Decide for up to {MAX_BATCH} requests at once",
        openapi_extra=_request_body(
            DecisionBatchRequest,
            {"two": {"summary": "two states", "value": {"states": [EXAMPLE_STATE] * 2}}},
        ),
    )
    async def decide_batch(request: Request) -> Response:
        req = _parse(DecisionBatchRequest, await _body(request))
        errors: list[dict[str, Any]] = []
        for i, s in enumerate(req.states):
            errors += _layer_errors(s, n_layers, ("body", "states", i))
        if errors:
            raise RequestValidationError(errors)
        ds = rt.decide_many(req.states)  # the bodies carry the fields the encoder reads
        metrics.decisions(ds)
        body = b'{"decisions":[' + b",".join([d.body for d in ds]) + b"]}"
        return Response(body, media_type="application/json")

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
        _after_reload(result.ok)
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

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(_body_schemas())
        if token:
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            for path, ops in schema.get("paths", {}).items():
                if path not in OPEN_PATHS:
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    known = frozenset(r.path for r in app.routes if hasattr(r, "path"))
    app.add_middleware(
        GuardMiddleware,
        token=token,
        max_body_bytes=max_body_bytes,
        metrics=metrics,
        known_paths=known,
    )
    return app


def scenario_of(policy_path: str | None) -> str:
    """The policy's scenario if it names a shipped one (read without validating), else default."""
    from offload_rl.scenario import shipped_scenarios

    if policy_path:
        try:
            import onnx

            model = onnx.load_model(policy_path, load_external_data=False)
            name = {p.key: p.value for p in model.metadata_props}.get("scenario", "")
            if name in shipped_scenarios():
                return name
        except Exception:  # an unreadable file is reported by the runtime, with its reason
            pass
    return "default"


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (and ``offload-rl serve``): settings from the env.

    ``OFFLOAD_RL_GC_FREEZE=0`` leaves the garbage collector as CPython sets it (for
    ``experiments/benchmarks/bench_serving.py --no-gc-freeze``, which measures what the freeze
    is worth).
    """
    env = os.environ
    interval = float(env.get("OFFLOAD_RL_WATCH_INTERVAL", DEFAULT_WATCH_INTERVAL_S))
    return create_app(
        env.get("OFFLOAD_RL_POLICY") or None,
        env.get("OFFLOAD_RL_TOKEN") or None,
        scenario=env.get("OFFLOAD_RL_SCENARIO") or None,
        watch_interval_s=interval if math.isfinite(interval) and interval > 0 else None,
        last_good_path=env.get("OFFLOAD_RL_LAST_GOOD") or None,
        micro_batching=env.get("OFFLOAD_RL_MICRO_BATCHING", "1") != "0",
        tune_gc=env.get("OFFLOAD_RL_GC_FREEZE", "1") != "0",
    )
