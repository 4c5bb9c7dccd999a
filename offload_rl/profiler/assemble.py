"""Putting a measured profile together: fit the timed points, write the provenance, copy the layer.

The provenance says how the numbers were made (method, worst fit error, background load) and,
where the host's peaks were measured, what fraction of them the decoder layer reached, so that a
profile read later can be judged without the run that made it.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

from offload_rl.layer_counts import LayerFacts
from offload_rl.model_shapes import (
    ArchSpec,
    decoder_params,
    decoder_prefill_flops,
    embedding_params,
    head_params,
    layer_facts,
)
from offload_rl.profiler.fitting import fit_decode, fit_prefill, max_relative_error
from offload_rl.profiler.host import HostPeaks, host_description
from offload_rl.profiler.timing import LoadReport
from offload_rl.profiles import (
    SCHEMA_VERSION,
    LayerCost,
    Profile,
    Provenance,
    activation_bytes_per_token,
    kv_bytes_per_token,
)
from offload_rl.roofline import shape_note

# kind -> phase ('prefill', 'decode') -> [(tokens or context, median seconds)], in timing order.
Timed = dict[str, dict[str, list[tuple[float, float]]]]
KINDS: tuple[str, ...] = ("embedding", "decoder", "head")


def assemble_profile(
    arch: ArchSpec,
    class_names: str,
    timed: Timed,
    *,
    threads: int,
    dtype: str,
    dtype_bytes: int,
    repeats: int,
    warmup: int,
    min_point_s: float,
    hardware: str,
    peaks: HostPeaks | None,
    versions: dict[str, str],
    load: LoadReport | None = None,
) -> Profile:
    """Fit the timed points and put the profile together."""
    s = arch.shape
    costs, worst = _fit_layers(arch, timed, dtype_bytes)
    method = _method(arch, class_names, timed, versions, worst, repeats, warmup, min_point_s)
    description = host_description(threads)
    if load is not None and load.loads:
        description += "; " + load.summary()
    eff_prefill = eff_decode = None
    calibration = None
    if peaks is not None:
        eff_prefill, eff_decode = _achieved(arch, costs["decoder"], dtype_bytes, peaks)
        lengths = [int(x) for x, _ in timed["decoder"]["prefill"]]
        calibration = (
            f"peak_flops and mem_bw_bytes_s measured on this host ({peaks.method}); eff_prefill "
            f"= FLOPs/(peak*t) the decoder layer reached at T={max(lengths)}, eff_decode = "
            f"(weights + KV read)/(bw*t) it reached (median over contexts)"
        )
    provenance = Provenance(
        kind="measured",
        hardware=hardware,
        description=description,
        date=datetime.now(UTC).replace(microsecond=0).isoformat(),
        dtype=dtype,
        threads=threads,
        library_versions=versions,
        method=method,
        peak_flops=peaks.flops if peaks else None,
        mem_bw_bytes_s=peaks.mem_bw_bytes_s if peaks else None,
        eff_prefill=eff_prefill,
        eff_decode=eff_decode,
        calibration=calibration,
    )
    return Profile(
        schema_version=SCHEMA_VERSION,
        model=s,
        hardware=hardware,
        dtype_bytes=dtype_bytes,
        provenance=provenance,
        embedding=costs["embedding"],
        layers=_decoder_layers(arch, costs),
        head=costs["head"],
        activation_bytes_per_token=activation_bytes_per_token(s, dtype_bytes),
    )


def _decoder_layers(arch: ArchSpec, costs: dict[str, LayerCost]) -> list[LayerCost]:
    """Each layer gets the costs of the first layer like it (``decoder`` is layer 0's)."""
    first: dict[LayerFacts, str] = {}
    layers = []
    for i, facts in enumerate(layer_facts(arch)):
        kind = first.setdefault(facts, "decoder" if i == 0 else f"decoder.{i}")
        layers.append(costs[kind].model_copy(update={"name": f"decoder.{i}"}))
    return layers


def _fit_layers(
    arch: ArchSpec, timed: Timed, dtype_bytes: int
) -> tuple[dict[str, LayerCost], dict[str, float]]:
    """One fitted :class:`LayerCost` per kind, and the worst relative error of each phase's fits."""
    s = arch.shape
    costs: dict[str, LayerCost] = {}
    worst = {"prefill": 0.0, "decode": 0.0}
    per_token = kv_bytes_per_token(s, dtype_bytes)
    decoders = [k for k in timed if k.startswith("decoder")]
    for kind, weights, kv in (
        ("embedding", embedding_params(arch) * dtype_bytes, 0),
        *((k, decoder_params(arch, _index(k)) * dtype_bytes, per_token) for k in decoders),
        ("head", head_params(arch) * dtype_bytes, 0),
    ):
        prefill = fit_prefill(timed[kind]["prefill"])
        decode = fit_decode(timed[kind]["decode"])
        worst["prefill"] = max(
            worst["prefill"], max_relative_error(prefill, timed[kind]["prefill"])
        )
        worst["decode"] = max(worst["decode"], max_relative_error(decode, timed[kind]["decode"]))
        costs[kind] = LayerCost(
            name=kind,
            kind="decoder" if kind in decoders else kind,
            prefill=prefill,
            decode=decode,
            weight_bytes=weights,
            kv_bytes_per_token=kv,
            samples={phase: list(points) for phase, points in timed[kind].items()},
            window=layer_facts(arch)[_index(kind)].window if kind in decoders else None,
        )
    return costs, worst


def _index(kind: str) -> int:
    """The layer index of a timed decoder kind (``decoder`` is layer 0, ``decoder.5`` layer 5)."""
    return int(kind.split(".")[1]) if "." in kind else 0


def _method(
    arch: ArchSpec,
    class_names: str,
    timed: Timed,
    versions: dict[str, str],
    worst: dict[str, float],
    repeats: int,
    warmup: int,
    min_point_s: float,
) -> str:
    """The provenance's account of how the points were timed and fitted."""
    lengths = [int(x) for x, _ in timed["decoder"]["prefill"]]
    contexts = [int(x) for x, _ in timed["decoder"]["decode"]]
    return (
        f"one layer of each kind timed ({class_names}; embedding with position encoding; head = "
        f"final norm over T tokens + LM head on the last token, as generation does), built with "
        f"transformers {versions.get('transformers', '?')} from the published shape, random "
        f"weights, eval + inference_mode, sdpa attention, batch 1; prefill at T={lengths} with a "
        f"fresh DynamicCache (causal), decode of 1 token with a DynamicCache pre-filled to "
        f"ctx={contexts}; median of >= {repeats} runs (cheap points repeated to >= "
        f"{min_point_s:g} s) after {warmup} warm-up; fitted by NNLS "
        f"weighted for relative error (worst point off by {worst['prefill']:.0%} prefill, "
        f"{worst['decode']:.0%} decode); {_reuse(arch, timed)}. Shape: {shape_note(arch)}"
    )


def _reuse(arch: ArchSpec, timed: Timed) -> str:
    """How the timed decoder layers stand for all of them."""
    kinds = [k for k in timed if k.startswith("decoder")]
    if len(kinds) == 1:
        return (
            f"the decoder layer's costs are reused for all {arch.shape.n_layers} identical layers"
        )
    first = ", ".join(str(_index(k)) for k in kinds)
    return f"layers {first} timed (they differ); each other layer reuses the first one like it"


def _achieved(
    arch: ArchSpec, decoder: LayerCost, dtype_bytes: int, peaks: HostPeaks
) -> tuple[float, float]:
    """(eff_prefill, eff_decode): the fractions of the host's peaks the decoder layer reached."""
    samples = decoder.samples or {}
    tokens, t_prefill = max(samples["prefill"])
    eff_prefill = decoder_prefill_flops(arch, int(tokens)) / peaks.flops / t_prefill
    weights = decoder_params(arch) * dtype_bytes
    kv = kv_bytes_per_token(arch.shape, dtype_bytes)
    eff_decode = statistics.median(
        (weights + kv * (ctx + 1)) / peaks.mem_bw_bytes_s / t for ctx, t in samples["decode"]
    )
    return eff_prefill, eff_decode
