"""The measurement driver: time every layer kind at every length and context, then assemble.

Order of a run: check the arguments (a user's mistake is a ConfigError before anything is
built), build the layers, time embedding, decoder and head at each prefill length and decode
context with ``threads`` torch threads, optionally measure the host's peaks, and fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from offload_rl.errors import ConfigError
from offload_rl.layer_counts import LayerFacts
from offload_rl.model_shapes import ArchSpec, get_arch, layer_facts
from offload_rl.profiler.assemble import KINDS, Timed, assemble_profile
from offload_rl.profiler.batch_calls import BatchCalls
from offload_rl.profiler.batch_measure import (
    DEFAULT_BATCH_CHUNK,
    BatchedPlan,
    measure_batched,
    plan_batches,
)
from offload_rl.profiler.host import HostPeaks, library_versions, measure_host_peaks
from offload_rl.profiler.layer_calls import LayerCalls
from offload_rl.profiler.layers import LayerParts, build_parts
from offload_rl.profiler.stack_calls import StackCalls, build_stack
from offload_rl.profiler.stack_measure import StackPlan, measure_stack, plan_stack
from offload_rl.profiler.timing import (
    CONTENTION_THRESHOLD,
    BackgroundLoad,
    LoadReport,
    RetryingTimer,
)
from offload_rl.profiler.torch_extra import dtype_size, require_torch
from offload_rl.profiles import BatchedProfile, BatchedSteps, Profile

DEFAULT_LENGTHS: tuple[int, ...] = (16, 64, 256, 1024)
DEFAULT_CONTEXTS: tuple[int, ...] = (16, 128, 512, 2048)

# (description, steps done, steps in total): called before each step and once at the end.
ProgressFn = Callable[[str, int, int], None]


def measure_profile(
    model: str | ArchSpec,
    *,
    threads: int = 2,
    dtype: str = "float32",
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    contexts: Sequence[int] | None = None,
    repeats: int = 5,
    warmup: int = 3,
    hardware: str | None = None,
    measure_peaks: bool = True,
    on_progress: ProgressFn | None = None,
    retries: int = 3,
    retry_wait_s: float = 2.0,
    contention_threshold: float = CONTENTION_THRESHOLD,
    load_report: LoadReport | None = None,
    min_point_s: float = 0.3,
    peaks: HostPeaks | None = None,
    retry_budget_s: float = 60.0,
    batch_sizes: Sequence[int] | None = None,
    batch_contexts: Sequence[int] | None = None,
    batch_chunk: int = DEFAULT_BATCH_CHUNK,
    in_stack: bool = False,
    stack_contexts: Sequence[int] | None = None,
) -> Profile:
    """Measure ``model`` here and return its profile (see the package docstring).

    ``hardware`` names the machine in the profile (default ``cpu-<threads>core``). With
    ``measure_peaks`` the host's matmul FLOP/s and copy bandwidth are measured too (or taken
    from ``peaks``, measured once for several models), and the efficiency the decoder layer
    reached against them goes into the provenance.

    A point timed while other processes kept more than ``contention_threshold`` CPUs busy is
    re-measured up to ``retries`` times (each after waiting up to ``retry_wait_s`` for a quiet
    second), as long as the re-measurements of the whole run stay within ``retry_budget_s`` (a
    busy machine must not make the command run for ever). The background load that was seen is
    written into the provenance, so an inflated profile says so; pass ``load_report`` to
    receive it as an object too. Cheap points are repeated until ``min_point_s`` of timed work,
    so their median rests on more than ``repeats`` runs.

    With ``batch_sizes``, batches of those sizes (decodes at ``batch_contexts``, prefill chunks
    of ``batch_chunk`` tokens, mixed) are timed too and the batched roofline is fitted to them:
    the profile's ``batched`` section (:mod:`offload_rl.profiler.batch_measure`). With
    ``in_stack`` too, iterations of ``1..max(batch_sizes)`` decode rows (at ``stack_contexts``),
    prefill chunks and mixed ones are timed through the whole stack of distinct layers and
    tabled: ``batched.steps`` (:mod:`offload_rl.profiler.stack_measure`).
    """
    arch = get_arch(model) if isinstance(model, str) else model
    size = _check_arguments(threads, repeats, warmup, dtype)
    lengths, contexts = _points(arch, lengths, contexts)
    plan, stack = _batch_plans(
        arch, batch_sizes, batch_contexts, batch_chunk, in_stack, stack_contexts
    )
    torch, _ = require_torch()
    measure_here = measure_peaks and peaks is None
    total = _total_steps(arch, lengths, contexts, measure_here, plan)
    progress = _Progress(on_progress, total + (1 + stack.steps if stack else 0))
    report = load_report if load_report is not None else LoadReport(contention_threshold)
    timer = _retrying_timer(
        report,
        warmup=warmup,
        repeats=repeats,
        min_point_s=min_point_s,
        retries=retries,
        retry_wait_s=retry_wait_s,
        retry_budget_s=retry_budget_s,
        contention_threshold=contention_threshold,
    )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        progress.step(f"{arch.name}: building layers")
        parts, calls, timed = _time_layers(torch, arch, dtype, timer, lengths, contexts, progress)
        batched = _measure_batched(
            torch, arch, dtype, parts, calls, (plan, stack), timer, timed, progress, batch_sizes
        )
        if not measure_peaks:
            peaks = None
        elif peaks is None:
            peaks = _host_peaks(threads, dtype, retries, retry_budget_s, report, progress)
    finally:
        torch.set_num_threads(previous_threads)
    progress.finish(f"{arch.name}: done")
    profile = assemble_profile(
        arch,
        parts.class_names,
        timed,
        threads=threads,
        dtype=dtype,
        dtype_bytes=size,
        repeats=repeats,
        warmup=warmup,
        min_point_s=min_point_s,
        hardware=hardware or f"cpu-{threads}core",
        peaks=peaks,
        versions=library_versions(),
        load=report,
    )
    return profile if batched is None else profile.model_copy(update={"batched": batched})


def _total_steps(
    arch: ArchSpec,
    lengths: Sequence[int],
    contexts: Sequence[int],
    measure_here: bool,
    plan: BatchedPlan | None,
) -> int:
    """How many progress steps a run takes, so that the progress line can say "k of n"."""
    kinds = 2 + len(distinct_layers(arch))
    return (
        1 + kinds * (len(lengths) + len(contexts)) + int(measure_here) + (plan.steps if plan else 0)
    )


def _retrying_timer(
    report: LoadReport,
    *,
    warmup: int,
    repeats: int,
    min_point_s: float,
    retries: int,
    retry_wait_s: float,
    retry_budget_s: float,
    contention_threshold: float,
) -> RetryingTimer:
    """The timer every point goes through; it records the background load it saw in ``report``
    (whose threshold is set to this run's, also when the caller passed its own report)."""
    timer = RetryingTimer(
        warmup=warmup,
        repeats=repeats,
        min_point_s=min_point_s,
        retries=retries,
        retry_wait_s=retry_wait_s,
        retry_budget_s=retry_budget_s,
        threshold=contention_threshold,
        report=report,
        monitor=BackgroundLoad(),
    )
    report.threshold = contention_threshold
    return timer


def _time_layers(
    torch: Any,
    arch: ArchSpec,
    dtype: str,
    timer: RetryingTimer,
    lengths: Sequence[int],
    contexts: Sequence[int],
    progress: _Progress,
) -> tuple[LayerParts, LayerCalls, Timed]:
    """Build the layers and time every kind; a model whose decoder layers differ (windows,
    experts) has each distinct decoder timed too, as ``decoder.<i>``. The parts and calls are
    returned because the batched measurement reuses them (same weights, same generator)."""
    first, *others = distinct_layers(arch)
    parts = build_parts(arch, dtype, first)
    with torch.inference_mode():
        calls = LayerCalls(torch, parts, arch, dtype, first)
        timed = _time_points(arch, calls, timer, lengths, contexts, progress)
        for i in others:  # layers that differ (windows, experts): each kind timed too
            decoder = build_parts(arch, dtype, i).decoder
            other = LayerCalls(torch, replace(parts, decoder=decoder), arch, dtype, i)
            timed[f"decoder.{i}"] = _time_kind(
                arch, other, "decoder", timer, lengths, contexts, progress
            )
    return parts, calls, timed


def _batch_plans(
    arch: ArchSpec,
    batch_sizes: Sequence[int] | None,
    batch_contexts: Sequence[int] | None,
    batch_chunk: int,
    in_stack: bool,
    stack_contexts: Sequence[int] | None,
) -> tuple[BatchedPlan | None, StackPlan | None]:
    """What to time beyond single requests: the batches (with ``batch_sizes``) and the
    in-stack steps (with ``in_stack`` too: up to the largest batch size's rows)."""
    if in_stack and not batch_sizes:
        raise ConfigError("in-stack steps need batch sizes (their largest is the most rows)")
    if batch_sizes is None:
        return None, None
    plan = plan_batches(arch, batch_sizes, batch_contexts, batch_chunk)
    stack = plan_stack(arch, max(batch_sizes), stack_contexts, batch_chunk) if in_stack else None
    return plan, stack


def _measure_batched(
    torch: Any,
    arch: ArchSpec,
    dtype: str,
    parts: LayerParts,
    calls: LayerCalls,
    plans: tuple[BatchedPlan | None, StackPlan | None],
    timer: RetryingTimer,
    timed: Timed,
    progress: _Progress,
    batch_sizes: Sequence[int] | None,
) -> BatchedProfile | None:
    """The profile's ``batched`` section: the batches of the first plan, and the in-stack steps
    of the second if there is one (None: no batches asked for)."""
    plan, stack = plans
    if plan is None:
        return None
    batched = _measure_batches(
        torch, arch, dtype, parts, calls, plan, timer, timed, progress, batch_sizes
    )
    if stack is None:
        return batched
    steps = _measure_stack(torch, arch, dtype, parts, calls, stack, timer, progress)
    return batched.model_copy(update={"steps": steps})


def _measure_batches(
    torch: Any,
    arch: ArchSpec,
    dtype: str,
    parts: LayerParts,
    calls: LayerCalls,
    plan: BatchedPlan,
    timer: RetryingTimer,
    timed: Timed,
    progress: _Progress,
    batch_sizes: Sequence[int] | None,
) -> BatchedProfile:
    """Time the batches of ``plan`` with the layers already built and fit the batched roofline;
    the settings string says in the provenance what was measured."""
    return measure_batched(
        torch,
        BatchCalls(torch, parts, arch, dtype, calls.generator),
        plan,
        timer,
        timed,
        lambda text: progress.step(f"{arch.name}: {text}"),
        f"batch sizes {sorted(set(batch_sizes or ()))}, chunk {plan.chunk} tokens, "
        f"contexts {plan.contexts}, {len(plan.decoder)} decoder batches",
    )


def _measure_stack(
    torch: Any,
    arch: ArchSpec,
    dtype: str,
    parts: LayerParts,
    calls: LayerCalls,
    plan: StackPlan,
    timer: RetryingTimer,
    progress: _Progress,
) -> BatchedSteps:
    """Build the rest of the stack (layer 0 is the one already timed) and time ``plan``."""
    progress.step(f"{arch.name}: building the other {arch.shape.n_layers - 1} decoder layers")
    decoders = build_stack(arch, dtype, parts.decoder)
    return measure_stack(
        torch,
        StackCalls(torch, parts, decoders, arch, dtype, calls.generator),
        plan,
        timer,
        lambda text: progress.step(f"{arch.name}: {text}"),
        f"rows 1..{plan.max_rows}, chunk {plan.chunk} tokens, contexts {plan.contexts}, "
        f"{len(plan.layers)} stack batches",
    )


def default_contexts(arch: ArchSpec) -> list[int]:
    """DEFAULT_CONTEXTS clipped to what the model's positions allow."""
    return sorted({min(c, arch.max_positions - 1) for c in DEFAULT_CONTEXTS})


def _check_arguments(threads: int, repeats: int, warmup: int, dtype: str) -> int:
    """Reject impossible settings before anything is built; the dtype's size in bytes."""
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    return dtype_size(dtype)


def _points(
    arch: ArchSpec, lengths: Sequence[int], contexts: Sequence[int] | None
) -> tuple[list[int], list[int]]:
    """The prefill lengths and decode contexts to time: sorted, each once, within the positions."""
    lengths = sorted(set(lengths))
    contexts = sorted(set(contexts)) if contexts is not None else default_contexts(arch)
    _check_lengths(arch, lengths, contexts)
    return lengths, contexts


def _check_lengths(arch: ArchSpec, lengths: Sequence[int], contexts: Sequence[int]) -> None:
    if not lengths or not contexts:
        raise ConfigError("need at least one prefill length and one decode context")
    for t in lengths:
        if t < 1 or t > arch.max_positions:
            raise ConfigError(
                f"prefill length {t} is outside 1..{arch.max_positions} (the positions of "
                f"{arch.name})"
            )
    for c in contexts:
        if c < 1 or c + 1 > arch.max_positions:
            raise ConfigError(
                f"decode context {c} is outside 1..{arch.max_positions - 1} (the positions of "
                f"{arch.name})"
            )


def _time_points(
    arch: ArchSpec,
    calls: LayerCalls,
    timer: RetryingTimer,
    lengths: Sequence[int],
    contexts: Sequence[int],
    progress: _Progress,
) -> Timed:
    """Each kind at every prefill length, then at every decode context: the median seconds."""
    return {
        kind: _time_kind(arch, calls, kind, timer, lengths, contexts, progress) for kind in KINDS
    }


def _time_kind(
    arch: ArchSpec,
    calls: LayerCalls,
    kind: str,
    timer: RetryingTimer,
    lengths: Sequence[int],
    contexts: Sequence[int],
    progress: _Progress,
) -> dict[str, list[tuple[float, float]]]:
    """One kind at every length and context; a windowed decode is recorded at the context it
    attends to, so that the fit is in the variable :meth:`LayerCost.decode_s` evaluates."""
    timed: dict[str, list[tuple[float, float]]] = {"prefill": [], "decode": []}
    for phase, xs in (("prefill", lengths), ("decode", contexts)):
        for x in xs:
            fn, after = calls.point(kind, phase, x)
            axis = "T" if phase == "prefill" else "ctx"
            progress.step(f"{arch.name}: {kind} {phase} {axis}={x}")
            seen = calls.decode_context(x) if phase == "decode" and kind == "decoder" else x
            timed[phase].append((float(seen), timer.time(fn, after=after)))
    return timed


def distinct_layers(arch: ArchSpec) -> list[int]:
    """The first index of each kind of decoder layer (one for a model whose layers are alike)."""
    first: dict[LayerFacts, int] = {}
    for i, facts in enumerate(layer_facts(arch)):
        first.setdefault(facts, i)
    return list(first.values())


def _host_peaks(
    threads: int,
    dtype: str,
    retries: int,
    retry_budget_s: float,
    report: LoadReport,
    progress: _Progress,
) -> HostPeaks:
    """Measure the host's peaks, without re-measuring once the run's retry budget is spent."""
    progress.step("host peaks: matmul FLOP/s and copy bandwidth")
    budget_left = retry_budget_s > report.retry_s
    torch, _ = require_torch()
    with torch.inference_mode():
        return measure_host_peaks(threads, dtype, retries=retries if budget_left else 0)


class _Progress:
    """Counts the steps of a run for ``on_progress`` (which may be None)."""

    def __init__(self, on_progress: ProgressFn | None, total: int) -> None:
        self._on_progress = on_progress
        self.total = total
        self.done = 0

    def step(self, description: str) -> None:
        """Report ``description`` as the step about to run."""
        if self._on_progress is not None:
            self._on_progress(description, self.done, self.total)
        self.done += 1

    def finish(self, description: str) -> None:
        if self._on_progress is not None:
            self._on_progress(description, self.total, self.total)
