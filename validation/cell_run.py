"""``offload-rl validate --cell``: ``EdgeCell-v0`` against a real cell of processes.

Before the run it measures this machine's profile of the model with the runtime's thread count
and batch sizes (:mod:`validation.profiling`: ``offload_rl.profiler.measure_profile`` with
``batch_sizes`` and ``in_stack``, what ``offload-rl profile --batch-sizes ... --in-stack`` runs;
cached in ``--out``), and the simulator prices the edge's iterations with its in-stack step
table (:func:`offload_rl.cell.batch_roofline.for_profile`, whatever hardware the profile names).
Then, for each load level (a device's mean gap between requests), it starts one edge process
(:mod:`validation.runtime.cell_edge`: continuous batching over real transformer layers, a KV
pool, eviction and preemption) and ``K`` device processes
(:mod:`validation.runtime.cell_device`: each its own paced link, its own sessions), the decision
service beside them (``offload-rl serve --edge-push``; the edge pushes its state, each device
asks per request). The devices' records (what was decided, when each request started, its
measured TTFT and total latency) are replayed through the simulator with the same decisions
(:mod:`validation.cell_replay`), and :mod:`validation.cell_summary` compares them.

Every process runs one torch thread (``--threads``). Outputs under ``--out``: ``validation.json``,
``validation.md`` and the plots (:mod:`validation.cell_report`), the raw logs per load level.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from offload_rl.cell.batch_roofline import BatchRoofline, for_profile
from offload_rl.errors import OffloadRLError
from offload_rl.model_shapes import ArchSpec
from offload_rl.scenario import CloudConfig, Scenario
from validation.cell_config import CellValidationConfig, check_cell_config, usable_cpus
from validation.cell_replay import DeviceLink, simulate
from validation.config import TraceSpec, check_config, parse_traces, say
from validation.cpu_load import CpuLoad, load_average
from validation.request_stream import replay_requests
from validation.runtime import pinned
from validation.runtime.link import now
from validation.runtime.model import arch_to_json

SERVICE_START_TIMEOUT_S = 60.0
NO_CLOUD_QUEUE_S = 3600.0
SESSION_STRIDE = 100_000  # session ids: (level * 64 + device) * stride + the stream's session
RUN_SEED_STRIDE = 10_000_000  # a repeat's streams: seeds apart from every level's and device's


class CellRunError(OffloadRLError):
    """A process of the cell runtime failed."""


@dataclass(frozen=True)
class Placement:
    """Which CPUs the edge and everything else run on (``--pin-edge``), or anywhere."""

    edge: frozenset[int] = frozenset()
    others: frozenset[int] = frozenset()

    @classmethod
    def of(cls, cfg: CellValidationConfig) -> Placement:
        """The last usable CPU for the edge, the rest for the others (``pin_edge``)."""
        if not cfg.pin_edge:
            return cls()
        cpus = usable_cpus()
        edge = max(cpus)
        return cls(frozenset({edge}), frozenset(cpus - {edge}))

    def python(self, role: str, args: list[str]) -> list[str]:
        """The command line that runs ``python ARGS`` as ``role`` (``edge`` or other)."""
        cpus = self.edge if role == "edge" else self.others
        return pinned.command(set(cpus), args) if cpus else [sys.executable, *args]

    def as_json(self) -> dict[str, list[int]] | None:
        if not self.edge:
            return None
        return {"edge_cpus": sorted(self.edge), "other_cpus": sorted(self.others)}


def run_cell_validation(cfg: CellValidationConfig) -> dict[str, Any]:
    """Profile, run every load level, replay, compare; writes under ``cfg.out``; the JSON."""
    from validation.cell_report import write_cell_outputs
    from validation.cell_summary import summarise_cell
    from validation.decisions import validation_scenario
    from validation.profiling import measured_profile
    from validation.runtime.model import resolve_arch

    check_config(cfg)
    check_cell_config(cfg)
    arch = resolve_arch(cfg.model)
    traces = parse_traces(cfg.traces, cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    place = Placement.of(cfg)
    with _driver_on(place.edge):  # the profile on the edge's CPU (--pin-edge)
        profile, profile_path, reused = measured_profile(
            cfg, arch, cfg.batch_sizes, cfg.max_num_batched_tokens
        )
    batch_cost = for_profile(profile)  # the batched section: its in-stack step table
    batch_source = (
        f"measured batched profile {profile_path.name} (offload_rl.profiler, batch sizes "
        f"{list(cfg.batch_sizes)}, in-stack steps of 1..{max(cfg.batch_sizes)} rows, as "
        f"offload-rl profile --batch-sizes {','.join(map(str, cfg.batch_sizes))} --in-stack; "
        f"{'reused' if reused else 'measured before the run'})"
    )
    pool_bytes = cfg.pool_tokens * batch_cost.n_layers * batch_cost.kv_bytes_per_token_layer
    scenario = cell_scenario(validation_scenario(profile_path, cfg.traces, cfg.rtt_ms))
    scenario_path = cfg.out / "cell-scenario.yaml"
    scenario_path.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
    levels = []
    budgets = (pool_bytes, cfg.max_num_batched_tokens, cfg.max_num_seqs)
    with _driver_on(place.others), _service(cfg, scenario_path, place) as service_url:
        for run in range(cfg.runs):
            for li, gap in enumerate(cfg.gaps_s):
                level = _run_level(
                    cfg,
                    arch,
                    traces,
                    li,
                    gap,
                    pool_bytes,
                    scenario_path,
                    service_url,
                    run,
                    place,
                )
                replay_level(level, scenario, batch_cost, budgets)
                levels.append(level)
    setup = {
        "model": arch.name,
        "n_layers": arch.shape.n_layers,
        "devices": cfg.devices,
        "requests_per_device": cfg.requests,
        "gaps_s": list(cfg.gaps_s),
        "runs": cfg.runs,
        "same_streams": cfg.same_streams,
        "seed": cfg.seed,
        "pinned": place.as_json(),
        "threads_per_process": cfg.threads,
        "rtt_ms": cfg.rtt_ms,
        "traces": list(cfg.traces),
        "policy": cfg.policy,
        "pool_tokens": cfg.pool_tokens,
        "pool_bytes": pool_bytes,
        "max_num_batched_tokens": cfg.max_num_batched_tokens,
        "max_num_seqs": cfg.max_num_seqs,
        "token_ranges": {
            "scale": cfg.token_scale,
            "new": [cfg.min_new, cfg.max_new],
            "output": [cfg.min_out, cfg.max_out],
        },
        "profile": str(profile_path),
        "profile_reused": reused,
        "batch_cost_source": batch_source,
        "batch_cost": _coefficients(batch_cost),
        "batched_fit_error": (
            {part: e.model_dump() for part, e in profile.batched.fit_error.items()}
            if profile.batched is not None
            else None
        ),
        "wall_s": time.monotonic() - started,
    }
    result = summarise_cell(levels, batch_cost, setup)
    write_cell_outputs(result, cfg.out)
    return result


def replay_level(
    level: dict[str, Any],
    scenario: Scenario,
    batch_cost: BatchRoofline,
    budgets: tuple[int, int, int],
) -> None:
    """The simulator's side of one level, into ``level``: the closed-loop replay (the
    validation's figure), and two diagnostics: the open-loop replay and the replay with the
    run's own measured slowdown."""
    replay = (scenario, level["records"], level["links"])
    level["simulated"] = simulate(*replay, batch_cost, *budgets, closed_loop=True)
    level["simulated_open_loop"] = simulate(*replay, batch_cost, *budgets, closed_loop=False)
    slowdown = measured_slowdown(level["edge"]["iterations"], batch_cost)
    level["slowdown"] = slowdown
    level["simulated_slowed"] = simulate(
        *replay, scaled(batch_cost, slowdown), *budgets, closed_loop=True
    )


