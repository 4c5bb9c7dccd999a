"""How long one continuous-batching iteration takes on the edge GPU: a batched roofline.

The single-request roofline (:mod:`offload_rl.roofline`) prices one layer as
``overhead + bytes / (mem_bw * eff_decode) + flops / (peak * eff_prefill)``. Batching changes only
*who pays which bytes*: in one iteration every decoder layer that any scheduled sequence needs is
run once, so its **weights are read once** and its overhead paid once, while **each sequence reads
its own KV** and every scheduled token costs its matmul FLOPs and its attention. For a sequence
that schedules ``n`` new tokens on top of ``c`` tokens already in its KV, per decoder layer::

    kv_bytes * (c + n)                    KV of c tokens read, n tokens written
    2 * matmul_params * n                 projections and MLP (FLOPs)
    2 * heads * head_dim * n * (2c + n + 1)   causal attention of the chunk (FLOPs)

A decode step is ``n = 1``; a chunked-prefill chunk is ``n`` up to the token budget; a split
request (first edge layer ``k``) pays these terms for layers ``[k, L)`` only, and the layers run
in the iteration are ``[min k, L)``. Embedding (token-id requests only) costs a row gather per
token; the LM head reads its weights once and computes logits only for sequences that sample a
token in this iteration (the last chunk of a prefill, every decode step), as vLLM does.

At batch 1 every term above reduces to the shipped analytical profile's fits exactly (same
constants, same FLOP counts from :mod:`offload_rl.model_shapes`); the tests check it against
``qwen2.5-0.5b@l4.json``. The coefficients are read from the edge's profile file and its named
hardware (:meth:`BatchRoofline.from_profile`), so running the cell needs no transformers/torch.
Everything is monotone non-decreasing in every sequence's tokens.

A *measured* profile (``offload-rl profile`` with batch sizes) carries the same coefficients
fitted to batches timed on its machine (:meth:`BatchRoofline.from_measured`); the terms they
multiply are :func:`decoder_terms`, :func:`head_terms` and :func:`embed_terms`, the one home of
what the fit and :meth:`BatchRoofline.sequence_s` price. A profile measured ``--in-stack`` also
carries iterations timed through the whole stack of layers, which need not be linear in the
tokens (a CPU's small matmuls are not): then ``steps`` (:mod:`offload_rl.cell.batch_steps`)
prices every iteration and the coefficients remain the additive estimate heuristics read.

Left out on purpose: the max-roofline's overlap of memory and compute (the additive form
overestimates by at most 2x where the two terms are equal, as in :mod:`offload_rl.roofline`),
padding and CUDA-graph batch-size buckets, the sampler and the scheduler's CPU time, tensor
parallelism.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from offload_rl.errors import ConfigError
from offload_rl.model_shapes import (
    ArchSpec,
    attention_prefill_flops,
    decoder_matmul_params,
    decoder_params,
    head_flops,
)
from offload_rl.profiles import ModelShape, Profile, kv_bytes_per_token
from offload_rl.roofline import Hardware, get_hardware

if TYPE_CHECKING:
    from offload_rl.cell.batch_steps import StepCost

LOGIT_BYTES = 4  # fp32 logits written per vocabulary entry, as roofline.head_cost counts them


@dataclass(frozen=True, slots=True)
class BatchRoofline:
    """Plain-float coefficients of one model on one edge GPU (see the module docstring)."""

    n_layers: int
    kv_bytes_per_token_layer: int  # KV bytes per token of one decoder layer
    layer_fixed_s: float  # per decoder layer run: overhead + weights read once
    kv_s_per_token: float  # per layer, per token of KV read or written
    linear_s_per_token: float  # per layer, per scheduled token: matmul FLOPs
    attn_s_unit: float  # per layer: seconds of 2*heads*head_dim FLOPs
    embed_fixed_s: float
    embed_s_per_token: float
    head_fixed_s: float  # overhead + vocabulary weights read once
    head_s_per_sample: float  # logits FLOPs + fp32 logits written, per sampling sequence
    head_s_per_token: float  # final norm over every scheduled token
    # measured in-stack iteration costs (offload-rl profile --in-stack): when set, they price
    # an iteration (iteration_s) and the coefficients above stay the additive estimate that
    # heuristics read (sequence_s, fixed_s)
    steps: StepCost | None = None

    @classmethod
    def from_profile(cls, profile: Profile, hw: Hardware) -> BatchRoofline:
        """The coefficients of an analytical ``profile`` on its hardware ``hw``, from the file.

        Weight bytes, KV bytes and matmul parameters of a decoder layer and the embedding's
        per-token gather cost are the profile's own; nothing reads the model's config, so the
        cell needs neither transformers nor torch. A file written before ``matmul_params``
        existed cannot be priced this way: :class:`ConfigError` (see :func:`for_profile`).
        """
        layer = profile.layers[0]
        if layer.matmul_params is None:
            raise ConfigError(
                f"profile {profile.model.name}@{profile.hardware} has no matmul_params on its "
                "decoder layers (written before they were recorded); rebuild it with "
                "offload_rl.roofline.analytical_profile"
            )
        return cls._from_counts(
            profile.model,
            hw,
            layer.weight_bytes,
            layer.matmul_params,
            profile.embedding.prefill.c1,
        )

    @classmethod
    def from_measured(cls, profile: Profile) -> BatchRoofline:
        """The coefficients fitted to the batches timed for ``profile`` (its ``batched``)."""
        if profile.batched is None:
            raise ConfigError(
                f"profile {profile.model.name}@{profile.hardware} has no measured batched costs; "
                "measure it with offload-rl profile --batch-sizes"
            )
        from offload_rl.cell.batch_steps import StepCost

        c = profile.batched.coefficients
        steps = profile.batched.steps
        return cls(
            n_layers=profile.n_layers,
            kv_bytes_per_token_layer=profile.layers[0].kv_bytes_per_token,
            layer_fixed_s=c.layer_fixed_s,
            kv_s_per_token=c.kv_s_per_token,
            linear_s_per_token=c.linear_s_per_token,
            attn_s_unit=c.attn_s_unit,
            embed_fixed_s=c.embed_fixed_s,
            embed_s_per_token=c.embed_s_per_token,
            head_fixed_s=c.head_fixed_s,
            head_s_per_sample=c.head_s_per_sample,
            head_s_per_token=c.head_s_per_token,
            steps=None
            if steps is None
            else StepCost.from_steps(steps, profile.n_layers, c.embed_fixed_s, c.embed_s_per_token),
        )

    @classmethod
    def from_arch(cls, arch: ArchSpec, hw: Hardware) -> BatchRoofline:
        """The coefficients of ``arch`` on ``hw``, from the same counts the roofline uses."""
        s_byte = 1.0 / (hw.mem_bw_bytes_s * hw.eff_decode)
        tables = 2 if arch.learned_positions else 1
        row = hw.weight_bytes_per_param + hw.dtype_bytes  # a stored row read, activations written
        return cls._from_counts(
            arch.shape,
            hw,
            hw.weight_bytes(decoder_params(arch)),
            decoder_matmul_params(arch),
            tables * arch.shape.d_model * row * s_byte,
        )

    @classmethod
    def _from_counts(
        cls,
        shape: ModelShape,
        hw: Hardware,
        weight_bytes: int,
        matmul_params: int,
        embed_s_per_token: float,
    ) -> BatchRoofline:
        """The one home of the coefficients: a decoder layer's counts plus the shape."""
        s_byte = 1.0 / (hw.mem_bw_bytes_s * hw.eff_decode)
        s_flop = 1.0 / (hw.peak_flops * hw.eff_prefill)
        b = hw.dtype_bytes
        kv = kv_bytes_per_token(shape, b)
        return cls(
            n_layers=shape.n_layers,
            kv_bytes_per_token_layer=kv,
            layer_fixed_s=hw.per_layer_overhead_s + weight_bytes * s_byte,
            kv_s_per_token=kv * s_byte,
            linear_s_per_token=2.0 * matmul_params * s_flop,
            attn_s_unit=attention_prefill_flops(shape, 1) / 2.0 * s_flop,
            embed_fixed_s=hw.per_layer_overhead_s,
            embed_s_per_token=embed_s_per_token,
            head_fixed_s=hw.per_layer_overhead_s
            + shape.vocab_size * shape.d_model * hw.weight_bytes_per_param * s_byte,
            head_s_per_sample=head_flops(shape) * s_flop + shape.vocab_size * LOGIT_BYTES * s_byte,
            head_s_per_token=2.0 * shape.d_model * b * s_byte,
        )

    def sequence_s(self, split: int, new_tokens: int, context: int, samples: bool) -> float:
        """The part of an iteration one sequence adds (its KV, its FLOPs, its logits)."""
        n = new_tokens
        per_layer = (
            self.kv_s_per_token * (context + n)
            + self.linear_s_per_token * n
            + self.attn_s_unit * n * (2 * context + n + 1)
        )
        s = (self.n_layers - split) * per_layer + self.head_s_per_token * n
        if split == 0:
            s += self.embed_s_per_token * n
        if samples:
            s += self.head_s_per_sample
        return s

    def fixed_s(self, min_split: int, any_token_ids: bool, any_samples: bool) -> float:
        """The part paid once per iteration: weights and overheads of the layers that run.

        The head's weights are read only when some sequence samples a token (an iteration of
        prefill chunks that all end mid-prompt computes no logits).
        """
        s = (self.n_layers - min_split) * self.layer_fixed_s
        if any_samples:
            s += self.head_fixed_s
        if any_token_ids:
            s += self.embed_fixed_s
        return s

    def iteration_s(self, batch: list[tuple[int, int, int, bool]]) -> float:
        """Seconds of one iteration over ``(split, new_tokens, context, samples)`` tuples.

        Convenience for tests and heuristics; the server sums :meth:`sequence_s` inline. With
        measured ``steps`` they price it (:meth:`StepCost.iteration_s`), as the server does then.
        """
        if self.steps is not None:
            return self.steps.iteration_s(batch)
        if not batch:
            return 0.0
        seqs = sum(self.sequence_s(k, n, c, smp) for k, n, c, smp in batch)
        return seqs + self.fixed_s(
            min(b[0] for b in batch), any(b[0] == 0 for b in batch), any(b[3] for b in batch)
        )


