"""``make demo``: the whole pipeline on the embedded default scenario, in a few minutes.

1. summarise the default scenario (what it resolves to);
2. evaluate the heuristics, the hindsight oracle and the shipped policy on the same episodes;
3. train a short PPO run with TensorBoard logs;
4. export it to ONNX (with the parity check);
5. start the decision service, send decisions through the client, stop the service;
6. the cell (EdgeCell-v0: phones sharing one edge GPU): the tuned heuristics and the shipped
   cell policy (``offload_rl/data/policies/cell.onnx``) side by side on short cell episodes;
7. the decision service with the shipped cell policy and the edge adapter pulling a
   vLLM-format metrics endpoint (a stand-in, :mod:`serving.edge_state.stand_in`), answering
   a few simulated devices through ``POST /v2/decide`` while the edge's KV usage and queue
   change;
8. print the summary tables and where the TensorBoard logs and the reports are.

Everything goes under ``demo-out/`` (git-ignored). Needs nothing from ``../shared``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from serving.shipped import shipped_policy_path

if TYPE_CHECKING:
    from serving.client import DeviceState

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo-out"
CLI = [sys.executable, "-m", "offload_rl"]
console = Console()


def run(step: str, args: list[str]) -> None:
    """Run one CLI step, streaming its output; stop the demo if it fails."""
    console.rule(f"[bold]{step}")
    console.print("$ offload-rl " + " ".join(args), style="dim")
    t0 = time.perf_counter()
    proc = subprocess.run([*CLI, *args], cwd=ROOT, check=False)
    if proc.returncode != 0:
        console.print(f"[red]step failed ({step}), exit status {proc.returncode}")
        sys.exit(proc.returncode)
    console.print(f"[green]done in {time.perf_counter() - t0:.1f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CELL_POLICIES = "shipped,greedy,greedy-externality,thermal-mpc,lyapunov"
# what the stand-in edge reports in turn: (label, running, waiting, KV usage)
EDGE_CONDITIONS: tuple[tuple[str, int, int, float], ...] = (
    ("calm", 2, 0, 0.10),
    ("KV full", 4, 0, 0.97),
    ("queue", 16, 60, 0.60),
)


def wait_ready(url: str, server: subprocess.Popen[bytes]) -> dict[str, object]:
    """Poll ``/readyz`` until the service answers (or its process ends)."""
    import httpx

    for _ in range(240):
        if server.poll() is not None:
            break
        try:
            ready: dict[str, object] = httpx.get(f"{url}/readyz", timeout=1.0).json()
            return ready
        except httpx.HTTPError:
            time.sleep(0.25)
    console.print("[red]the decision service did not start")
    sys.exit(1)


def serve_and_query(n_decisions: int) -> dict[str, object]:
    """Start the service on a free port, query it through the client, stop it."""
    from envs.split_cache import SplitCacheEnv
    from serving.client import DecisionClient

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    console.rule("[bold]5. decision service + client")
    console.print(f"$ offload-rl serve --port {port}", style="dim")
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = DecisionClient(url, timeout=1.0)
        ready = wait_ready(url, server)
        env = SplitCacheEnv("default", episode_requests=n_decisions)
        env.reset(seed=7)
        sources: dict[str, int] = {}
        tiers: dict[str, int] = {}
        t0 = time.perf_counter()
        for _ in range(n_decisions):
            decision = client.decide(env.state)
            sources[decision.source] = sources.get(decision.source, 0) + 1
            tiers[decision.tier] = tiers.get(decision.tier, 0) + 1
            env.step(decision.action)
        elapsed = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=10)
    console.print(f"readyz: {ready}")
    console.print(f"{n_decisions} decisions in {elapsed:.2f} s; sources {sources}; tiers {tiers}")
    return {"ready": ready, "sources": sources, "tiers": tiers, "seconds": elapsed}


def simulated_devices(n: int) -> list[DeviceState]:
    """``n`` devices of the cell as they stand when each places a request: the states
    EdgeCell-v0 builds (phones of every class, their heat, radio and link), as the v2 body
    (what a device itself knows; the edge's state is the service's business)."""
    from envs.edge_cell import EdgeCellEnv
    from offload_rl.cell.radio import RADIO_STATES
    from offload_rl.cell.thermal import DEVICE_CLASSES, OS_LEVELS
    from offload_rl.features import RequestFacts
    from serving.client import DeviceState

    env = EdgeCellEnv("cell", episode_requests=256)
    env.reset(seed=11)
    greedy = resolve_policy_for_demo(env)
    # the facts the cell state and the v2 body share (the rest are named, or indices there)
    own = ("device_memory_layers", "prev_output_tokens", "since_last_turn_s", "throughput_age_s")
    shared = [f.name for f in dataclasses.fields(RequestFacts)] + list(own)
    devices: list[DeviceState] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(256):
        s = env.state
        key = (s.device_class, s.thermal_level)
        if key not in seen:  # one device of each (class, heat) met
            seen.add(key)
            devices.append(
                DeviceState(
                    **{name: getattr(s, name) for name in shared},
                    thermal_level=OS_LEVELS[s.thermal_level],
                    radio_state=RADIO_STATES[s.radio_state],
                    device_class=list(DEVICE_CLASSES)[s.device_class],
                )
            )
            if len(devices) == n:
                break
        env.step(greedy.act(s, env.action_masks()))
    return devices


def resolve_policy_for_demo(env: Any) -> Any:
    """The cell's tuned greedy, to move the simulated cell along."""
    from agents.policies import resolve_policy

    return resolve_policy("greedy", env.scenario)


