"""Hand-made profiles with round numbers, so cost-model tests can be checked by hand."""

from __future__ import annotations

from offload_rl.profiles import (
    SCHEMA_VERSION,
    DecodeFit,
    LayerCost,
    ModelShape,
    PrefillFit,
    Profile,
    Provenance,
)


def simple_profile(
    n_layers: int = 4,
    prefill_per_token_s: float = 1e-3,
    decode_per_token_s: float = 1e-3,
    hidden_bytes: int = 1000,
    kv_bytes: int = 100,
    hardware: str = "test",
) -> Profile:
    """Every decoder layer costs ``prefill_per_token_s * T`` to prefill and
    ``decode_per_token_s`` per decoded token; embedding and head are free."""
    zero = LayerCost(
        name="zero",
        kind="embedding",
        prefill=PrefillFit(c0=0.0, c1=0.0, c2=0.0),
        decode=DecodeFit(c0=0.0, c1=0.0),
        weight_bytes=0,
        kv_bytes_per_token=0,
    )
    layer = LayerCost(
        name="layer",
        kind="decoder",
        prefill=PrefillFit(c0=0.0, c1=prefill_per_token_s, c2=0.0),
        decode=DecodeFit(c0=decode_per_token_s, c1=0.0),
        weight_bytes=1_000_000,
        kv_bytes_per_token=kv_bytes,
    )
    return Profile(
        schema_version=SCHEMA_VERSION,
        model=ModelShape(
            name="toy",
            n_layers=n_layers,
            d_model=hidden_bytes // 2,
            n_heads=1,
            n_kv_heads=1,
            head_dim=hidden_bytes // 2,
            ffn_dim=4,
            vocab_size=10,
            tied_embeddings=True,
        ),
        hardware=hardware,
        dtype_bytes=2,
        provenance=Provenance(
            kind="analytical",
            hardware=hardware,
            description="hand-made for tests",
            date="2026-11-29",
            dtype="float16",
            threads=None,
            library_versions={},
            method="round numbers",
            peak_flops=None,
            mem_bw_bytes_s=None,
            eff_prefill=None,
            eff_decode=None,
            calibration=None,
        ),
        embedding=zero,
        layers=[layer] * n_layers,
        head=zero.model_copy(update={"kind": "head", "name": "head"}),
        activation_bytes_per_token=[4] + [hidden_bytes] * n_layers,
    )
