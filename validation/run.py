"""Validate the simulator's latency model against the reference split-inference runtime.

``offload-rl validate`` measures a profile of the model on this machine (with the thread count
each runtime process uses), replays requests of the default workload through the real runtime
(:mod:`validation.runtime`: a device process and an edge process over loopback TCP, the link paced
to a trace) and through :func:`offload_rl.cost_model.request_cost` with the *same* action, trace,
trace time and cached positions, and reports the prediction error per split class.

Profiles: ``offload_rl.profiler``'s, measured here with the runtime's thread count, and (the
default, ``stack``) the same with the decoder layer re-timed inside the whole stack of distinct
layers (:mod:`validation.runtime.stack_profile`: one layer timed alone keeps its weights in the CPU
caches and reads decode too fast). Both predictions are reported; no factor is fitted to the
errors.

Noise: the machine is shared. Each request stream is replayed ``repeats`` times (sessions reset
in between); every run records how many CPUs other processes used meanwhile, a measured value
is the median over the quiet runs (all runs when none was quiet: the request is then marked
contended), and after a contended run the replay waits a little for a quiet moment. Requests
run one after another (the edge has no other user), so the simulator is called with no edge
queue and no slowdown.

Outputs (``--out DIR``): ``validation.json`` (overall and per split class: median and p90
absolute percentage error of total latency and TTFT, the components, every request),
``validation.md`` (tables), ``scatter.png`` (predicted vs measured), the profile used.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offload_rl.compiled_profile import CompiledProfile
from offload_rl.cost_model import EnergyModel, LinkModel, RequestCost, Tiers, request_cost
from offload_rl.errors import ConfigError, OffloadRLError
from offload_rl.model_shapes import ArchSpec
from offload_rl.profiles import Profile
from offload_rl.traces import Trace, load_traces
from offload_rl.workloads import TokenScaling, load_workload

# The default scenario's two faster links, with its uplink scaling (PARAMETERS 4b): LTE as
# measured in Ghent (uplink = 0.22 x downlink) and Wi-Fi (0.5 x). The slow 3G/Mahimahi links
# would make one 512-token prefill upload take ten seconds or more without testing anything
# the pacing does not already test.
DEFAULT_TRACES: tuple[str, ...] = ("synthetic:ghent-4g-lte*0.22", "synthetic:wifi*0.5")
SYNTHETIC_DURATION_S = 900.0
TARGET_MEDIAN_PCT = 10.0
TARGET_P90_PCT = 25.0
# A repeat during which other processes kept more than this many CPUs busy is "contended"
# (the profiler uses the same threshold when it re-measures a point).
CONTENTION_CPUS = 0.3
PER_TOKEN_UPLOADS = "per_token_uploads"
PER_MESSAGE_LINK = "per_message_link"
CLASS_LOCAL = "local"
CLASS_EDGE = "full_offload"


def split_class(k: int, n_layers: int) -> str:
    """The class a split belongs to in the report."""
    if k == n_layers:
        return CLASS_LOCAL
    if k == 0:
        return CLASS_EDGE
    return f"split_k{k}"


def default_middle_splits(n_layers: int) -> list[int]:
    """Two splits strictly inside the model (a third and two thirds of the layers)."""
    return sorted({k for k in (n_layers // 3, (2 * n_layers) // 3) if 0 < k < n_layers}) or (
        [n_layers // 2] if n_layers > 1 else []
    )


@dataclass
class ValidationConfig:
    """What ``offload-rl validate`` replays, and how."""

    out: Path
    model: str | ArchSpec = "gpt2"
    requests: int = 24
    traces: Sequence[str] = DEFAULT_TRACES
    repeats: int = 3
    seed: int = 0
    threads: int = 1
    rtt_ms: float = 20.0
    token_scale: float = 0.25
    min_new: int = 16
    max_new: int = 512
    min_out: int = 4
    max_out: int = 64
    middle_splits: Sequence[int] | None = None
    policy: str = "forced"  # forced | <heuristic name> | http(s)://decision-service
    service_timeout_s: float = 0.25
    reprofile: bool = False
    profile_method: str = "stack"  # stack: decoder re-timed in-stack; profiler: as measured
    profile_repeats: int = 5
    profile_lengths: Sequence[int] | None = None
    profile_contexts: Sequence[int] | None = None
    profile_retries: int = 3  # re-measurements of a point timed under contention
    profile_min_point_s: float = 0.3
    edge_in_thread: bool = False  # tests: the edge in a thread of this process
    init_std: float | None = None
    warmup: bool = True
    quiet_wait_s: float = 5.0  # after a contended request, wait this long at most for quiet
    quiet_budget_s: float = 300.0  # ... and this long in all
    progress: Callable[[str], None] | None = None


@dataclass
class TraceSpec:
    """One link of the replay: uplink and downlink traces."""

    label: str
    uplink: Trace
    downlink: Trace


def parse_traces(specs: Sequence[str], seed: int) -> list[TraceSpec]:
    """``synthetic:<preset>[*scale]``, ``constant:<mbps>`` or a path (file or folder)
    ``[*scale]``; the scale multiplies the uplink only (a downlink trace standing in)."""
    from offload_rl.synthetic_traces import generate_trace

    out: list[TraceSpec] = []
    for i, spec in enumerate(specs):
        source, _, scale_text = spec.partition("*")
        try:
            scale = float(scale_text) if scale_text else 1.0
        except ValueError:
            raise ConfigError(f"--traces {spec!r}: scale {scale_text!r} is not a number") from None
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"--traces {spec!r}: scale must be positive")
        if source.startswith("synthetic:"):
            downs = [generate_trace(source.split(":", 1)[1], SYNTHETIC_DURATION_S, seed + i)]
        elif source.startswith("constant:"):
            try:
                mbps = float(source.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"--traces {spec!r}: not a rate in Mbps") from None
            if not (math.isfinite(mbps) and mbps > 0):
                raise ConfigError(f"--traces {spec!r}: the rate must be positive")
            downs = [Trace.constant(mbps, name=f"constant-{mbps:g}")]
        else:
            path = Path(source)
            if not path.exists():
                raise ConfigError(f"--traces: {path} does not exist")
            downs = load_traces([path])[:1]  # a folder: its first trace
        for down in downs:
            up = down.scaled(scale) if scale != 1.0 else down
            out.append(TraceSpec(spec, up, down))
    if not out:
        raise ConfigError("--traces: no trace given")
    return out


# -- requests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """One request of the replayed stream (token lengths scaled to the runtime's model)."""

    index: int
    arrival_s: float
    session: int
    turn: int
    new_tokens: int
    context_tokens: int
    output_tokens: int


def replay_requests(cfg: ValidationConfig, max_positions: int, seed: int) -> list[ReplayRequest]:
    """Requests of the default workload, lengths x ``token_scale`` clipped to the configured
    ranges; each session's context is recomputed from the clipped lengths (the KV model's
    invariant), and a session whose next turn would overflow the model's positions restarts
    with an empty context."""
    workload = load_workload("default", TokenScaling())
    raw = workload.sample(np.random.default_rng(seed), cfg.requests)
    totals: dict[int, int] = {}
    out: list[ReplayRequest] = []
    for i, r in enumerate(raw):
        new = int(np.clip(round(r.new_tokens * cfg.token_scale), cfg.min_new, cfg.max_new))
        o = int(np.clip(round(r.output_tokens * cfg.token_scale), cfg.min_out, cfg.max_out))
        new = min(new, max_positions - o)
        context = totals.get(r.session_id, 0) if r.turn > 0 else 0
        if context + new + o > max_positions:
            context = 0
        totals[r.session_id] = context + new + o
        out.append(ReplayRequest(i, r.arrival_s, r.session_id, r.turn, new, context, o))
    return out


# -- profile ---------------------------------------------------------------------------------


def measured_profile(cfg: ValidationConfig, arch: ArchSpec) -> tuple[Profile, Path, bool]:
    """The profile measured here with ``cfg.threads`` threads (cached in ``DIR``)."""
    from offload_rl.profiler import DEFAULT_LENGTHS, default_contexts, measure_profile

    path = cfg.out / f"profile-{arch.name}-t{cfg.threads}.json"
    if path.is_file() and not cfg.reprofile:
        try:
            cached = Profile.load(path)
        except OffloadRLError:
            cached = None
        if (
            cached is not None
            and cached.model == arch.shape
            and cached.provenance.threads == cfg.threads
        ):
            return cached, path, True
    lengths = cfg.profile_lengths or sorted(
        {t for t in DEFAULT_LENGTHS if t <= arch.max_positions} | {min(1024, arch.max_positions)}
    )
    contexts = cfg.profile_contexts or default_contexts(arch)
    _say(cfg, f"measuring the profile of {arch.name} with {cfg.threads} thread(s) (profiler)")
    profile = measure_profile(
        arch,
        threads=cfg.threads,
        lengths=lengths,
        contexts=contexts,
        repeats=cfg.profile_repeats,
        hardware=f"cpu-{cfg.threads}thread-validation",
        measure_peaks=False,
        retries=cfg.profile_retries,
        min_point_s=cfg.profile_min_point_s,
    )
    cfg.out.mkdir(parents=True, exist_ok=True)
    profile.save(path)
    return profile, path, False


def stack_profile(
    cfg: ValidationConfig, base: Profile, base_reused: bool, model: Any
) -> tuple[Profile, Path, bool]:
    """``base`` with the decoder re-timed in-stack (:mod:`validation.runtime.stack_profile`),
    cached in ``DIR`` beside it (re-measured whenever ``base`` was)."""
    from validation.runtime.stack_profile import with_stack_decoder_costs

    path = cfg.out / f"profile-{base.model.name}-t{cfg.threads}-stack.json"
    if path.is_file() and base_reused and not cfg.reprofile:
        try:
            cached = Profile.load(path)
        except OffloadRLError:
            cached = None
        if cached is not None and cached.model == base.model:
            return cached, path, True
    _say(cfg, f"re-timing the decoder of {base.model.name} in-stack")
    profile = with_stack_decoder_costs(
        base,
        model,
        threads=cfg.threads,
        repeats=max(1, cfg.profile_repeats - 2),
        retries=cfg.profile_retries,
    )
    profile.save(path)
    return profile, path, False


# -- machine load ----------------------------------------------------------------------------


class CpuLoad:
    """CPUs used by processes other than this one and the edge child while replaying."""

    def __init__(self, exclude_pids: Sequence[int] = ()) -> None:
        self.exclude = [os.getpid(), *exclude_pids]
        self._tick = float(os.sysconf("SC_CLK_TCK"))
        self._start = self._sample()
        self._created = self._start

    def restart(self) -> None:
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                values = [int(v) for v in stat.readline().split()[1:]]
            ours = 0
            for pid in self.exclude:
                with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                ours += int(parts[11]) + int(parts[12])
        except (OSError, IndexError, ValueError):
            return None
        busy = sum(values) - values[3] - values[4] - sum(values[8:])
        return time.monotonic(), float(busy), float(ours)

    def others(self) -> float | None:
        """Average CPUs busy with other work since the last (re)start."""
        return self._between(self._start, self._sample())

    def others_since_creation(self) -> float | None:
        return self._between(self._created, self._sample())

    def _between(
        self, start: tuple[float, float, float] | None, end: tuple[float, float, float] | None
    ) -> float | None:
        if end is None or start is None or end[0] <= start[0]:
            return None
        busy = (end[1] - start[1]) - (end[2] - start[2])
        return max(0.0, busy / self._tick) / (end[0] - start[0])


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# -- the replay ------------------------------------------------------------------------------


@dataclass
class Row:
    """One request on one trace: every repeat's measurements and the prediction."""

    trace: str
    request: ReplayRequest
    split: int
    keep: bool
    split_class: str
    decision_source: str
    trace_t: float
    measured: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, dict[str, float]] = field(default_factory=dict)  # by profile