def serve_cell_and_query(policy: Path, n_devices: int) -> list[dict[str, str]]:
    """The service with the shipped cell policy and the pull adapter on a stand-in vLLM
    metrics endpoint; every simulated device asks ``/v2/decide`` under each edge condition."""
    import httpx

    from serving.client import DecisionClient
    from serving.edge_state.stand_in import MetricsServer, vllm_metrics_text

    t0 = time.perf_counter()
    devices = simulated_devices(n_devices)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rows: list[dict[str, str]] = [
        {
            "device": f"{d.device_class} {d.thermal_level} {d.radio_state}",
            "Mbps": f"{float(d.throughput_mbps[-1]):.1f}",
            "tokens": f"{d.new_tokens}+{d.context_tokens}",
        }
        for d in devices
    ]
    console.rule("[bold]7. decision service in the cell: shipped cell policy + edge adapter")
    with MetricsServer(vllm_metrics_text()) as metrics:
        args = ["serve", "--policy", str(policy), "--port", str(port), "--watch-interval", "0"]
        args += ["--edge-metrics-url", metrics.url, "--edge-poll-interval", "0.2"]
        args += ["--log-level", "warning"]
        console.print("$ offload-rl " + " ".join(args), style="dim")
        server = subprocess.Popen(
            [*CLI, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_ready(url, server)
            client = DecisionClient(url, timeout=1.0, scenario="cell")
            for label, running, waiting, kv in EDGE_CONDITIONS:
                metrics.text = vllm_metrics_text(running=running, waiting=waiting, kv_usage=kv)
                for _ in range(100):  # until the service has pulled the new state
                    view = httpx.get(f"{url}/v1/edge/state", timeout=1.0).json().get("view")
                    if view and view["edge_waiting"] == waiting and view["edge_running"] == running:
                        break
                    time.sleep(0.1)
                column = label
                for row, device in zip(rows, devices, strict=True):
                    d = client.decide_device(device)
                    who = "" if d.source == "service" and not d.service_fallback else " *"
                    fresh = "" if d.edge_state == "fresh" else f" ({d.edge_state or 'no edge'})"
                    row[column] = f"{d.meaning}{who}{fresh}"
        finally:
            server.terminate()
            server.wait(timeout=10)
    conditions = "; ".join(
        f"{label}: KV {kv:.0%}, {running} running, {waiting} queued"
        for label, running, waiting, kv in EDGE_CONDITIONS
    )
    table = Table(
        title="/v2/decide answers: the shipped cell policy as the edge fills up",
        caption=f"device: class, heat, radio; tokens: new+context. Edge {conditions}",
    )
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    console.print(f"[green]done in {time.perf_counter() - t0:.1f} s")
    console.print(
        "every answer on the edge state the service pulled (fresh) unless marked; "
        "* = a fallback answered",
        style="dim",
    )
    return rows


def cell_table(metrics_path: Path) -> Table:
    """Per load: the tuned heuristics and the shipped cell policy, the cell's figures."""
    loads = json.loads(metrics_path.read_text())["loads"]
    table = Table(
        title="the cell (EdgeCell-v0): shipped cell policy vs tuned heuristics",
        caption="1 episode x 64 decisions per load: compare rows with each other only; the "
        "settled score depends on episode length (docs/CELL_HEURISTICS.md), and "
        "docs/CELL_RESULTS.md's figures are 256-decision episodes",
    )
    for col in ("load", "policy", "reward/dec", "p95 latency s", "SLO viol.", "J/dec", "edge"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for level, per_policy in loads.items():
        for name, m in per_policy.items():
            table.add_row(
                f"x{level}",
                name,
                f"{m['mean_reward']:.3f}",
                f"{m['latency_p95_s']:.1f}",
                f"{m['slo_violation_rate']:.1%}",
                f"{m['energy_j_per_decision']:.1f}",
                f"{m['tier_share'].get('edge', 0.0):.0%}",
            )
    return table


def main() -> None:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    started = time.perf_counter()

    run("1. scenario", ["scenario", "show", "default"])

    policies = "local,edge,cloud,greedy,random,oracle"
    shipped = shipped_policy_path(cell=False)
    if shipped is not None:
        policies += ",shipped"
    run(
        "2. evaluate heuristics, oracle and the shipped policy",
        [
            *("evaluate", "--policies", policies, "--episodes", "2", "--requests", "128"),
            *("--out", str(OUT / "eval"), "--workers", "2"),
        ],
    )

    run(
        "3. short PPO training run",
        ["train", "--config", "experiments/configs/train_demo.yaml", "--out", str(OUT / "train")],
    )
    run(
        "4. export to ONNX (parity on 10,000 observations)",
        ["export", str(OUT / "train"), "--out", str(OUT / "policy.onnx")],
    )
    service = serve_and_query(64)

    cell_policy = shipped_policy_path(cell=True)
    cell_policies = CELL_POLICIES if cell_policy else CELL_POLICIES.replace("shipped,", "")
    run(
        "6. the cell: tuned heuristics and the shipped cell policy (short episodes)",
        [
            *("evaluate", "--scenario", "cell", "--policies", cell_policies, "--loads", "1,2"),
            *("--episodes", "1", "--requests", "64", "--workers", "2", "--no-progress"),
            *("--out", str(OUT / "cell_eval")),
        ],
    )
    cell_service = serve_cell_and_query(cell_policy, 5) if cell_policy else []

    metrics = json.loads((OUT / "eval" / "metrics.json").read_text())["policies"]
    table = Table(title="offload-rl demo: default scenario (2 episodes x 128 requests per family)")
    for col in ("policy", "mean reward", "mean latency s", "p95 latency s", "SLO viol.", "J/req"):
        table.add_column(col, justify="right" if col != "policy" else "left")
    for name, m in metrics.items():
        table.add_row(
            name,
            f"{m['mean_reward']:.3f}",
            f"{m['mean_latency_s']:.2f}",
            f"{m['latency_p95_s']:.2f}",
            f"{m['slo_violation_rate']:.1%}",
            f"{m['energy_j_per_request']:.1f}",
        )
    console.print(table)
    console.print(cell_table(OUT / "cell_eval" / "metrics.json"))
    summary = Table(title="where things are", show_header=False)
    summary.add_row("evaluation report", str(OUT / "eval" / "report.md"))
    summary.add_row("evaluation TensorBoard", f"tensorboard --logdir {OUT / 'eval' / 'tb'}")
    summary.add_row("training TensorBoard", f"tensorboard --logdir {OUT / 'train' / 'tb'}")
    summary.add_row("exported policy", str(OUT / "policy.onnx"))
    summary.add_row("service decisions", json.dumps(service["sources"]))
    summary.add_row("shipped policy", str(shipped) if shipped else "none (service degraded)")
    summary.add_row("cell evaluation report", str(OUT / "cell_eval" / "report.md"))
    summary.add_row("shipped cell policy", str(cell_policy) if cell_policy else "none")
    summary.add_row("cell service answers", f"{len(cell_service)} devices x {len(EDGE_CONDITIONS)}")
    summary.add_row("total time", f"{time.perf_counter() - started:.0f} s")
    console.print(summary)


if __name__ == "__main__":
    main()
