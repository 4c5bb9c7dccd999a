"""``offload-rl serve``: run the decision service with uvicorn.

    offload-rl serve [--policy FILE] [--host 127.0.0.1] [--port 8000] [--workers N]
                     [--token T] [--scenario NAME] [--watch-interval 2.0] [--no-micro-batching]
                     [--edge-metrics-url URL] [--edge-poll-interval 1.0] [--edge-max-age 5.0]
                     [--edge-push]

Without ``--policy`` the shipped ``offload_rl/data/policies/default.onnx`` (with a cell
``--scenario``: ``cell.onnx``) is served if the package has one, else the greedy heuristic
(``/readyz`` says ``degraded``). Every worker watches the policy file and reloads it when it
changes; ``POST /v1/policy/reload`` reloads the worker that answers at once, and SIGHUP reloads
(one worker) or replaces the workers (several; each keeps serving the last policy that loaded if
the file has gone bad). With several workers, Prometheus metrics are aggregated through
``PROMETHEUS_MULTIPROC_DIR`` (a temporary folder unless set). The token can also come from
``OFFLOAD_RL_TOKEN`` (keeps it out of ``ps``).

The edge adapter: ``--edge-metrics-url`` polls the edge runtime's Prometheus endpoint (vLLM's
``/metrics``) every ``--edge-poll-interval`` seconds; ``--edge-push`` accepts the runtime's own
reports on ``POST /v1/edge/state``; an edge state older than ``--edge-max-age`` seconds is not
used (see :mod:`serving.edge_state`).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import sys
import tempfile
from pathlib import Path

from offload_rl.errors import ConfigError
from serving.edge_state.settings import (
    DEFAULT_LOAD_WINDOW_S,
    DEFAULT_MAX_AGE_S,
    DEFAULT_POLL_INTERVAL_S,
    EdgeSettings,
)
from serving.shipped import shipped_policy_path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def shipped_policy(scenario: str | None = None) -> str | None:
    """The package's shipped policy for ``scenario`` (``cell.onnx`` for a scenario with a
    ``cell:`` section, else ``default.onnx``), if it ships one."""
    cell = False
    if scenario:
        from offload_rl.scenario import load_scenario

        cell = load_scenario(scenario).cell is not None
    path = shipped_policy_path(cell=cell)
    return None if path is None else str(path)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the decision service (FastAPI + onnxruntime, never torch)",
        description=(
            "Serve placement decisions over HTTP: POST /v1/decide, /v1/decide/batch; GET "
            "/healthz, /readyz, /metrics, /v1/policy; POST /v1/policy/reload. A policy file "
            "that is missing or fails validation leaves the previous policy (or the greedy "
            "heuristic) serving."
        ),
    )
    parser.add_argument(
        "--policy",
        metavar="FILE",
        help="ONNX policy from `offload-rl export` (default: the shipped one, else heuristic)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token required by every endpoint but /healthz (or set OFFLOAD_RL_TOKEN)",
    )
    parser.add_argument(
        "--scenario",
        default=None,
        help="scenario that fixes the features and the fallback (default: the policy's, "
        "else default)",
    )
    parser.add_argument(
        "--watch-interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between checks of the policy file for changes (0: no watch)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--no-micro-batching",
        action="store_true",
        help="decide each single request on its own (default: requests that arrive together "
        "share one onnxruntime run; the same answers, less CPU under load)",
    )
    edge = parser.add_argument_group("edge adapter (the edge runtime's state)")
    edge.add_argument(
        "--edge-metrics-url",
        metavar="URL",
        default=None,
        help="the edge runtime's Prometheus endpoint to poll, e.g. http://127.0.0.1:8001/metrics "
        "(vLLM's metric names)",
    )
    edge.add_argument(
        "--edge-poll-interval",
        type=float,
        default=DEFAULT_POLL_INTERVAL_S,
        metavar="S",
        help=f"seconds between polls (default {DEFAULT_POLL_INTERVAL_S:g})",
    )
    edge.add_argument(
        "--edge-max-age",
        type=float,
        default=DEFAULT_MAX_AGE_S,
        metavar="S",
        help="staleness bound: an edge state older than this is treated as unknown "
        f"(default {DEFAULT_MAX_AGE_S:g})",
    )
    edge.add_argument(
        "--edge-load-window",
        type=float,
        default=DEFAULT_LOAD_WINDOW_S,
        metavar="S",
        help="seconds of reports in the edge's busy share, its load "
        f"(default {DEFAULT_LOAD_WINDOW_S:g})",
    )
    edge.add_argument(
        "--edge-push",
        action="store_true",
        help="accept the runtime's own reports on POST /v1/edge/state",
    )
    parser.set_defaults(func=_run)


def _check_args(args: argparse.Namespace) -> None:
    if not 1 <= args.workers <= 64:
        raise ConfigError(f"--workers must be between 1 and 64, got {args.workers}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if not args.watch_interval >= 0:
        raise ConfigError(f"--watch-interval must be >= 0, got {args.watch_interval}")
    if args.workers > 1 and args.edge_push:
        raise ConfigError(
            "--edge-push needs --workers 1: a report reaches one worker, the others would "
            "serve a stale edge (pull with --edge-metrics-url: every worker polls)"
        )
    if args.workers > 1 and args.watch_interval == 0:
        raise ConfigError(
            "--workers > 1 needs --watch-interval > 0: the file watch is how a reload reaches "
            "every worker"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    _check_args(args)
    edge = EdgeSettings(
        metrics_url=args.edge_metrics_url,
        poll_interval_s=args.edge_poll_interval,
        max_age_s=args.edge_max_age,
        push=args.edge_push,
        load_window_s=args.edge_load_window,
    ).check()
    token = args.token or os.environ.get("OFFLOAD_RL_TOKEN") or None
    policy = args.policy or shipped_policy(args.scenario)
    if args.policy and not Path(args.policy).is_file():
        print(
            f"offload-rl serve: warning: {args.policy} does not exist; the heuristic answers "
            "until it appears",
            file=sys.stderr,
        )
    if policy is None:
        print(
            "offload-rl serve: no policy: serving the greedy heuristic (degraded)", file=sys.stderr
        )
    if not _is_loopback(args.host) and token is None:
        print(
            f"offload-rl serve: warning: listening on {args.host} without --token",
            file=sys.stderr,
        )
    cleanup: list[str] = []
    env = os.environ
    env["OFFLOAD_RL_POLICY"] = policy or ""
    env["OFFLOAD_RL_TOKEN"] = token or ""
    env["OFFLOAD_RL_SCENARIO"] = args.scenario or ""
    env["OFFLOAD_RL_WATCH_INTERVAL"] = str(args.watch_interval)
    env["OFFLOAD_RL_MICRO_BATCHING"] = "0" if args.no_micro_batching else "1"
    env.update(edge.to_env())
    if args.workers > 1:
        state = tempfile.mkdtemp(prefix="offload-rl-serve-")
        cleanup.append(state)
        env["OFFLOAD_RL_LAST_GOOD"] = str(Path(state) / "last_good.onnx")
        if not env.get("PROMETHEUS_MULTIPROC_DIR"):
            prom = Path(state) / "prometheus"
            prom.mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    try:
        import uvicorn

        from serving.app import app_from_env

        if args.workers == 1:
            app = app_from_env()  # errors surface here, once, as one line
            uvicorn.run(
                app,
                host=args.host,
                port=args.port,
                log_level=args.log_level,
                access_log=args.access_log,
            )
        else:
            from serving.app import scenario_of
            from serving.policy_runtime import DecisionRuntime

            # a wrong scenario is one line here rather than a traceback per worker
            DecisionRuntime(scenario=args.scenario or scenario_of(policy), policy_path=None)
            uvicorn.run(
                "serving.app:app_from_env",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                log_level=args.log_level,
                access_log=args.access_log,
            )
    finally:
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
