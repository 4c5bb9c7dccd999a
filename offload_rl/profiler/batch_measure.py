"""Timing batches and fitting the batched roofline to them: the ``batched`` section of a profile.

Run by :func:`~offload_rl.profiler.measure.measure_profile` after the single-request points,
with the same layers, timer and threads: every batch of the plan through one decoder layer
(layer 0, the one the single-request run timed first), the head at each distinct (tokens,
samples) and the embedding at each distinct token count; then the fit, with the single-request
samples as batch-1 points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from offload_rl.errors import ConfigError
from offload_rl.model_shapes import ArchSpec
from offload_rl.profiler.batch_calls import Batch, BatchCalls, batch_plan, packed_attention_in
from offload_rl.profiler.batch_fitting import fit_batched
from offload_rl.profiler.timing import RetryingTimer
from offload_rl.profiles import BatchedPoint, BatchedProfile

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8)
DEFAULT_BATCH_CONTEXTS: tuple[int, ...] = (128, 512, 2048)
DEFAULT_BATCH_CHUNK = 256

# kind -> phase -> [(tokens or context, seconds)]: the single-request samples (assemble.Timed)
SingleTimed = dict[str, dict[str, list[tuple[float, float]]]]
StepFn = Callable[[str], None]


@dataclass(frozen=True)
class BatchedPlan:
    """What a batched run times: decoder batches, head (tokens, samples), embedding batches."""

    decoder: list[Batch]
    head: list[tuple[int, int]]
    embedding: list[Batch]
    chunk: int
    contexts: list[int]

    @property
    def steps(self) -> int:
        return len(self.decoder) + len(self.head) + len(self.embedding)


def plan_batches(
    arch: ArchSpec,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    contexts: Sequence[int] | None = None,
    chunk: int = DEFAULT_BATCH_CHUNK,
) -> BatchedPlan:
    """The batches to time for ``arch``; contexts and chunk clipped to its positions.

    A decode sequence samples a token and so does a chunk (timed as a prompt's last chunk),
    so each batch's head point computes logits for every sequence of it.
    """
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    chunk, contexts = clip_chunk_contexts(
        arch, chunk, DEFAULT_BATCH_CONTEXTS if contexts is None else contexts, "batch"
    )
    decoder = batch_plan(batch_sizes, contexts, chunk)
    head: dict[tuple[int, int], None] = {}
    embedding: dict[int, Batch] = {}
    for batch in decoder:
        tokens = sum(n for n, _ in batch)
        head.setdefault((tokens, len(batch)), None)
        embedding.setdefault(tokens, batch)
    return BatchedPlan(decoder, list(head), list(embedding.values()), chunk, contexts)


def clip_chunk_contexts(
    arch: ArchSpec, chunk: int, contexts: Sequence[int], what: str
) -> tuple[int, list[int]]:
    """A plan's chunk and contexts, checked (:class:`ConfigError` naming ``what``) and clipped to
    the positions of ``arch``: a chunk on top of any context still fits."""
    if chunk < 1:
        raise ConfigError(f"the batch chunk must be >= 1 token, got {chunk}")
    if not contexts or any(c < 1 for c in contexts):
        raise ConfigError(f"{what} contexts must be positive integers, got {list(contexts)}")
    chunk = min(chunk, arch.max_positions // 2)
    return chunk, sorted({min(c, arch.max_positions - chunk) for c in contexts})


def measure_batched(
    torch: Any,
    calls: BatchCalls,
    plan: BatchedPlan,
    timer: RetryingTimer,
    single: SingleTimed,
    step: StepFn,
    settings: str,
) -> BatchedProfile:
    """Time every batch of ``plan``, fit, and return the ``batched`` section."""
    points: list[BatchedPoint] = []
    with torch.inference_mode(), packed_attention_in(calls.decoder_module):
        for batch in plan.decoder:
            step(f"batched decoder {batch_label(batch)}")
            fn, after = calls.decoder(batch)
            points.append(_point("decoder", batch, len(batch), timer.time(fn, after=after)))
    with torch.inference_mode():
        for tokens, samples in plan.head:
            step(f"batched head {tokens} tokens, {samples} logits")
            fn, after = calls.head(tokens, samples)
            points.append(_point("head", [(tokens, 0)], samples, timer.time(fn, after=after)))
        for batch in plan.embedding:
            step(f"batched embedding {sum(n for n, _ in batch)} tokens")
            fn, after = calls.embedding(batch)
            points.append(_point("embedding", batch, len(batch), timer.time(fn, after=after)))
    points.extend(single_points(single))
    coefficients, errors = fit_batched(points)
    return BatchedProfile(
        method=_method(settings, errors),
        points=points,
        coefficients=coefficients,
        fit_error=errors,
    )


def single_points(single: SingleTimed) -> list[BatchedPoint]:
    """The single-request samples as batch-1 points (prefill T: a chunk of T on no context)."""
    points = []
    for part in ("decoder", "head", "embedding"):
        for x, seconds in single[part]["prefill"]:
            points.append(_point(part, [(int(x), 0)], 1, seconds, "single"))
        for x, seconds in single[part]["decode"]:
            points.append(_point(part, [(1, int(x))], 1, seconds, "single"))
    return points


def _point(
    part: str, batch: Batch, samples: int, seconds: float, source: str = "batched"
) -> BatchedPoint:
    return BatchedPoint.model_validate(
        {
            "part": part,
            "source": source,
            "sequences": batch,
            "samples": samples,
            "seconds": seconds,
        }
    )


def batch_label(batch: Batch) -> str:
    """A batch in words: its chunks as ``chunk n@context``, then its decodes and their contexts."""
    decodes = [c for n, c in batch if n == 1]
    chunks = [f"chunk {n}@{c}" for n, c in batch if n > 1]
    text = ", ".join(chunks)
    if decodes:
        shown = ",".join(str(c) for c in sorted(set(decodes)))
        text += (", " if text else "") + f"{len(decodes)} decode(s) ctx {shown}"
    return text


def _method(settings: str, errors: dict[str, Any]) -> str:
    fit = "; ".join(
        f"{part} median {e.median_abs_pct:.1f}% / p90 {e.p90_abs_pct:.1f}% off over {e.points}"
        for part, e in errors.items()
    )
    return (
        f"{settings}; new tokens of all sequences packed in one row through the real decoder "
        "layer (layer 0), attention per sequence over its own KV with transformers' sdpa (no "
        "padding), head = final norm over the packed tokens + LM head on one row per sequence; "
        "fitted with the single-request samples as batch-1 points by NNLS weighted for "
        f"relative error on the batched roofline's terms ({fit})"
    )
