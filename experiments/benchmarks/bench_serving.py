"""Benchmark of the decision service (not a test): HTTP throughput and latency, batch
throughput, in-process decision time, and the resident memory of one worker.

    python experiments/benchmarks/bench_serving.py [--policy FILE] [--duration 5] [--concurrency 8]
                                        [--batch 256] [--workers 1] [--rounds 3]
                                        [--load-generator auto|wrk|python]
                                        [--no-micro-batching] [--no-gc-freeze]
                                        [--edge-adapter]

The server is the app of ``offload-rl serve`` (:func:`serving.app.app_from_env`) under uvicorn
in a subprocess, plus a no-op route this script mounts on it (:func:`bench_app`:
``POST /_bench/noop``, same middleware, no parsing; the production app has no such route).
``--no-gc-freeze`` serves without the garbage-collector freeze of the serve process, to
measure what it is worth (p99 at 32 connections). The load generator is a second process:
``wrk`` (one thread, a Lua script that cycles through the request bodies) when it is installed,
else asyncio + raw HTTP/1.1 keep-alive connections in Python. Both cost far less per request
than an HTTP client library, so the figures are the server's, not the generator's (both share
the CPUs, though: on a 2-core machine they compete, and wrk takes less of them). The phases
run ``--rounds`` times (default 3), alternating, and the medians are reported; the headline
decide/no-op ratio is the median of the per-round ratios, each from one round's two phases
(a shared machine drifts: single rounds of the ratio ranged 0.80-1.09). The server's
``offload_rl_micro_batch_size`` histogram (``/metrics``) gives how many single decisions
shared each onnxruntime run. Without
``--policy`` an untrained MaskablePPO of the training default architecture (MLP 64x64, tanh)
is exported first: speed does not depend on the weights. Request bodies are states of a
simulated device (``serving.example_runtime``).

``--edge-adapter`` measures everything twice in one run: without the edge adapter, then with
it on (the server polls a vLLM-format metrics endpoint this script serves,
:mod:`serving.edge_state.stand_in`, every
``--edge-poll-interval`` s; ``/v1/decide`` then joins each request with the edge view,
:mod:`serving.edge_state`), and prints both beside the targets. Its in-process figures add the
decision through the edge-aware decider, for a v1 body and for a v2 body.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
NOOP_PATH = "/_bench/noop"
PHASES = (("decide", "/v1/decide"), ("noop", NOOP_PATH), ("batch", "/v1/decide/batch"))
_BUCKET = re.compile(r'^offload_rl_micro_batch_size_bucket\{le="([^"]+)"\} (\S+)$', re.MULTILINE)


def bench_app() -> FastAPI:
    """The service as ``offload-rl serve`` builds it, plus the no-op route the decide phase
    is compared with (the uvicorn factory of the server subprocess)."""
    from fastapi import Response

    from serving.app import app_from_env

    app = app_from_env()

    @app.post(NOOP_PATH, include_in_schema=False)
    async def noop() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return app


# --------------------------------------------------------------------------------------------
# Request bodies and a policy
# --------------------------------------------------------------------------------------------


def device_states(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` request bodies as a device of the default scenario would send them."""
    from offload_rl.scenario import load_scenario
    from serving.client import state_to_json
    from serving.example_runtime import SimulatedDevice

    scenario = load_scenario("default")
    device = SimulatedDevice(scenario, seed)
    rng = np.random.default_rng(seed)
    wl = scenario.workload
    out = []
    for req in device.requests(n):
        c = wl.slo_classes[int(rng.integers(len(wl.slo_classes)))]
        state = device.state(req, bool(rng.random() < wl.private_share), (c.ttft_s, c.tpot_s))
        out.append(state_to_json(state))
    return out


