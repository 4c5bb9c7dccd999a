"""``offload-rl validate`` end to end: the simulator's latency model against a real split runtime.

It measures a profile of the model on this machine (with the thread count each runtime process
uses; :mod:`validation.profiling`), replays requests of the default workload through the real
runtime (:mod:`validation.runtime`: a device process and an edge process over loopback TCP, the
link paced to a trace; :mod:`validation.replay`) and through
:func:`offload_rl.cost_model.request_cost` with the *same* action, trace, trace time and cached
positions (:mod:`validation.prediction`), and reports the prediction error per split class
(:mod:`validation.summary`, :mod:`validation.report`).

Outputs (``--out DIR``): ``validation.json`` (overall and per split class: median and p90
absolute percentage error of total latency and TTFT, the components, every request),
``validation.md`` (tables), ``scatter.png`` (predicted vs measured), the profile used.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from offload_rl.compiled_profile import CompiledProfile
from offload_rl.cost_model import Tiers
from offload_rl.model_shapes import ArchSpec
from offload_rl.profiles import Profile
from offload_rl.scenario_facts import ScenarioFacts, scenario_facts
from validation.config import (
    TraceSpec,
    ValidationConfig,
    check_config,
    parse_traces,
    replay_splits,
    say,
)
from validation.cpu_load import CONTENTION_CPUS, CpuLoad, load_average
from validation.decisions import Decide, decider, validation_scenario
from validation.profiling import measured_profile, stack_profile
from validation.replay import Replay
from validation.report import write_outputs
from validation.request_stream import replay_requests
from validation.rows import Row
from validation.summary import summarise

FORCED_TEXT = "forced: each session gets one split class, round robin over sessions; keep"
SIMULATOR_TEXT = "offload_rl.cost_model.request_cost, unmodified; edge queue 0, slowdown 1"
ProfileEntry = tuple[Profile, Path, bool]  # the profile, its file, whether it was reused


def run_validation(cfg: ValidationConfig) -> dict[str, Any]:
    """Replay, predict, compare; writes the outputs under ``cfg.out`` and returns the JSON.

    torch's thread count is set to ``cfg.threads`` while it runs and restored afterwards.
    """
    from offload_rl.profiler import require_torch

    torch, _ = require_torch()
    previous = torch.get_num_threads()
    try:
        return _run_validation(cfg)
    finally:
        torch.set_num_threads(previous)


def _run_validation(cfg: ValidationConfig) -> dict[str, Any]:
    from validation.runtime.device import DeviceRuntime
    from validation.runtime.model import SplitModel, resolve_arch

    check_config(cfg)
    arch = resolve_arch(cfg.model)
    splits = replay_splits(cfg, arch.shape.n_layers)
    traces = parse_traces(cfg.traces, cfg.seed)  # bad input fails before minutes of profiling
    cfg.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    base = measured_profile(cfg, arch)
    model = SplitModel.build(arch, seed=cfg.seed, init_std=cfg.init_std)
    profiles = {"profiler": base}
    if cfg.profile_method == "stack":
        profiles["stack"] = stack_profile(cfg, base[0], base[2], model)
    primary = cfg.profile_method
    decide: Decide | None = None
    decider_text = FORCED_TEXT
    facts: ScenarioFacts | None = None
    if cfg.policy != "forced":
        scenario = validation_scenario(profiles[primary][1], cfg.traces, cfg.rtt_ms)
        facts = scenario_facts(scenario)
        decide, decider_text = decider(cfg, scenario)

    say(cfg, "starting the edge")
    load_before = load_average()
    with (
        _edge(cfg) as (port, edge_pid),
        DeviceRuntime(
            model,
            "127.0.0.1",
            port,
            threads=None if cfg.edge_in_thread else cfg.threads,
            seed=cfg.seed,
        ) as device,
    ):
        monitor = CpuLoad([edge_pid] if edge_pid is not None else [])
        replay = Replay(cfg, device, _tiers(profiles), primary, splits, decide, monitor, facts)
        if cfg.warmup:
            replay.warm_up()
        rows, offsets = _replay_traces(cfg, replay, traces, arch.max_positions)
        others = monitor.others_since_creation()
    setup = {
        **_setup(cfg, arch, splits, traces, offsets, profiles, decider_text),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cpus_used_by_other_processes": others,
        "contention_threshold_cpus": CONTENTION_CPUS,
        "waited_for_quiet_s": replay.waited_s,
        "wall_s": time.monotonic() - started,
        "simulator": SIMULATOR_TEXT,
    }
    result = summarise(rows, setup, primary)
    write_outputs(result, cfg.out)
    return result


def _tiers(profiles: dict[str, ProfileEntry]) -> dict[str, Tiers]:
    """Each profile as the three tiers (the same machine plays device and edge)."""
    tiers = {}
    for label, (prof, _, _) in profiles.items():
        compiled = CompiledProfile.from_profile(prof)
        tiers[label] = Tiers(device=compiled, edge=compiled, cloud=compiled)
    return tiers


@contextmanager
def _edge(cfg: ValidationConfig) -> Iterator[tuple[int, int | None]]:
    """The edge, in its own process (or a thread of this one, for tests): its port and pid."""
    from validation.runtime.device import start_edge_process
    from validation.runtime.edge import EdgeServer

    if cfg.edge_in_thread:
        server = EdgeServer(threads=None)
        server.start_thread()
        try:
            yield server.port, None
        finally:
            server.close()
        return
    edge_proc, port = start_edge_process(threads=cfg.threads)
    try:
        yield port, edge_proc.pid
    finally:
        edge_proc.terminate()
        try:
            edge_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            edge_proc.kill()


def _replay_traces(
    cfg: ValidationConfig, replay: Replay, traces: Sequence[TraceSpec], max_positions: int
) -> tuple[list[Row], list[float]]:
    """Every trace's stream, each from a random offset into the trace; the rows and offsets."""
    rows: list[Row] = []
    offsets: list[float] = []
    rng = np.random.default_rng(cfg.seed)
    for ti, spec in enumerate(traces):
        offset = float(rng.uniform(0.0, spec.uplink.duration_s))
        offsets.append(offset)
        requests = replay_requests(cfg, max_positions, cfg.seed + 1000 * ti)
        rows.extend(replay.trace(spec, offset, requests))
    return rows, offsets