def _say(cfg: ValidationConfig, message: str) -> None:
    if cfg.progress is not None:
        cfg.progress(message)


def _predict(
    k: int,
    trace_t: float,
    req: ReplayRequest,
    cached: int,
    tiers: Tiers,
    link: LinkModel,
) -> RequestCost:
    return request_cost(
        k,
        trace_t,
        req.new_tokens,
        req.context_tokens,
        cached,
        req.output_tokens,
        tiers,
        link,
        EnergyModel(),
        edge_queue_s=0.0,
        edge_slowdown=1.0,
    )


def per_message_latency(
    k: int,
    trace_t: float,
    req: ReplayRequest,
    cached: int,
    tiers: Tiers,
    link: LinkModel,
    downlink: bool,
) -> tuple[float, float] | None:
    """(TTFT, latency) with every message priced on the link at its own start time.

    The same compute and RTTs as :func:`request_cost`, walked token by token: each decode
    upload starts when its token's device layers finish (``request_cost`` integrates the
    ``o - 1`` uploads as one transfer from the end of prefill) and, with ``downlink``, each
    token id (4 bytes) crosses the downlink trace (FIFO) before its RTT/2 (``request_cost``
    gives the downlink no capacity: an outage there delays nothing). Differences from
    ``request_cost`` isolate those approximations from the profile's errors; on a constant
    link without ``downlink`` both agree. ``None`` for a fully local request.
    """
    L = tiers.n_layers
    if not 0 <= k < L:
        return None
    dev, edge = tiers.device, tiers.edge
    total_ctx = req.context_tokens + req.new_tokens
    cached = min(cached, req.context_tokens)
    prefill = total_ctx - cached
    n_decode = max(req.output_tokens - 1, 0)
    half = link.rtt_edge_s / 2.0
    token_bytes = float(dev.activation_bytes_per_token[0])  # token ids

    def down(t: float) -> float:
        """When a token that leaves the edge at ``t`` reaches the device."""
        return (link.downlink.finish_time(t, token_bytes) if downlink else t) + half

    t = trace_t
    if k > 0:
        t += dev.embed_prefill_s(prefill) + dev.layers_prefill_s(0, k, prefill, cached)
    t = link.uplink.finish_time(t, float(prefill * dev.activation_bytes_per_token[k])) + half
    t += (
        (edge.embed_prefill_s(prefill) if k == 0 else 0.0)
        + edge.layers_prefill_s(k, L, prefill, cached)
        + edge.head_first_token_s()
    )
    if k == 0:  # the edge decodes alone; its tokens queue on the downlink
        emitted = [t]
        e0 = edge.embed_decode[0] + edge.head_decode[0]
        e1 = edge.embed_decode[1] + edge.head_decode[1]
        for j in range(n_decode):
            ctx = total_ctx + j
            t += edge.layers_decode_s(0, L, 1, ctx) + e0 + e1 * ctx
            emitted.append(t)
        free = -math.inf
        arrivals = []
        for leave in emitted:
            start = max(leave, free)
            free = link.downlink.finish_time(start, token_bytes) if downlink else start
            arrivals.append(free + half)
        return arrivals[0] - trace_t, arrivals[-1] - trace_t
    t = down(t)
    ttft = t - trace_t
    step_bytes = float(dev.activation_bytes_per_token[k])
    for j in range(n_decode):
        ctx = total_ctx + j
        t += (
            dev.layers_decode_s(0, k, 1, ctx)
            + dev.embed_decode[0]
            + dev.embed_decode[1] * (total_ctx)
        )
        t = link.uplink.finish_time(t, step_bytes) + half
        t += (
            edge.layers_decode_s(k, L, 1, ctx)
            + edge.head_decode[0]
            + edge.head_decode[1] * total_ctx
        )
        t = down(t)
    return ttft, t - trace_t