def untrained_policy(folder: Path) -> Path:
    """An untrained MaskablePPO with the training default architecture, exported."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from agents.export import export_policy
    from envs.split_cache import SplitCacheEnv
    from offload_rl.features import FEATURE_SCHEMA_VERSION

    venv = DummyVecEnv([lambda: SplitCacheEnv("default", episode_requests=16)])
    env = VecNormalize(venv, norm_reward=False)
    env.reset()
    for _ in range(64):  # a few steps so the statistics are not the identity
        masks = np.stack(env.env_method("action_masks"))
        env.step(np.array([int(np.flatnonzero(m)[0]) for m in masks]))
    model = MaskablePPO("MlpPolicy", env, policy_kwargs={"net_arch": [64, 64]}, seed=0)
    final = folder / "run" / "final"
    final.mkdir(parents=True)
    model.save(final / "model.zip")
    env.save(str(final / "vecnormalize.pkl"))
    spec = venv.envs[0].unwrapped.feature_spec  # type: ignore[attr-defined]
    meta = {
        "scenario": "default",
        **spec.to_dict(),
        "obs_dim": spec.obs_dim,
        "n_actions": spec.layout.n_actions,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "num_timesteps": 0,
    }
    (final / "meta.json").write_text(json.dumps(meta))
    out = folder / "policy.onnx"
    export_policy(folder / "run", out, parity=2000)
    return out


# --------------------------------------------------------------------------------------------
# Load generator (runs in its own process)
# --------------------------------------------------------------------------------------------


def _request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    host: str, port: int, requests: list[bytes], offset: int, stop_at: float, out: dict[str, Any]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    perf = time.perf_counter
    latencies = out["latencies"]
    try:
        while perf() < stop_at:
            t0 = perf()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            m = _LENGTH.search(head)
            await reader.readexactly(int(m.group(1)) if m else 0)
            latencies.append(perf() - t0)
            if head[9:12] != b"200":
                out["errors"] += 1
            i += 1
    finally:
        writer.close()


async def _phase(
    host: str, port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float
) -> dict[str, Any]:
    requests = [_request_bytes(host, port, path, b) for b in bodies]
    warm: dict[str, Any] = {"latencies": [], "errors": 0}
    stop = time.perf_counter() + min(1.0, seconds / 3)
    await asyncio.gather(
        *(_connection(host, port, requests, k, stop, warm) for k in range(concurrency))
    )
    out: dict[str, Any] = {"latencies": [], "errors": 0}
    t0 = time.perf_counter()
    stop = t0 + seconds
    await asyncio.gather(
        *(_connection(host, port, requests, k * 7, stop, out) for k in range(concurrency))
    )
    elapsed = time.perf_counter() - t0
    lat = np.asarray(out["latencies"]) * 1000.0
    return {
        "requests": len(lat),
        "errors": out["errors"],
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def request_bodies(batch: int) -> dict[str, list[bytes]]:
    """The request bodies of each phase: 512 device states, alone or in batches."""
    states = device_states(512)
    singles = [json.dumps(s).encode() for s in states]
    batches = [
        json.dumps({"states": states[i : i + batch]}).encode()
        for i in range(0, len(states) - batch + 1, batch)
    ]
    return {"decide": singles, "noop": singles, "batch": batches}


def loadgen(args: argparse.Namespace) -> None:
    """The Python load generator (``--loadgen``, in its own process): JSON lines per round."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    bodies = request_bodies(args.batch)
    host, port = "127.0.0.1", args.port
    for _ in range(args.rounds):
        result = {
            name: asyncio.run(
                _phase(host, port, path, bodies[name], args.concurrency, args.duration)
            )
            for name, path in PHASES
        }
        print(json.dumps(result), flush=True)