def _setup(
    cfg: ValidationConfig,
    arch: ArchSpec,
    splits: Sequence[int],
    traces: Sequence[TraceSpec],
    offsets: Sequence[float],
    profiles: dict[str, ProfileEntry],
    policy: str,
) -> dict[str, Any]:
    """What was replayed and with which profile (the report's ``setup``, before the load)."""
    profile, profile_path, profile_cached = profiles[cfg.profile_method]
    return {
        "model": arch.name,
        "n_layers": arch.shape.n_layers,
        "threads_per_process": cfg.threads,
        "requests_per_trace": cfg.requests,
        "repeats": cfg.repeats,
        "traces": [
            {
                "spec": s.label,
                "uplink": s.uplink.name,
                "mean_uplink_mbps": s.uplink.mean_mbps(0.0, s.uplink.duration_s),
                "offset_s": off,
            }
            for s, off in zip(traces, offsets, strict=True)
        ],
        "rtt_ms": cfg.rtt_ms,
        "splits": list(splits),
        "policy": policy,
        "token_ranges": {
            "scale": cfg.token_scale,
            "new": [cfg.min_new, cfg.max_new],
            "output": [cfg.min_out, cfg.max_out],
            "max_positions": arch.max_positions,
        },
        "profile": str(profile_path),
        "profile_method": cfg.profile_method,
        "profile_reused": profile_cached,
        "profile_provenance": profile.provenance.description,
        "profile_method_text": profile.provenance.method,
        "profiles": {label: str(path) for label, (_, path, _) in profiles.items()},
    }