def _validation_scenario(profile_path: Path, traces: Sequence[str], rtt_ms: float) -> Any:
    """A scenario of this validation (the decision client needs one for its mask)."""
    from offload_rl.scenario import NetworkConfig, ProfilesConfig, Scenario

    ref = str(profile_path.resolve())
    synthetic = [t.split("*", 1)[0] for t in traces if t.startswith("synthetic:")]
    return Scenario(
        name="validation",
        profiles=ProfilesConfig(device=ref, edge=ref, cloud=ref),
        network=NetworkConfig(traces=synthetic or ["synthetic:ghent-4g-lte"], rtt_edge_ms=rtt_ms),
    )


def _decider(cfg: ValidationConfig, scenario: Any) -> tuple[Any, str]:
    """A function DecisionState -> (action, source), and a description of it."""
    from offload_rl.features import action_mask
    from offload_rl.heuristics import feature_spec, make_heuristic, scenario_tiers

    policy = cfg.policy
    note = ""
    if policy.startswith(("http://", "https://")):
        client = _decision_client(policy, cfg.service_timeout_s, scenario)
        if client is not None:

            def ask(state: Any) -> tuple[int, str]:
                decision = client.decide(state)
                return decision.action, decision.source

            return ask, f"decision service {policy} (its client falls back to local greedy)"
        policy = "greedy"
        note = " (serving.client is not importable: no service asked)"
    heuristic = make_heuristic(policy, scenario)
    spec = feature_spec(scenario, scenario_tiers(scenario).n_layers)

    def local(state: Any) -> tuple[int, str]:
        return int(heuristic.act(state, action_mask(state, spec))), f"local:{heuristic.name}"

    return local, f"local heuristic {heuristic.name}{note}"


