"""The decision service: edge runtimes ask it where each LLM request should run.

``create_app`` builds a FastAPI app around a :class:`~serving.policy_runtime.DecisionRuntime`
(an ONNX policy, or the greedy heuristic when none loads). Requests carry the raw state a
device knows; the service encodes it with the same encoder the environment used in training.
The pieces, one concern each:

- :mod:`serving.schemas`: request and response bodies, and the bounds on the wire;
- :mod:`serving.guard`: the ASGI middleware in front (bearer token, 413, 415, request metrics);
- :mod:`serving.request_parsing`: parsing bodies, and the 422 that names the field;
- :mod:`serving.routes`: the endpoints and the state they share;
- :mod:`serving.openapi`: the OpenAPI document (the decision handlers parse their own bodies);
- :mod:`serving.gc_tuning`: the serving process's garbage-collector settings;
- :mod:`serving.batcher`: single decisions that arrive together share one onnxruntime run.

This module keeps the app's lifecycle (policy watcher, SIGHUP reload, GC tuning at start-up)
and re-exports the names the service's users import from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from serving.edge_state.mapping import EdgeDefaults
from serving.edge_state.settings import EdgeSettings
from serving.edge_state.store import EdgeStateStore
from serving.edge_state.vllm_pull import MetricsPoller
from serving.gc_tuning import GC_GEN0_THRESHOLD, tune_gc_for_serving
from serving.guard import (
    BODY_SCOPE_KEY,
    JSON_BODY_PATHS,
    MAX_BODY_BYTES,
    OPEN_PATHS,
    GuardMiddleware,
)
from serving.openapi import install_openapi
from serving.policy_runtime import DecisionRuntime, PolicyWatcher
from serving.request_parsing import add_error_handlers
from serving.routes import (
    ServiceState,
    add_decision_routes,
    add_edge_routes,
    add_policy_routes,
    add_status_routes,
)
from serving.schemas import (
    EXAMPLE_STATE,
    MAX_BATCH,
    MAX_LAYERS,
    MAX_SAMPLES,
    MAX_TOKENS,
    DecisionBatchRequest,
    DecisionBatchResponse,
    DecisionRequest,
    DecisionResponse,
    ErrorResponse,
)

__all__ = [
    "BODY_SCOPE_KEY",
    "DEFAULT_WATCH_INTERVAL_S",
    "EXAMPLE_STATE",
    "GC_GEN0_THRESHOLD",
    "JSON_BODY_PATHS",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MAX_LAYERS",
    "MAX_SAMPLES",
    "MAX_TOKENS",
    "OPEN_PATHS",
    "DecisionBatchRequest",
    "DecisionBatchResponse",
    "DecisionRequest",
    "DecisionResponse",
    "ErrorResponse",
    "GuardMiddleware",
    "app_from_env",
    "create_app",
    "scenario_of",
    "tune_gc_for_serving",
]

log = logging.getLogger("offload_rl.serving")

DEFAULT_WATCH_INTERVAL_S = 2.0
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


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
    edge: EdgeSettings | None = None,
    cell: bool | None = None,
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
    process-wide, so the serving entry point asks for it, not library users). ``edge``: the
    edge adapter (pull from the runtime's metrics, accept pushes, the staleness bound; ``None``:
    off, and ``/v1/decide`` answers exactly as before). ``cell``: encode the cell observation
    (default: whether the policy file was trained on EdgeCell-v0).
    """
    if runtime is None:
        runtime = DecisionRuntime(
            scenario=scenario or scenario_of(policy_path),
            policy_path=policy_path,
            last_good_path=last_good_path,
            cell=cell_of(policy_path) if cell is None else cell,
        )
    store: EdgeStateStore | None = None
    poller: MetricsPoller | None = None
    if edge is not None and edge.check().enabled:
        store = EdgeStateStore(
            EdgeDefaults.of(runtime.scenario), edge.max_age_s, edge.load_window_s
        )
        if edge.metrics_url is not None:
            poller = MetricsPoller(edge.metrics_url, store, edge.poll_interval_s)
    service = ServiceState(runtime, micro_batching, store)
    app = FastAPI(
        title="offload-rl decision service",
        version="2",
        description=API_DESCRIPTION,
        summary="Where should this LLM request run: device, split, edge or cloud, and keep its KV?",
        lifespan=_lifespan(service, watch_interval_s, handle_sighup, tune_gc, poller),
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.state.metrics = service.metrics
    app.state.batcher = service.batcher
    app.state.edge_store = store
    app.state.edge_poller = poller
    add_error_handlers(app)
    add_decision_routes(app, service)
    add_status_routes(app, service)
    add_edge_routes(app, service)
    add_policy_routes(app, service)
    install_openapi(app, token)
    known = frozenset(r.path for r in app.routes if hasattr(r, "path"))
    app.add_middleware(
        GuardMiddleware,
        token=token,
        max_body_bytes=max_body_bytes,
        metrics=service.metrics,
        known_paths=known,
    )
    return app


def _lifespan(
    service: ServiceState,
    watch_interval_s: float | None,
    handle_sighup: bool,
    tune_gc: bool,
    poller: MetricsPoller | None = None,
) -> Lifespan:
    """Start-up and shut-down: GC tuning, the policy-file watcher, the SIGHUP reload and the
    edge metrics poller."""
    rt = service.runtime

    def on_sighup() -> None:
        log.info("SIGHUP: reloading %s", rt.policy_path)

        def work() -> None:
            result = rt.reload()
            service.after_reload(result.ok)

        asyncio.get_running_loop().run_in_executor(None, work)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if tune_gc:
            tune_gc_for_serving()
        watcher: PolicyWatcher | None = None
        if watch_interval_s and rt.policy_path is not None:
            watcher = PolicyWatcher(rt, watch_interval_s, on_change=service.after_reload)
            watcher.start()
        if poller is not None:
            poller.start()
        loop = asyncio.get_running_loop()
        hup = False
        if handle_sighup and hasattr(signal, "SIGHUP"):
            try:
                loop.add_signal_handler(signal.SIGHUP, on_sighup)
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
            if poller is not None:
                poller.stop()
            service.metrics.close()

    return lifespan


API_DESCRIPTION = """Where each LLM request should run, decided beside the edge runtime.

**API versions.** `/v1/decide` and `/v1/decide/batch` keep the v1 body: the device also reports
the edge's KV occupancy and load as it heard them. `/v2/decide` and `/v2/decide/batch` take what
the device itself knows (throughput samples and their age, RTT, thermal level, radio state,
device class, the request and its session); the edge's state comes from the edge runtime,
pulled from its Prometheus metrics (vLLM's) or pushed to `POST /v1/edge/state`. With the edge
adapter on, v1 answers also use the runtime's state when it is fresh (it replaces the device's
report) and say which in `edge_state`; with it off, v1 answers are unchanged. An edge state
older than the staleness bound is not used: the answer says `stale`, and when the policy reads
what is then missing, the heuristic fallback answers (`fallback: true`).
"""


def _metadata(policy_path: str | None) -> dict[str, str]:
    """The policy file's metadata, read without validating ({} when unreadable: the runtime
    reports why)."""
    if not policy_path:
        return {}
    try:
        import onnx

        model = onnx.load_model(policy_path, load_external_data=False)
        return {p.key: p.value for p in model.metadata_props}
    except Exception:  # an unreadable file is reported by the runtime, with its reason
        return {}


def cell_of(policy_path: str | None) -> bool:
    """Whether the policy file was trained on EdgeCell-v0 (its feature spec says ``cell``)."""
    return str(_metadata(policy_path).get("cell", "0")).strip().lower() in ("1", "1.0", "true")


def scenario_of(policy_path: str | None) -> str:
    """The policy's scenario if it names a shipped one (read without validating), else default."""
    from offload_rl.scenario import shipped_scenarios

    name = _metadata(policy_path).get("scenario", "")
    return name if name in shipped_scenarios() else "default"


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
        edge=EdgeSettings.from_env(env),
    )
