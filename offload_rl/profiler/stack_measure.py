"""Timing iterations in-stack and fitting the step table: ``batched.steps`` of a profile.

Run by :func:`~offload_rl.profiler.measure.measure_profile` with ``in_stack`` after the
batched points, with the same threads and timer (one warm-up run: a chunk through the whole
stack takes most of a second on one CPU thread). The plan (:func:`plan_stack`):

- decode steps of every row count ``1..max_rows`` (not only powers of two: a CPU's matmul
  kernels make odd counts odd), each at every context;
- prefill chunks alone at context 0 of several sizes up to the token budget, and the largest
  on top of the longest context (what a prompt's second chunk is);
- mixed iterations as the scheduler builds them: ``d`` decodes first, then a chunk filling
  the token budget (``chunk - d`` tokens);
- the LM head at ``1..max_rows`` sampling rows.

Every point is timed in :data:`STACK_PASSES` passes over the whole plan, each pass on freshly
allocated inputs, and the median of its passes is kept: one pass measures a point in one stretch
of the machine's state and one allocation. On the quiet 2-core VM, gpt2's 3-row decode through
the stack took 53-62 ms over six input sets a minute apart, where a one-pass profile had said
64-71 ms; that single point priced the runtime's commonest batch +9.7% in the cell validation
(docs/VALIDATION.md, run H).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from offload_rl.errors import ConfigError
from offload_rl.model_shapes import ArchSpec
from offload_rl.profiler.batch_calls import Batch
from offload_rl.profiler.batch_measure import batch_label, clip_chunk_contexts
from offload_rl.profiler.stack_calls import StackCalls, stack_attention_in
from offload_rl.profiler.stack_fitting import fit_steps
from offload_rl.profiler.timing import RetryingTimer
from offload_rl.profiles import BatchedStepPoint, BatchedSteps

DEFAULT_STACK_CONTEXTS: tuple[int, ...] = (64, 256, 768)
CHUNK_FRACTIONS: tuple[int, ...] = (16, 8, 4, 2, 1)  # chunks of chunk // f tokens
STACK_PASSES = 3  # passes over the plan, fresh inputs each; a point keeps its median (above)

StepFn = Callable[[str], None]


@dataclass(frozen=True)
class StackPlan:
    """What an in-stack run times: batches through the layers, head sample counts."""

    layers: list[Batch]
    head: list[int]
    max_rows: int
    contexts: list[int]
    chunk: int
    passes: int = STACK_PASSES

    @property
    def steps(self) -> int:
        return (len(self.layers) + len(self.head)) * self.passes


def plan_stack(
    arch: ArchSpec, max_rows: int, contexts: Sequence[int] | None, chunk: int
) -> StackPlan:
    """The batches to time for ``arch`` (see the module docstring); chunk and contexts clipped
    to its positions."""
    if max_rows < 1:
        raise ConfigError(f"in-stack row counts need a largest batch size >= 1, got {max_rows}")
    chunk, contexts = clip_chunk_contexts(
        arch, chunk, DEFAULT_STACK_CONTEXTS if contexts is None else contexts, "in-stack"
    )
    layers: list[Batch] = [[(1, c)] * r for r in range(1, max_rows + 1) for c in contexts]
    sizes = sorted({max(1, chunk // f) for f in CHUNK_FRACTIONS} - set(range(1, max_rows + 1)))
    layers.extend([(n, 0)] for n in sizes)
    layers.append([(chunk, contexts[-1])])
    for d in sorted({1, 2, max_rows // 2, max_rows - 1}):
        if 1 <= d < chunk:
            decodes = [(1, contexts[i % len(contexts)]) for i in range(d)]
            layers.append([*decodes, (chunk - d, 0)])
    unique: list[Batch] = []
    for batch in layers:
        if batch not in unique:
            unique.append(batch)
    return StackPlan(unique, list(range(1, max_rows + 1)), max_rows, contexts, chunk)


def measure_stack(
    torch: Any,
    calls: StackCalls,
    plan: StackPlan,
    timer: RetryingTimer,
    step: StepFn,
    settings: str,
) -> BatchedSteps:
    """Time every batch of ``plan`` through the stack and the head; fit the step table."""
    timer = replace(timer, warmup=min(timer.warmup, 1))
    layers: list[list[float]] = [[] for _ in plan.layers]
    heads: list[list[float]] = [[] for _ in plan.head]
    for p in range(plan.passes):
        tag = f" (pass {p + 1}/{plan.passes})" if plan.passes > 1 else ""
        with torch.inference_mode(), stack_attention_in(calls.decoders):
            for batch, seconds in zip(plan.layers, layers, strict=True):
                step(f"in-stack {len(calls.decoders)} layers, {batch_label(batch)}{tag}")
                fn, after = calls.layers(batch)  # fresh inputs every pass
                seconds.append(timer.time(fn, after=after))
        with torch.inference_mode():
            for samples, seconds in zip(plan.head, heads, strict=True):
                step(f"in-stack head, {samples} row(s){tag}")
                fn, after = calls.head(samples)
                seconds.append(timer.time(fn, after=after))
    points = [
        _point("layers", batch, sum(n == 1 for n, _ in batch), statistics.median(seconds))
        for batch, seconds in zip(plan.layers, layers, strict=True)
    ]
    points += [
        _point("head", [(samples, 0)], samples, statistics.median(seconds))
        for samples, seconds in zip(plan.head, heads, strict=True)
    ]
    n_layers = len(calls.decoders)
    method = (
        f"{settings}; in-stack: all {n_layers} distinct decoder layers in a row (own random "
        "weights each) over the packed tokens, each sequence's keys and values written into "
        "its own per-layer buffers and attended with transformers' sdpa, then the final norm; "
        f"decodes of 1..{plan.max_rows} rows at contexts {plan.contexts}, chunks up to "
        f"{plan.chunk} tokens, mixed chunk + decodes filling the budget; the LM head at "
        f"1..{plan.max_rows} rows; each point the median of {plan.passes} passes over the plan "
        f"on fresh inputs; per layer = stack time / {n_layers}, a table over packed "
        "tokens plus per-sequence KV and attention terms, fitted by NNLS weighted for relative "
        "error"
    )
    steps = fit_steps(points, n_layers, method)
    e = steps.fit_error
    return steps.model_copy(
        update={
            "method": f"{method} (median {e.median_abs_pct:.1f}% / p90 {e.p90_abs_pct:.1f}% off "
            f"over {e.points} points)"
        }
    )


def _point(part: str, batch: Batch, samples: int, seconds: float) -> BatchedStepPoint:
    return BatchedStepPoint.model_validate(
        {"part": part, "sequences": batch, "samples": samples, "seconds": seconds}
    )