def _decision_client(url: str, timeout_s: float, scenario: Any) -> Any | None:
    """The decision service's client, or None where ``serving`` is not installed (the switch:
    the device then decides with the same greedy heuristic the client falls back to)."""
    try:
        from serving.client import DecisionClient
    except ImportError:
        return None
    return DecisionClient(url, timeout=timeout_s, scenario=scenario)


def _decision_state(
    req: ReplayRequest,
    trace: Trace,
    trace_t: float,
    cached: tuple[int | None, int],
    rtt_ms: float,
    n_layers: int,
    last: dict[int, tuple[float, int]],
) -> Any:
    """What the device knows when it places ``req`` (its own throughput samples, 1 s each)."""
    from offload_rl.features import DecisionState

    end = math.floor(trace_t)
    samples = [trace.mean_mbps(end - (8 - i), end - (7 - i)) for i in range(8)]
    prev = last.get(req.session)
    return DecisionState(
        throughput_mbps=samples,
        rtt_ms=rtt_ms,
        new_tokens=req.new_tokens,
        context_tokens=req.context_tokens,
        turn=req.turn,
        private=False,
        slo_ttft_s=1.0,
        slo_tpot_s=0.1,
        cached_split=cached[0],
        cached_tokens=min(cached[1], req.context_tokens),
        edge_kv_occupancy=0.0,
        edge_load=0.0,
        device_memory_layers=n_layers,
        prev_output_tokens=prev[1] if prev else 0,
        since_last_turn_s=req.arrival_s - prev[0] if prev else 0.0,
    )


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
    from validation.runtime.device import DeviceRuntime, start_edge_process
    from validation.runtime.edge import EdgeServer
    from validation.runtime.model import SplitModel, resolve_arch

    if cfg.requests < 1 or cfg.repeats < 1 or cfg.threads < 1:
        raise ConfigError("--requests, --repeats and --threads must be >= 1")
    if not (1 <= cfg.min_new <= cfg.max_new and 1 <= cfg.min_out <= cfg.max_out):
        raise ConfigError("token ranges must satisfy 1 <= min <= max")
    if cfg.profile_method not in ("stack", "profiler"):
        raise ConfigError(f"--profile-method must be stack or profiler, got {cfg.profile_method}")
    arch = resolve_arch(cfg.model)
    L = arch.shape.n_layers
    middles = list(cfg.middle_splits) if cfg.middle_splits else default_middle_splits(L)
    for k in middles:
        if not 0 < k < L:
            raise ConfigError(f"--splits: {k} is not strictly inside the model's {L} layers")
    splits = [L, 0, *middles]
    traces = parse_traces(cfg.traces, cfg.seed)  # bad input fails before minutes of profiling
    cfg.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    base, base_path, base_cached = measured_profile(cfg, arch)
    model = SplitModel.build(arch, seed=cfg.seed, init_std=cfg.init_std)
    profiles = {"profiler": (base, base_path, base_cached)}
    if cfg.profile_method == "stack":
        profiles["stack"] = stack_profile(cfg, base, base_cached, model)
    primary = cfg.profile_method
    profile, profile_path, profile_cached = profiles[primary]
    tiers = {}
    for label, (prof, _, _) in profiles.items():
        compiled = CompiledProfile.from_profile(prof)
        tiers[label] = Tiers(device=compiled, edge=compiled, cloud=compiled)
    decide: Decide | None = None
    decider_text = "forced: each session gets one split class, round robin over sessions; keep"
    if cfg.policy != "forced":
        scenario = _validation_scenario(profile_path, cfg.traces, cfg.rtt_ms)
        decide, decider_text = _decider(cfg, scenario)

    _say(cfg, "starting the edge")
    load_before = load_average()
    edge_proc = None
    server = None
    if cfg.edge_in_thread:
        server = EdgeServer(threads=None)
        server.start_thread()
        port = server.port
    else:
        edge_proc, port = start_edge_process(threads=cfg.threads)
    try:
        with DeviceRuntime(
            model,
            "127.0.0.1",
            port,
            threads=None if cfg.edge_in_thread else cfg.threads,
            seed=cfg.seed,
        ) as device:
            monitor = CpuLoad([edge_proc.pid] if edge_proc is not None else [])
            replay = _Replay(cfg, device, tiers, primary, splits, decide, monitor)
            if cfg.warmup:
                replay.warm_up()
            rows: list[Row] = []
            offsets: list[float] = []
            rng = np.random.default_rng(cfg.seed)
            for ti, spec in enumerate(traces):
                offset = float(rng.uniform(0.0, spec.uplink.duration_s))
                offsets.append(offset)
                requests = replay_requests(cfg, arch.max_positions, cfg.seed + 1000 * ti)
                rows.extend(replay.trace(spec, offset, requests))
            others = monitor.others_since_creation()
            waited = replay.waited_s
    finally:
        if server is not None:
            server.close()
        if edge_proc is not None:
            edge_proc.terminate()
            try:
                edge_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                edge_proc.kill()
    setup = {
        "model": arch.name,
        "n_layers": L,
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
        "splits": splits,
        "policy": decider_text,
        "token_ranges": {
            "scale": cfg.token_scale,
            "new": [cfg.min_new, cfg.max_new],
            "output": [cfg.min_out, cfg.max_out],
            "max_positions": arch.max_positions,
        },
        "profile": str(profile_path),
        "profile_method": primary,
        "profile_reused": profile_cached,
        "profile_provenance": profile.provenance.description,
        "profile_method_text": profile.provenance.method,
        "profiles": {label: str(path) for label, (_, path, _) in profiles.items()},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cpus_used_by_other_processes": others,
        "contention_threshold_cpus": CONTENTION_CPUS,
        "waited_for_quiet_s": waited,
        "wall_s": time.monotonic() - started,
        "simulator": "offload_rl.cost_model.request_cost, unmodified; edge queue 0, slowdown 1",
    }
    result = summarise(rows, setup, primary)
    write_outputs(result, cfg.out)
    return result