def cell_scenario(base: Scenario) -> Scenario:
    """The validation's scenario with the cloud out of reach (a mean admission wait of
    :data:`NO_CLOUD_QUEUE_S`: the runtime has no cloud tier) and no link outage declared
    (``network.outage_mbps = 0``: in an outage the mask leaves only the whole model on the
    device, whose compute would share this CPU with the edge under test; a slow link still
    slows the upload, on both sides alike). The devices hold no layer (their states say
    ``device_memory_layers = 0``), so every valid placement is the edge with token ids
    (``k = 0``), keeping the session's KV or not."""
    network = base.network.model_copy(update={"outage_mbps": 0.0})
    return base.model_copy(
        update={"cloud": CloudConfig(queue_s=NO_CLOUD_QUEUE_S), "network": network}
    )


def measured_slowdown(iterations: Sequence[dict[str, Any]], cost: BatchRoofline) -> float:
    """Median of measured / priced seconds over a run's edge iterations: how much slower the
    edge ran than its profile (other processes on the CPU, mostly). A diagnostic only."""
    ratios = [it["measured_s"] / cost.iteration_s(_priced_rows(it)) for it in iterations]
    return float(np.median(ratios)) if ratios else 1.0


def _priced_rows(iteration: dict[str, Any]) -> list[tuple[int, int, int, bool]]:
    """An edge log iteration's rows as ``BatchRoofline.iteration_s`` takes them, each at its
    own split (logs without ``splits`` are token-id cells: every row at ``k = 0``)."""
    seqs = iteration["sequences"]
    splits = iteration.get("splits", [0] * len(seqs))
    return [(k, n, c, smp) for k, (n, c, smp) in zip(splits, seqs, strict=True)]


