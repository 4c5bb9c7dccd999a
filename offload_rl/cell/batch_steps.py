"""Pricing an iteration from measured steps: a table in the packed tokens, not a line.

The batched roofline (:mod:`offload_rl.cell.batch_roofline`) is linear in the tokens an
iteration packs. A GPU's kernels are close to that; a CPU's small matmuls are not: on the
validation's 2-core EPYC a packed GPT-2 decode step of 2 or 3 rows costs nearly twice that of
one row (the gemv of one row against a gemm kernel's blocking for a few), and 4 rows cost
*less* than 3. No line through the tokens can express that, so a profile measured with
``offload-rl profile --in-stack`` carries a table instead (:class:`~offload_rl.profiles.
BatchedSteps`), and :class:`StepCost` prices an iteration over ``(split k, new tokens n,
context c, samples)`` sequences as::

    sum over the layers l that run (min k .. L-1) of layer(T_l)
    + sum over sequences of (L - k) * (kv * (c + n) + attn * n * (2c + n + 1))
    + head(sampling sequences)
    + embed_fixed + embed_per_token * (tokens of token-id sequences)

where ``T_l`` is the tokens of the sequences with ``k <= l`` and the head costs nothing when no
sequence samples.

``layer`` and ``head`` are :class:`PiecewiseLinear` over the measured counts (exact at them,
linear between, the fitted slope beyond the last); the per-sequence terms are
:func:`~offload_rl.cell.batch_roofline.decoder_terms`' KV and attention terms, the one home of
what a sequence's context costs, so the price is non-decreasing in every context; the embedding
is the batched roofline's. With every split at 0 the layer sum is ``L * layer(T)``: the whole
stack as it was timed.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from offload_rl.cell.batch_roofline import decoder_terms
from offload_rl.profiles import BatchedSteps, StepTable

# (split, new_tokens, context, samples) of one scheduled sequence, as BatchRoofline.iteration_s
Scheduled = tuple[int, int, int, bool]


@dataclass(frozen=True, slots=True)
class PiecewiseLinear:
    """Seconds at counts ``x`` (strictly increasing, >= 1), linear between; ``tail_s_per_x`` per
    unit beyond the last; the first value below the first count, 0 at a count of 0 or less."""

    x: tuple[int, ...]
    seconds: tuple[float, ...]
    tail_s_per_x: float

    @classmethod
    def from_table(cls, table: StepTable) -> PiecewiseLinear:
        return cls(tuple(table.x), tuple(table.seconds), table.tail_s_per_x)

    def scaled(self, factor: float) -> PiecewiseLinear:
        """Every time x ``factor``."""
        return PiecewiseLinear(
            self.x, tuple(y * factor for y in self.seconds), self.tail_s_per_x * factor
        )

    def at(self, x: float) -> float:
        """The seconds at count ``x``."""
        xs, ys = self.x, self.seconds
        if x <= 0:
            return 0.0
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1] + self.tail_s_per_x * (x - xs[-1])
        i = bisect_right(xs, x)  # xs[i - 1] <= x < xs[i]
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def tail_slope(x: Sequence[int], seconds: Sequence[float]) -> float:
    """The slope beyond the last measured count: the last segment's, never negative (one count:
    none, a single point has no slope)."""
    if len(x) < 2:
        return 0.0
    return max(0.0, (seconds[-1] - seconds[-2]) / (x[-1] - x[-2]))


@dataclass(frozen=True, slots=True)
class StepCost:
    """Measured iteration costs of one model on one machine (see the module docstring)."""

    n_layers: int
    layer: PiecewiseLinear  # one decoder layer over T packed tokens, context 0
    head: PiecewiseLinear  # the LM head over s sampling rows
    kv_s_per_token: float  # per layer and sequence, per token of its KV (c + n)
    attn_s_unit: float  # per layer and sequence, per n (2c + n + 1)
    embed_fixed_s: float
    embed_s_per_token: float

    @classmethod
    def from_steps(
        cls, steps: BatchedSteps, n_layers: int, embed_fixed_s: float, embed_s_per_token: float
    ) -> StepCost:
        """The cost of a profile's ``batched.steps``; the embedding's terms are the roofline's."""
        return cls(
            n_layers=n_layers,
            layer=PiecewiseLinear.from_table(steps.layer),
            head=PiecewiseLinear.from_table(steps.head),
            kv_s_per_token=steps.kv_s_per_token,
            attn_s_unit=steps.attn_s_unit,
            embed_fixed_s=embed_fixed_s,
            embed_s_per_token=embed_s_per_token,
        )

    def scaled(self, factor: float) -> StepCost:
        """Every time x ``factor`` (a diagnostic: the edge ran slower than measured)."""
        return StepCost(
            n_layers=self.n_layers,
            layer=self.layer.scaled(factor),
            head=self.head.scaled(factor),
            kv_s_per_token=self.kv_s_per_token * factor,
            attn_s_unit=self.attn_s_unit * factor,
            embed_fixed_s=self.embed_fixed_s * factor,
            embed_s_per_token=self.embed_s_per_token * factor,
        )

    def context_s(self, new_tokens: int, context: int) -> float:
        """Per layer: what one sequence's KV and attention add."""
        _, kv, _, attn = decoder_terms(((new_tokens, context),))
        return self.kv_s_per_token * kv + self.attn_s_unit * attn

    def layers_s(self, splits_tokens: Sequence[tuple[int, int]]) -> float:
        """The decoder layers of an iteration over ``(split, new tokens)`` sequences, context 0:
        layer ``l`` packs the tokens of every sequence whose split is ``<= l``."""
        L = self.n_layers
        by_split: dict[int, int] = {}
        for k, n in splits_tokens:
            if k < L:
                by_split[k] = by_split.get(k, 0) + n
        total = 0.0
        tokens = 0
        splits = sorted(by_split)
        for i, k in enumerate(splits):
            tokens += by_split[k]
            upto = splits[i + 1] if i + 1 < len(splits) else L
            total += (upto - k) * self.layer.at(tokens)
        return total

    def iteration_s(self, batch: Sequence[Scheduled]) -> float:
        """Seconds of one iteration over ``(split, new_tokens, context, samples)`` sequences."""
        if not batch:
            return 0.0
        L = self.n_layers
        s = self.layers_s([(k, n) for k, n, _, _ in batch])
        s += sum((L - k) * self.context_s(n, c) for k, n, c, _ in batch if k < L)
        s += self.head.at(sum(1 for *_, smp in batch if smp))
        ids = sum(n for k, n, _, _ in batch if k == 0)
        if any(k == 0 for k, *_ in batch):
            s += self.embed_fixed_s + self.embed_s_per_token * ids
        return s
