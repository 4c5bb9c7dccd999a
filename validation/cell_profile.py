"""The batched cost the simulator prices the cell edge's iterations with, measured here.

The simulator's edge (:class:`~offload_rl.cell.edge_server.EdgeServer`) prices an iteration with
a :class:`~offload_rl.cell.batch_roofline.BatchRoofline`. For this machine its coefficients come
from a profile measured by :mod:`offload_rl.profiler` with the runtime's thread count, before
the run, never fitted to the run (see :func:`edge_batch_cost`).

:func:`from_single_request_profile` reads the coefficients off a profile measured one request at
a time, matching each fitted term to the roofline's term of the same shape: per decoder layer,
``prefill(T) = fixed + T (kv + linear + attn) + attn T^2`` and ``decode(c) = fixed + kv +
linear + 2 attn + c (kv + 2 attn)``; the head's decode time is its fixed part (a single request
cannot tell a sampling sequence's logits from the weights' read), its prefill slope the norm per
token; the embedding's prefill slope its per-token gather. What batching shares is then exactly
the roofline's assumption (weights and overheads once per iteration), not a measurement.
"""

from __future__ import annotations

from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.profiles import Profile
from offload_rl.profiles import kv_bytes_per_token as profile_kv_bytes


def from_single_request_profile(profile: Profile) -> BatchRoofline:
    """A :class:`BatchRoofline` from a single-request profile (see the module docstring)."""
    layer = profile.layers[0]
    pre, dec = layer.prefill, layer.decode
    attn = pre.c2
    kv = max(dec.c1 - 2.0 * attn, 0.0)
    linear = max(pre.c1 - kv - attn, 0.0)
    fixed = max(dec.c0 - kv - linear - 2.0 * attn, 0.0)
    emb, head = profile.embedding, profile.head
    return BatchRoofline(
        n_layers=profile.model.n_layers,
        kv_bytes_per_token_layer=profile_kv_bytes(profile.model, profile.dtype_bytes),
        layer_fixed_s=fixed,
        kv_s_per_token=kv,
        linear_s_per_token=linear,
        attn_s_unit=attn,
        embed_fixed_s=emb.decode.c0,
        embed_s_per_token=emb.prefill.c1,
        head_fixed_s=head.decode.c0,
        head_s_per_sample=0.0,
        head_s_per_token=head.prefill.c1,
    )