Decide = Callable[[Any], tuple[int, str]]


class _Replay:
    """Replays request streams through the runtime and prices them with the simulator."""

    def __init__(
        self,
        cfg: ValidationConfig,
        device: Any,
        tiers: dict[str, Tiers],
        primary: str,
        splits: Sequence[int],
        decide: Decide | None,
        monitor: CpuLoad,
    ) -> None:
        from offload_rl.actions import ActionLayout

        self.cfg = cfg
        self.device = device
        self.tiers = tiers
        self.primary = primary
        self.n_layers = tiers[primary].n_layers
        self.splits = list(splits)
        self.decide = decide
        self.monitor = monitor
        self.layout = ActionLayout(self.n_layers)
        self._last_contended = False
        self.waited_s = 0.0
        self.one_way = cfg.rtt_ms / 2000.0

    def warm_up(self) -> None:
        """Two short requests per split on a fast link, not recorded: first calls pay for lazy
        initialisation (allocator, kernels, sockets)."""
        from validation.runtime.device import Turn

        fast = Trace.constant(1000.0, name="warm-up")
        self.device.set_link(fast, fast, self.one_way)
        for k in self.splits:
            for _ in range(2):
                turn = Turn(10**6, 32, 0, 4, 0.0, request_id=10**6)
                self.device.run(turn, self.layout.encode(k, 0))
        self.device.reset_sessions()

    def trace(self, spec: TraceSpec, offset: float, requests: Sequence[ReplayRequest]) -> list[Row]:
        """Every repeat of the stream on one trace; one row per request."""
        cfg = self.cfg
        self.device.set_link(spec.uplink, spec.downlink, self.one_way)
        link = LinkModel(
            uplink=spec.uplink,
            downlink=spec.downlink,
            rtt_edge_s=cfg.rtt_ms / 1000.0,
            rtt_cloud_extra_s=0.0,
            backhaul_bytes_per_s=1.25e9,
        )
        rows: list[Row] = []
        for rep in range(cfg.repeats):
            self.device.reset_sessions()
            classes: dict[int, int] = {}
            last: dict[int, tuple[float, int]] = {}
            for i, req in enumerate(requests):
                trace_t = offset + req.arrival_s
                if rep > 0:  # repeats replay the first run's actions
                    action = self.layout.encode(rows[i].split, int(rows[i].keep))
                elif self.decide is None:
                    idx = classes.setdefault(req.session, len(classes))
                    action = self.layout.encode(self.splits[idx % len(self.splits)], 1)
                else:
                    action = None
                record, others = self._run(req, trace_t, action, spec.uplink, last)
                last[req.session] = (req.arrival_s, req.output_tokens)
                if rep == 0:
                    rows.append(
                        Row(
                            spec.uplink.name,
                            req,
                            record.split,
                            record.keep,
                            split_class(record.split, self.n_layers),
                            record.decision_source,
                            trace_t,
                        )
                    )
                row = rows[i]
                measured = asdict(record)
                measured.pop("tokens")
                measured["others_cpus"] = others
                row.measured.append(measured)
                if not row.predictions:
                    for label, tiers in self.tiers.items():
                        cost = _predict(
                            record.split, trace_t, req, record.cached_positions, tiers, link
                        )
                        row.predictions[label] = {
                            "ttft_s": cost.ttft_s,
                            "latency_s": cost.latency_s,
                            "upload_s": cost.upload_s,
                            "upload_bytes": cost.upload_bytes,
                            "device_busy_s": cost.device_busy_s,
                            "edge_s": cost.edge_gpu_s,
                            "cached_tokens": float(record.cached_positions),
                        }
                        if label != self.primary:
                            continue
                        # what request_cost would give with per-message link timing
                        for variant, with_downlink in (
                            (PER_TOKEN_UPLOADS, False),
                            (PER_MESSAGE_LINK, True),
                        ):
                            walked = per_message_latency(
                                record.split,
                                trace_t,
                                req,
                                record.cached_positions,
                                tiers,
                                link,
                                downlink=with_downlink,
                            )
                            values = dict(row.predictions[label])
                            if walked is not None:
                                if with_downlink:
                                    values["ttft_s"] = walked[0]
                                values["latency_s"] = walked[1]
                            row.predictions[f"{label}+{variant}"] = values
                load = "?" if others is None else f"{others:.2f}"
                _say(
                    cfg,
                    f"{spec.uplink.name} repeat {rep + 1}/{cfg.repeats} request "
                    f"{i + 1}/{len(requests)}: k={record.split} measured "
                    f"{record.latency_s:.3f} s, predicted "
                    f"{row.predictions[self.primary]['latency_s']:.3f} s "
                    f"(others used {load} CPUs)",
                )
        return rows

    def _run(
        self,
        req: ReplayRequest,
        trace_t: float,
        action: int | None,
        uplink: Trace,
        last: dict[int, tuple[float, int]],
    ) -> tuple[Any, float | None]:
        from validation.runtime.device import Turn

        turn = Turn(
            req.session,
            req.new_tokens,
            req.context_tokens,
            req.output_tokens,
            trace_t,
            request_id=req.index,
        )
        self._wait_for_quiet()
        self.monitor.restart()
        if action is not None:
            record = self.device.run(turn, action)
        else:
            assert self.decide is not None
            state = _decision_state(
                req,
                uplink,
                trace_t,
                self.device.cached(req.session),
                self.cfg.rtt_ms,
                self.n_layers,
                last,
            )
            decide = self.decide
            record = self.device.run(turn, decide=lambda _turn: decide(state))
        others = self.monitor.others()
        self._last_contended = others is not None and others > CONTENTION_CPUS
        return record, others

    def _wait_for_quiet(self) -> None:
        """After a contended request, wait (in 0.5 s windows, at most ``quiet_wait_s`` per
        request and ``quiet_budget_s`` in all) until other processes leave the CPUs alone."""
        cfg = self.cfg
        if not self._last_contended:
            return
        deadline = time.monotonic() + cfg.quiet_wait_s
        while time.monotonic() < deadline and self.waited_s < cfg.quiet_budget_s:
            start = time.monotonic()
            self.monitor.restart()
            time.sleep(0.5)
            others = self.monitor.others()
            self.waited_s += time.monotonic() - start
            if others is None or others <= CONTENTION_CPUS:
                break
        self._last_contended = False


