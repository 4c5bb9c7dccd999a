"""``make demo``: the whole pipeline on the embedded default scenario, in a few minutes.

1. summarise the default scenario (what it resolves to);
2. evaluate the heuristics, the hindsight oracle and the shipped policy on the same episodes;
3. train a short PPO run with TensorBoard logs;
4. export it to ONNX (with the parity check);
5. start the decision service, send decisions through the client, stop the service;
6. print a summary table and where the TensorBoard logs and the report are.

Everything goes under ``demo-out/`` (git-ignored). Needs nothing from ``../shared``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

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


def shipped_policy() -> Path | None:
    path = Path(str(resources.files("offload_rl") / "data" / "policies" / "default.onnx"))
    return path if path.is_file() else None


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
        import httpx

        ready: dict[str, object] = {}
        for _ in range(120):
            try:
                ready = httpx.get(f"{url}/readyz", timeout=1.0).json()
                break
            except httpx.HTTPError:
                time.sleep(0.25)
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


def main() -> None:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    started = time.perf_counter()

    run("1. scenario", ["scenario", "show", "default"])

    policies = "local,edge,cloud,greedy,random,oracle"
    shipped = shipped_policy()
    if shipped is not None:
        policies += f",onnx:{shipped}"
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
    summary = Table(title="where things are", show_header=False)
    summary.add_row("evaluation report", str(OUT / "eval" / "report.md"))
    summary.add_row("evaluation TensorBoard", f"tensorboard --logdir {OUT / 'eval' / 'tb'}")
    summary.add_row("training TensorBoard", f"tensorboard --logdir {OUT / 'train' / 'tb'}")
    summary.add_row("exported policy", str(OUT / "policy.onnx"))
    summary.add_row("service decisions", json.dumps(service["sources"]))
    summary.add_row("shipped policy", str(shipped) if shipped else "none (service degraded)")
    summary.add_row("total time", f"{time.perf_counter() - started:.0f} s")
    console.print(summary)


if __name__ == "__main__":
    main()