def python_rounds(args: argparse.Namespace, port: int) -> list[dict[str, Any]]:
    gen_cmd = [sys.executable, __file__, "--loadgen", "--port", str(port)]
    gen_cmd += ["--duration", str(args.duration), "--concurrency", str(args.concurrency)]
    gen_cmd += ["--batch", str(args.batch), "--rounds", str(args.rounds)]
    gen = subprocess.run(gen_cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in gen.stdout.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

WRK_SCRIPT = r"""
-- POST bodies from a file (one per line), cycled; a JSON summary line at the end
local reqs = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("POST", args[2], {["Content-Type"] = "application/json"}, line)
  end
  i = tonumber(args[3] or "0") % #reqs
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests": %d, "duration_us": %d, "status_errors": %d, ' ..
    '"socket_errors": %d, "p50_us": %.1f, "p99_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50.0), latency:percentile(99.0)))
end
"""


def _wrk(
    url: str, script: Path, bodies: Path, path: str, connections: int, seconds: int
) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    cmd += ["-s", str(script), url, "--", str(bodies), path, "7"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK-RESULT "))
    r = json.loads(line.removeprefix("WRK-RESULT "))
    return {
        "requests": r["requests"],
        "errors": r["status_errors"] + r["socket_errors"],
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000.0,
        "p99_ms": r["p99_us"] / 1000.0,
    }


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes ``pids`` have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def wrk_rounds(
    args: argparse.Namespace, port: int, folder: Path, server_pids: list[int]
) -> list[dict[str, Any]]:
    """The phases with wrk (one thread, ``--concurrency`` connections), after a warm-up, with
    the server's CPU time per request (``server_cpu_us``)."""
    script = folder / "bench.lua"
    script.write_text(WRK_SCRIPT)
    files = {}
    for name, bodies in request_bodies(args.batch).items():
        files[name] = folder / f"{name}.bodies"
        files[name].write_bytes(b"\n".join(bodies) + b"\n")
    url = f"http://127.0.0.1:{port}"
    seconds = max(1, round(args.duration))
    rounds = []
    for _ in range(args.rounds):
        result = {}
        for name, path in PHASES:
            _wrk(url, script, files[name], path, args.concurrency, 1)  # warm-up
            cpu0 = cpu_seconds(server_pids)
            result[name] = _wrk(url, script, files[name], path, args.concurrency, seconds)
            used = cpu_seconds(server_pids) - cpu0
            result[name]["server_cpu_us"] = used / max(result[name]["requests"], 1) * 1e6
        rounds.append(result)
    return rounds


def _median_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase: the median of each figure over the rounds (errors: the total)."""
    out: dict[str, Any] = {}
    for name, _ in PHASES:
        runs = [r[name] for r in rounds]
        out[name] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        out[name]["errors"] = sum(x["errors"] for x in runs)
    return out


# --------------------------------------------------------------------------------------------
# In-process decision time and worker memory
# --------------------------------------------------------------------------------------------


def in_process(policy: Path, n: int = 5000) -> dict[str, float]:
    from serving.app import DecisionRequest
    from serving.policy_runtime import DecisionRuntime

    rt = DecisionRuntime("default", str(policy))
    assert rt.live is not None
    states = [DecisionRequest.model_validate(s).to_state() for s in device_states(512, seed=1)]
    times = []
    perf = time.perf_counter
    for i in range(n):
        s = states[i % len(states)]
        t0 = perf()
        rt.decide(s)
        times.append(perf() - t0)
    obs = np.random.default_rng(0).random((1, rt.spec.obs_dim), dtype=np.float32)
    mask = np.ones((1, rt.layout.n_actions), dtype=bool)
    ort_times = []
    for _ in range(n):
        t0 = perf()
        rt.live.run(obs, mask)
        ort_times.append(perf() - t0)
    return {
        "decide_p50_us": statistics.median(times) * 1e6,
        "decide_p99_us": float(np.percentile(times, 99)) * 1e6,
        "onnxruntime_p50_us": statistics.median(ort_times) * 1e6,
    }


def rss_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def _worker_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(x) for x in children.read_text().split()] if children.exists() else []
    return kids or [pid]


def server_command(
    args: argparse.Namespace, policy: Path, port: int, folder: Path, edge_url: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """uvicorn serving :func:`bench_app`, configured through the environment variables that
    ``offload-rl serve`` sets for :func:`serving.app.app_from_env`."""
    here = Path(__file__).resolve()
    cmd = [sys.executable, "-m", "uvicorn", f"{here.stem}:bench_app", "--factory"]
    cmd += ["--app-dir", str(here.parent), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(args.workers), "--log-level", "warning", "--no-access-log"]
    env = dict(os.environ)
    env["OFFLOAD_RL_POLICY"] = str(policy)
    env["OFFLOAD_RL_MICRO_BATCHING"] = "0" if args.no_micro_batching else "1"
    env["OFFLOAD_RL_GC_FREEZE"] = "0" if args.no_gc_freeze else "1"
    if edge_url is not None:  # the edge adapter, as `offload-rl serve --edge-metrics-url`
        from serving.edge_state.settings import EdgeSettings

        edge = EdgeSettings(metrics_url=edge_url, poll_interval_s=args.edge_poll_interval)
        env.update(edge.check().to_env())
    if args.workers > 1:  # /metrics then sums every worker's files
        prometheus = folder / "prometheus"
        prometheus.mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus)
    return cmd, env


def micro_batches(metrics_text: str) -> dict[str, float]:
    """From ``/metrics``: micro-batches, mean decisions per batch, and the share of batches of
    at most 1, 4 and 8 decisions (the buckets are cumulative counts)."""
    buckets = {float(le): float(n) for le, n in _BUCKET.findall(metrics_text)}
    total = buckets.get(float("inf"), 0.0)
    found = re.search(r"^offload_rl_micro_batch_size_sum (\S+)$", metrics_text, re.MULTILINE)
    decisions = float(found.group(1)) if found else 0.0
    out = {"batches": total, "mean": decisions / total if total else float("nan")}
    for size in (1.0, 4.0, 8.0):
        out[f"le{size:g}"] = buckets.get(size, 0.0) / total if total else float("nan")
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", type=Path, default=None, help="ONNX policy to serve")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=8, help="connections")
    parser.add_argument("--batch", type=int, default=256, help="states per batch request")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument(
        "--rounds", type=int, default=3, help="run the phases N times, report the medians"
    )
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk (if installed: auto) or the Python one",
    )
    parser.add_argument(
        "--no-micro-batching", action="store_true", help="serve with --no-micro-batching"
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="serve without the serve process's garbage-collector freeze (its 'before')",
    )
    parser.add_argument(
        "--edge-adapter",
        action="store_true",
        help="measure without and with the edge adapter (pulling vLLM-format metrics), both",
    )
    parser.add_argument(
        "--edge-poll-interval", type=float, default=1.0, help="the adapter's poll interval, s"
    )
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.loadgen:
        loadgen(args)
        return 0
    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    elif generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--load-generator wrk: wrk is not installed")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        policy = args.policy or untrained_policy(Path(tmp))
        measured = measure_server(args, generator, Path(policy), Path(tmp))
        local = in_process(Path(policy))
        if args.edge_adapter:
            from serving.edge_state.stand_in import MetricsServer, vllm_metrics_text

            with MetricsServer(vllm_metrics_text(running=6, waiting=2, kv_usage=0.55)) as endpoint:
                with_edge = measure_server(
                    args, generator, Path(policy), Path(tmp), edge_url=endpoint.url
                )
                with_edge["metrics_scrapes"] = endpoint.hits
            local_edge = in_process_edge(Path(policy))
    if args.edge_adapter:
        print("=== without the edge adapter ===")
    report(args, generator, measured, local)
    if args.edge_adapter:
        print("\n=== with the edge adapter (pulling vLLM-format metrics) ===")
        report(args, generator, with_edge, local)
        print(
            f"edge state at the end: {with_edge['edge']['status']} "
            f"(age {with_edge['edge']['age_s']} s, {with_edge['metrics_scrapes']} scrapes, "
            f"{with_edge['edge']['errors']} failed)"
        )
        print(
            f"in-process decision with the edge view: v1 body p50 {local_edge['v1_p50_us']:.1f} "
            f"us, v2 body p50 {local_edge['v2_p50_us']:.1f} us "
            f"(p99 {local_edge['v1_p99_us']:.1f} / {local_edge['v2_p99_us']:.1f} us)"
        )
        targets(args, measured, local, with_edge, local_edge)
    return 0


# --------------------------------------------------------------------------------------------
# The edge adapter: the in-process edge path, the targets
# --------------------------------------------------------------------------------------------


def in_process_edge(policy: Path, n: int = 5000) -> dict[str, float]:
    """Decision time through the edge-aware decider (view read, state joined, decided)."""
    from serving.app import DecisionRequest
    from serving.edge_state.decider import EdgeDecider
    from serving.edge_state.mapping import EdgeDefaults, report_from_vllm
    from serving.edge_state.prometheus_text import parse_exposition
    from serving.edge_state.stand_in import vllm_metrics_text
    from serving.edge_state.store import EdgeStateStore
    from serving.policy_runtime import DecisionRuntime
    from serving.schemas_v2 import DeviceDecisionRequest

    rt = DecisionRuntime("default", str(policy))
    store = EdgeStateStore(EdgeDefaults.of(rt.scenario), max_age_s=1e6)
    text = vllm_metrics_text(running=6, waiting=2, kv_usage=0.55)
    store.put(report_from_vllm(parse_exposition(text)), "pull")
    bodies = device_states(512, seed=1)
    out: dict[str, float] = {}
    versions: tuple[Literal[1, 2], ...] = (1, 2)
    for version in versions:
        decider = EdgeDecider(rt, store, version, store.defaults)
        if version == 1:
            reqs: list[Any] = [DecisionRequest.model_validate(b) for b in bodies]
        else:
            drop = ("edge_kv_occupancy", "edge_load")
            reqs = [
                DeviceDecisionRequest.model_validate({k: v for k, v in b.items() if k not in drop})
                for b in bodies
            ]
        times = []
        perf = time.perf_counter
        for i in range(n):
            req = reqs[i % len(reqs)]
            t0 = perf()
            decider.decide(decider.resolver()(req))
            times.append(perf() - t0)
        out[f"v{version}_p50_us"] = statistics.median(times) * 1e6
        out[f"v{version}_p99_us"] = float(np.percentile(times, 99)) * 1e6
    return out


def targets(
    args: argparse.Namespace,
    plain: dict[str, Any],
    local: dict[str, float],
    edge: dict[str, Any],
    local_edge: dict[str, float],
) -> None:
    """The serving targets, without and with the adapter, as a markdown table."""

    def ratio(m: dict[str, Any]) -> float:
        return statistics.median(r["decide"]["rps"] / r["noop"]["rps"] for r in m["rounds"])

    def rss(m: dict[str, Any]) -> float:
        return max(mem.get("VmHWM", 0.0) for mem in m["memory"].values())

    rows = [
        ("decide / no-op at " + str(args.concurrency) + " conns", ">= 0.85",
         f"{ratio(plain):.2f}", f"{ratio(edge):.2f}"),
        ("decide p99", "< 5 ms", f"{plain['http']['decide']['p99_ms']:.2f} ms",
         f"{edge['http']['decide']['p99_ms']:.2f} ms"),
        ("batch decisions/s", ">= 100k", f"{plain['http']['batch']['rps'] * args.batch:.0f}",
         f"{edge['http']['batch']['rps'] * args.batch:.0f}"),
        ("in-process p50", "< 30 us", f"{local['decide_p50_us']:.1f} us",
         f"{local_edge['v1_p50_us']:.1f} us (v2 {local_edge['v2_p50_us']:.1f})"),
        ("worker peak RSS", "< 150 MB", f"{rss(plain):.0f} MiB", f"{rss(edge):.0f} MiB"),
    ]  # fmt: skip
    print("\n| figure | target | without adapter | with adapter |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _wait_ready(server: subprocess.Popen[bytes], port: int) -> dict[str, Any]:
    """The server's /readyz answer once it gives one (one minute at most)."""
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return dict(httpx.get(f"http://127.0.0.1:{port}/readyz").json())
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def measure_server(
    args: argparse.Namespace, generator: str, policy: Path, tmp: Path, edge_url: str | None = None
) -> dict[str, Any]:
    """Start ``offload-rl serve``'s app, run the rounds, read its batch sizes and memory."""
    import httpx

    port = _free_port()
    serve_cmd, serve_env = server_command(args, policy, port, tmp, edge_url)
    server = subprocess.Popen(serve_cmd, cwd=ROOT, env=serve_env)
    try:
        ready = _wait_ready(server, port)
        if generator == "wrk":
            rounds = wrk_rounds(args, port, tmp, _worker_pids(server.pid))
        else:
            rounds = python_rounds(args, port)
        return {
            "ready": ready,
            "rounds": rounds,
            "http": _median_rounds(rounds),
            "batching": micro_batches(httpx.get(f"http://127.0.0.1:{port}/metrics").text),
            "memory": {pid: rss_mib(pid) for pid in _worker_pids(server.pid)},
            "edge": httpx.get(f"http://127.0.0.1:{port}/v1/edge/state").json(),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def report(
    args: argparse.Namespace, generator: str, measured: dict[str, Any], local: dict[str, float]
) -> None:
    """Print the figures (the README's decision-service row quotes these lines)."""
    http, rounds, batching = measured["http"], measured["rounds"], measured["batching"]
    d, noop, b = http["decide"], http["noop"], http["batch"]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(
        f"server: offload-rl serve's app, {args.workers} worker(s), policy "
        f"{measured['ready']['version'][:12]}, micro-batching "
        f"{'off' if args.no_micro_batching else 'on'}, "
        f"GC freeze {'off' if args.no_gc_freeze else 'on'}"
    )
    rounds_text = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"load generator: {generator}, {args.duration:g} s per phase{rounds_text}")
    for label, m in (("POST /v1/decide   ", d), ("POST /_bench/noop ", noop)):
        print(
            f"{label}     {args.concurrency} conns: {m['rps']:8.0f} req/s   "
            f"p50 {m['p50_ms']:.2f} ms   p99 {m['p99_ms']:.2f} ms   errors {m['errors']}"
        )
    ratios = [r["decide"]["rps"] / r["noop"]["rps"] for r in rounds]  # each within one round
    each = f" (rounds: {', '.join(f'{x:.2f}' for x in ratios)})" if len(ratios) > 1 else ""
    median = "median " if len(ratios) > 1 else ""
    print(f"decide / no-op throughput ratio: {median}{statistics.median(ratios):.2f}{each}")
    if batching["batches"]:
        print(
            f"micro-batches of POST /v1/decide (warm-ups included): {batching['batches']:.0f}, "
            f"mean {batching['mean']:.2f} decisions each; batches of <= 1: "
            f"{batching['le1']:.0%}, <= 4: {batching['le4']:.0%}, <= 8: {batching['le8']:.0%}"
        )
    if "server_cpu_us" in d:
        print(
            f"server CPU per request: decide {d['server_cpu_us']:.0f} us, no-op "
            f"{noop['server_cpu_us']:.0f} us "
            f"(ratio {noop['server_cpu_us'] / d['server_cpu_us']:.2f}; "
            "a batch of decisions also sends its responses together, so the connections move in "
            "step and the loop polls less per request: the decide rate can exceed the no-op's)"
        )
    print(
        f"POST /v1/decide/batch  batch {args.batch}, {args.concurrency} conns: "
        f"{b['rps'] * args.batch:8.0f} decisions/s ({b['rps']:.1f} req/s, "
        f"p50 {b['p50_ms']:.1f} ms)   errors {b['errors']}"
    )
    print(
        f"in-process decision (encoder + mask + onnxruntime): p50 {local['decide_p50_us']:.1f} us, "
        f"p99 {local['decide_p99_us']:.1f} us; onnxruntime alone p50 "
        f"{local['onnxruntime_p50_us']:.1f} us"
    )
    for pid, mem in measured["memory"].items():
        print(
            f"worker {pid}: resident {mem.get('VmRSS', 0):.0f} MiB (peak {mem.get('VmHWM', 0):.0f})"
        )


if __name__ == "__main__":
    sys.exit(main())