# -- the report ------------------------------------------------------------------------------


def _pct(predicted: float, measured: float) -> float:
    return 100.0 * (predicted - measured) / measured


def _stats(errors: Sequence[float]) -> dict[str, float | None]:
    if not errors:
        return {"median": None, "p90": None}
    a = np.abs(np.asarray(errors, dtype=float))
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90))}


def _row_summary(row: Row, label: str) -> dict[str, Any]:
    """Medians over the quiet repeats (all repeats if none was quiet), the prediction, errors.

    ``overhead_s`` is what neither compute nor the modelled network explains: measured
    latency - measured device and edge compute - the simulator's non-compute time (transfers
    and RTTs); it collects the runtime's per-message costs (framing, copies, thread hand-offs,
    timer wake-ups) and any network-model mismatch.
    """
    quiet = [
        m
        for m in row.measured
        if m["others_cpus"] is not None and m["others_cpus"] <= CONTENTION_CPUS
    ]
    chosen = quiet or row.measured

    def med(key: str) -> float:
        return float(statistics.median(m[key] for m in chosen))

    measured = {
        key: med(key)
        for key in (
            "ttft_s",
            "latency_s",
            "device_compute_s",
            "edge_compute_s",
            "prefill_upload_s",
            "upload_payload_bytes",
            "upload_wire_bytes",
        )
    }
    req = row.request
    p = row.predictions[label]
    network_s = p["latency_s"] - p["device_busy_s"] - p["edge_s"]
    overhead = (
        measured["latency_s"] - measured["device_compute_s"] - measured["edge_compute_s"]
    ) - network_s
    loads = [m["others_cpus"] for m in row.measured if m["others_cpus"] is not None]
    return {
        "trace": row.trace,
        "trace_t": row.trace_t,
        "request": req.index,
        "session": req.session,
        "turn": req.turn,
        "split": row.split,
        "split_class": row.split_class,
        "keep": row.keep,
        "decision_source": row.decision_source,
        "new_tokens": req.new_tokens,
        "context_tokens": req.context_tokens,
        "cached_positions": row.measured[0]["cached_positions"],
        "output_tokens": req.output_tokens,
        "edge_miss": any(m["edge_miss"] for m in row.measured),
        "repeats": len(row.measured),
        "quiet_repeats": len(quiet),
        "contended": not quiet,
        "others_cpus": [round(x, 3) for x in loads],
        "measured": measured,
        "measured_latency_all_s": [m["latency_s"] for m in row.measured],
        "predicted": p,
        "overhead_s": overhead,
        "pct_error_total": _pct(p["latency_s"], measured["latency_s"]),
        "pct_error_ttft": _pct(p["ttft_s"], measured["ttft_s"]),
    }


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _group(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total = [s["pct_error_total"] for s in summaries]
    ttft = [s["pct_error_ttft"] for s in summaries]
    st, sf = _stats(total), _stats(ttft)
    dev = [
        _pct(s["predicted"]["device_busy_s"], s["measured"]["device_compute_s"])
        for s in summaries
        if s["measured"]["device_compute_s"] > 0 and s["predicted"]["device_busy_s"] > 0
    ]
    edge = [
        _pct(s["predicted"]["edge_s"], s["measured"]["edge_compute_s"])
        for s in summaries
        if s["measured"]["edge_compute_s"] > 0 and s["predicted"]["edge_s"] > 0
    ]
    return {
        "n": len(summaries),
        "median_abs_pct_error_total": st["median"],
        "p90_abs_pct_error_total": st["p90"],
        "median_abs_pct_error_ttft": sf["median"],
        "p90_abs_pct_error_ttft": sf["p90"],
        "median_pct_error_total": _median(total),
        "median_pct_error_ttft": _median(ttft),
        "median_measured_latency_s": _median([s["measured"]["latency_s"] for s in summaries]),
        "median_predicted_latency_s": _median([s["predicted"]["latency_s"] for s in summaries]),
        "median_pct_error_device_compute": _median(dev),
        "median_pct_error_edge_compute": _median(edge),
        "median_overhead_ms_per_token": _median(
            [1000.0 * s["overhead_s"] / s["output_tokens"] for s in summaries]
        ),
        "contended": sum(s["contended"] for s in summaries),
    }


def _by_class(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    classes: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        classes.setdefault(s["split_class"], []).append(s)

    def order(name: str) -> tuple[int, int]:
        if name == CLASS_LOCAL:
            return (0, 0)
        if name == CLASS_EDGE:
            return (1, 0)
        return (2, int(name.removeprefix("split_k")))

    return {name: _group(classes[name]) for name in sorted(classes, key=order)}


def summarise(rows: Sequence[Row], setup: dict[str, Any], primary: str) -> dict[str, Any]:
    """The ``validation.json`` document: errors of the ``primary`` profile's predictions, and
    the same figures for every other profile under ``other_profiles``."""
    labels = list(rows[0].predictions) if rows else [primary]
    summaries = [_row_summary(r, primary) for r in rows]
    overall = _group(summaries)
    median, p90 = overall["median_abs_pct_error_total"], overall["p90_abs_pct_error_total"]
    met = median is not None and median <= TARGET_MEDIAN_PCT and p90 <= TARGET_P90_PCT
    others = {}
    for label in labels:
        if label != primary:
            alt = [_row_summary(r, label) for r in rows]
            others[label] = {"overall": _group(alt), "by_split_class": _by_class(alt)}
    return {
        "overall": overall,
        "by_split_class": _by_class(summaries),
        "quiet_only": _group([s for s in summaries if not s["contended"]]),
        "other_profiles": others,
        "targets": {
            "median_abs_pct_error_total": TARGET_MEDIAN_PCT,
            "p90_abs_pct_error_total": TARGET_P90_PCT,
            "met": met,
        },
        "setup": setup,
        "requests": summaries,
    }


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """``validation.md``: the error table and the set-up."""
    setup = result["setup"]
    lines = [
        f"# Simulator vs reference runtime: {setup['model']}",
        "",
        f"{setup['requests_per_trace']} requests x {len(setup['traces'])} traces, "
        f"{setup['repeats']} repeats each (median measured), {setup['threads_per_process']} "
        f"thread(s) per process, RTT {setup['rtt_ms']:g} ms; policy: {setup['policy']}.",
        f"Load average before/after: {setup['load_average_before']} / "
        f"{setup['load_average_after']}; other processes used "
        f"{_fmt(setup['cpus_used_by_other_processes'], 2)} CPUs on average while replaying "
        f"(waited {setup['waited_for_quiet_s']:.0f} s for quiet moments); wall time "
        f"{setup['wall_s']:.0f} s.",
        "",
        "Absolute percentage error of the prediction (|predicted - measured| / measured):",
        "",
        "| split class | n | total median | total p90 | TTFT median | TTFT p90 | bias total "
        "| device compute bias | edge compute bias | overhead ms/token | median measured s "
        "| contended |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups = [
        *result["by_split_class"].items(),
        ("**overall**", result["overall"]),
        ("quiet requests only", result["quiet_only"]),
    ]
    for name, g in groups:
        lines.append(
            f"| {name} | {g['n']} | {_fmt(g['median_abs_pct_error_total'])}% | "
            f"{_fmt(g['p90_abs_pct_error_total'])}% | {_fmt(g['median_abs_pct_error_ttft'])}% | "
            f"{_fmt(g['p90_abs_pct_error_ttft'])}% | {_fmt(g['median_pct_error_total'])}% | "
            f"{_fmt(g['median_pct_error_device_compute'])}% | "
            f"{_fmt(g['median_pct_error_edge_compute'])}% | "
            f"{_fmt(g['median_overhead_ms_per_token'], 2)} | "
            f"{_fmt(g['median_measured_latency_s'], 3)} | {g['contended']} |"
        )
    for label, other in result.get("other_profiles", {}).items():
        lines += [
            "",
            f"Same replay predicted with `{label}`"
            + (
                " (offload_rl.profiler as is: one decoder layer timed alone)"
                if label == "profiler"
                else ""
            )
            + (
                ": decode uploads priced at their own start times (not in request_cost; what "
                "that change would give)"
                if label.endswith(PER_TOKEN_UPLOADS)
                else ""
            )
            + (
                ": every message priced at its own start time, token ids on the downlink "
                "trace too (not in request_cost; what that change would give)"
                if label.endswith(PER_MESSAGE_LINK)
                else ""
            )
            + ":",
            "",
            "| split class | n | total median | total p90 | TTFT median | TTFT p90 | bias total |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, g in [*other["by_split_class"].items(), ("**overall**", other["overall"])]:
            lines.append(
                f"| {name} | {g['n']} | {_fmt(g['median_abs_pct_error_total'])}% | "
                f"{_fmt(g['p90_abs_pct_error_total'])}% | "
                f"{_fmt(g['median_abs_pct_error_ttft'])}% | "
                f"{_fmt(g['p90_abs_pct_error_ttft'])}% | {_fmt(g['median_pct_error_total'])}% |"
            )
    t = result["targets"]
    lines += [
        "",
        f"Targets: median <= {t['median_abs_pct_error_total']:g}%, p90 <= "
        f"{t['p90_abs_pct_error_total']:g}% (total latency): "
        f"**{'met' if t['met'] else 'not met'}**.",
        "",
        "Bias columns are signed medians (negative: the simulator predicts less than ran). "
        "Overhead: measured latency - measured compute - the simulator's transfer and RTT "
        "time, per output token. Measured values are medians over the repeats during which "
        f"other processes used <= {setup['contention_threshold_cpus']:g} CPUs (all repeats "
        "where none was that quiet: those requests count as contended).",
        "",
        "Traces: "
        + ", ".join(
            f"{tr['spec']} ({tr['uplink']}, mean uplink {tr['mean_uplink_mbps']:.1f} Mbps)"
            for tr in setup["traces"]
        ),
        "",
        f"Profile ({setup['profile_method']}): {setup['profile']} ({setup['profile_provenance']}).",
        "",
        f"Profile method: {setup['profile_method_text']}",
        "",
        f"Simulator: {setup['simulator']}.",
        "",
    ]
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """validation.json, validation.md and scatter.png under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "validation.md").write_text(markdown(result))
    scatter_plot(result, out / "scatter.png")


def scatter_plot(result: dict[str, Any], path: Path) -> None:
    """Predicted vs measured total latency and TTFT, one colour per split class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    reqs = result["requests"]
    for ax, key, title in (
        (axes[0], "latency_s", "total latency"),
        (axes[1], "ttft_s", "time to first token"),
    ):
        lo, hi = math.inf, 0.0
        for name in result["by_split_class"]:
            pts = [
                (r["measured"][key], r["predicted"][key]) for r in reqs if r["split_class"] == name
            ]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, s=18, label=name, alpha=0.8)
            lo = min(lo, *xs, *ys)
            hi = max(hi, *xs, *ys)
        if hi > 0:
            lo = max(lo, 1e-4)
            grid = np.geomspace(lo * 0.8, hi * 1.2, 50)
            ax.plot(grid, grid, "k-", lw=1, label="y = x")
            ax.fill_between(grid, grid * 0.75, grid * 1.25, color="grey", alpha=0.15, label="±25%")
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {title} (s)")
        ax.set_ylabel(f"predicted {title} (s)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"simulator vs reference runtime ({result['setup']['model']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