def scaled(cost: BatchRoofline, factor: float) -> BatchRoofline:
    """``cost`` with every time coefficient x ``factor`` (the diagnostic replay)."""
    from dataclasses import fields, replace

    times = {
        f.name: getattr(cost, f.name) * factor
        for f in fields(cost)
        if f.name not in ("n_layers", "kv_bytes_per_token_layer", "steps")
    }
    steps = None if cost.steps is None else cost.steps.scaled(factor)
    return replace(cost, **times, steps=steps)


def _coefficients(cost: BatchRoofline) -> dict[str, Any]:
    """The batched cost as JSON: the roofline's coefficients, and the step table when set."""
    from dataclasses import asdict, fields

    data: dict[str, Any] = {
        f.name: float(getattr(cost, f.name)) for f in fields(cost) if f.name != "steps"
    }
    if cost.steps is not None:
        data["steps"] = asdict(cost.steps)
    return data


@contextlib.contextmanager
def _driver_on(cpus: frozenset[int]) -> Iterator[None]:
    """This thread on ``cpus`` inside the block (anywhere it was, after; nothing if empty)."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --- the decision service ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _service(cfg: CellValidationConfig, path: Path, place: Placement) -> Iterator[str | None]:
    """``offload-rl serve --edge-push`` for the scenario at ``path``, or None (forced)."""
    if cfg.policy != "service":
        yield None
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = place.python("service", [
        "-m", "offload_rl", "serve", "--scenario", str(path), "--edge-push",
        "--port", str(port), "--watch-interval", "0", "--log-level", "warning",
    ])  # fmt: skip
    log = (cfg.out / "service.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1.0) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CellRunError(f"the decision service did not start; see {log.name}")
            time.sleep(0.2)
        say(cfg, f"decision service at {url} (--edge-push)")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --- one load level ---------------------------------------------------------------------------


def _links(
    cfg: CellValidationConfig, traces: Sequence[TraceSpec], level: int, run: int = 0
) -> list[DeviceLink]:
    """Device ``d`` on trace ``d mod len(traces)`` from a random offset (seeded per level and
    run; run 0 as before runs existed)."""
    rng = np.random.default_rng([cfg.seed, level, 17, *([run] if run else [])])
    out = []
    for d in range(cfg.devices):
        spec = traces[d % len(traces)]
        out.append(DeviceLink(spec.uplink, spec.downlink, float(rng.uniform(0.0, 600.0))))
    return out


def device_requests(
    cfg: CellValidationConfig, max_positions: int, level: int, gap_s: float, run: int = 0
) -> list[list[dict[str, Any]]]:
    """Each device's stream: the default workload's sessions and lengths (as the single-device
    validation scales them), targets ``gap_s`` apart on average (exponential; 0: back to back);
    each repeat ``run`` its own draw."""
    out = []
    for d in range(cfg.devices):
        seed = cfg.seed + 1000 * d + 100_000 * level + RUN_SEED_STRIDE * run
        reqs = replay_requests(cfg, max_positions, seed)
        rng = np.random.default_rng([seed, 3])
        gaps = rng.exponential(gap_s, size=len(reqs)) if gap_s > 0 else np.zeros(len(reqs))
        targets = np.cumsum(gaps)
        base = (level * 64 + d) * SESSION_STRIDE
        out.append(
            [
                {
                    "request_id": d * 10_000 + r.index,
                    "session": base + r.session,
                    "turn": r.turn,
                    "new_tokens": r.new_tokens,
                    "context_tokens": r.context_tokens,
                    "output_tokens": r.output_tokens,
                    "target_s": float(t),
                }
                for r, t in zip(reqs, targets, strict=True)
            ]
        )
    return out


def _trace_json(trace: Any) -> dict[str, Any]:
    return {"mbps": trace.mbps.tolist(), "step_s": trace.step_s, "name": trace.name}


def _run_level(
    cfg: CellValidationConfig,
    arch: ArchSpec,
    traces: Sequence[TraceSpec],
    level: int,
    gap_s: float,
    pool_bytes: int,
    scenario_path: Path,
    service_url: str | None,
    run: int = 0,
    place: Placement | None = None,
) -> dict[str, Any]:
    """One run of the cell runtime at one load level: the devices' records and the edge's log
    (under ``level<i>``, or ``run<r>/level<i>`` when the validation repeats)."""
    started = time.monotonic()
    folder = cfg.out / (f"run{run}/level{level}" if cfg.runs > 1 else f"level{level}")
    folder.mkdir(parents=True, exist_ok=True)
    stream = 0 if cfg.same_streams else run  # --same-streams: every repeat replays run 0's
    links = _links(cfg, traces, level, stream)
    streams = device_requests(cfg, arch.max_positions, level, gap_s, stream)
    edge_log = folder / "edge.json"
    place = place or Placement()
    edge_cmd = place.python("edge", [
        "-m", "validation.runtime.cell_edge", "--devices", str(cfg.devices),
        "--pool-bytes", str(pool_bytes), "--max-num-batched-tokens",
        str(cfg.max_num_batched_tokens), "--max-num-seqs", str(cfg.max_num_seqs),
        "--threads", str(cfg.threads), "--log", str(edge_log),
    ])  # fmt: skip
    if service_url:
        edge_cmd += ["--report-url", service_url]
    label = f"run {run + 1}/{cfg.runs}, " if cfg.runs > 1 else ""
    say(cfg, f"{label}load level {level}: {cfg.devices} devices, mean gap {gap_s:g} s")
    load_before = load_average()
    procs: list[subprocess.Popen[str]] = []
    edge = subprocess.Popen(edge_cmd, stdout=subprocess.PIPE, text=True)
    procs.append(edge)
    try:
        port = _ready_port(edge)
        for d, link in enumerate(links):
            procs.append(
                _start_device(cfg, arch, folder, d, link, port, streams[d], scenario_path,
                              service_url, place)
            )  # fmt: skip
        devices = procs[1:]
        for p in devices:
            _wait_line(p, "CONNECTED")
        monitor = CpuLoad([p.pid for p in procs])
        t0 = now() + cfg.start_margin_s
        for p in devices:
            assert p.stdin is not None
            p.stdin.write(f"{t0!r}\n")
            p.stdin.flush()
        total = sum(len(s) for s in streams)
        _follow(cfg, devices, total, f"{label}level {level} (gap {gap_s:g} s)")
        for p in procs:
            if p.wait(timeout=cfg.device_timeout_s) != 0:
                raise CellRunError(f"a cell process exited with status {p.returncode}")
        others = monitor.others_since_creation()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    records: list[dict[str, Any]] = []
    for d in range(cfg.devices):
        records.extend(json.loads((folder / f"device{d}.json").read_text()))
    log = json.loads(edge_log.read_text())
    shift = float(log["t0"]) - t0  # the edge's times are from its own start: onto the devices'
    for key in ("requests", "iterations"):
        for item in log[key]:
            for field in (
                "arrival_s",
                "taken_s",
                "admit_s",
                "first_token_s",
                "finish_s",
                "start_s",
            ):
                if item.get(field) is not None:
                    item[field] += shift
    return {
        "run": run,
        "level": level,
        "gap_s": gap_s,
        "wall_s": time.monotonic() - started,
        "links": links,
        "records": records,
        "edge": log,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cpus_used_by_other_processes": others,
    }


def _start_device(
    cfg: CellValidationConfig,
    arch: ArchSpec,
    folder: Path,
    d: int,
    link: DeviceLink,
    port: int,
    requests: Sequence[dict[str, Any]],
    scenario_path: Path,
    service_url: str | None,
    place: Placement,
) -> subprocess.Popen[str]:
    """Device ``d``'s process, its job (link, requests, where the edge and service are) saved
    beside its output; it connects, then waits for the start instant on its stdin."""
    from validation.runtime.cell_device import DeviceJob, JobRequest

    job = DeviceJob(
        index=d,
        host="127.0.0.1",
        port=port,
        arch=arch_to_json(arch),
        seed=cfg.seed,
        init_std=cfg.init_std,
        n_layers=arch.shape.n_layers,
        vocab_size=arch.shape.vocab_size,
        uplink=_trace_json(link.uplink),
        downlink=_trace_json(link.downlink),
        offset_s=link.offset_s,
        one_way_s=cfg.rtt_ms / 2000.0,
        t0=-1.0,
        requests=[JobRequest(**r) for r in requests],
        service_url=service_url,
        service_timeout_s=cfg.service_timeout_s,
        scenario_path=str(scenario_path),
        splits=list(cfg.splits),
    )
    job.save(folder / f"device{d}-job.json")
    cmd = place.python("device", [
        "-m", "validation.runtime.cell_device",
        "--job", str(folder / f"device{d}-job.json"),
        "--out", str(folder / f"device{d}.json"),
    ])  # fmt: skip
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _ready_port(edge: subprocess.Popen[str]) -> int:
    line = _wait_line(edge, "EDGE READY port=")
    return int(line.strip().split("=", 1)[1])


def _wait_line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise CellRunError(f"a cell process exited before saying {prefix!r}")
        if line.startswith(prefix):
            return line


def _follow(
    cfg: CellValidationConfig, devices: Sequence[subprocess.Popen[str]], total: int, label: str
) -> None:
    """Count the devices' ``REQ`` lines until each device's output ends (a progress bar)."""
    lock = threading.Lock()
    done = [0]
    tick: Callable[[], None] = lambda: None  # noqa: E731
    progress = None
    if cfg.progress is not None:
        from rich.progress import Progress

        progress = Progress(transient=False)
        task = progress.add_task(label, total=total)
        progress.start()

        def tick() -> None:
            assert progress is not None
            progress.update(task, completed=done[0])

    def read(p: subprocess.Popen[str]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("REQ "):
                with lock:
                    done[0] += 1
                    tick()

    threads = [threading.Thread(target=read, args=(p,), daemon=True) for p in devices]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout=cfg.device_timeout_s)
    finally:
        if progress is not None:
            progress.stop()