# (new_tokens, context) of each sequence of a batch, as the measured points record them.
Sequences = Sequence[tuple[int, int]]


def decoder_terms(sequences: Sequences) -> tuple[float, float, float, float]:
    """What one decoder layer of a batch multiplies by (layer_fixed_s, kv_s_per_token,
    linear_s_per_token, attn_s_unit): the terms :meth:`BatchRoofline.sequence_s` and
    :meth:`BatchRoofline.fixed_s` price per layer, summed over the batch."""
    return (
        1.0,
        float(sum(c + n for n, c in sequences)),
        float(sum(n for n, _ in sequences)),
        float(sum(n * (2 * c + n + 1) for n, c in sequences)),
    )


def head_terms(sequences: Sequences, samples: int) -> tuple[float, float, float]:
    """What the head multiplies by (head_fixed_s, head_s_per_sample, head_s_per_token)."""
    return (float(samples > 0), float(samples), float(sum(n for n, _ in sequences)))


def embed_terms(sequences: Sequences) -> tuple[float, float]:
    """What the embedding multiplies by (embed_fixed_s, embed_s_per_token)."""
    return (1.0, float(sum(n for n, _ in sequences)))


def for_profile(profile: Profile) -> BatchRoofline:
    """The batched roofline of ``profile``: measured, or on its named hardware.

    A profile with measured batched costs (``batched``) gives the coefficients fitted to them,
    whatever machine it names. Otherwise from the file when it records ``matmul_params``
    (every shipped analytical profile does); an older file falls back to the model's
    architecture, which reads its config through transformers (the ``profile`` extra), as the
    cell did before the field existed.
    """
    if profile.batched is not None:
        return BatchRoofline.from_measured(profile)
    hw = get_hardware(profile.hardware)
    if profile.layers[0].matmul_params is not None:
        return BatchRoofline.from_profile(profile, hw)
    from offload_rl.model_shapes import arch_for_shape

    return BatchRoofline.from_arch(arch_for_shape(profile.model), hw)
