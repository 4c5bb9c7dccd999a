"""Measured vs fitted batched iteration time: how well the batched roofline fits this machine.

Usage::

    python experiments/benchmarks/bench_batched_profile.py --model qwen2.5-0.5b --threads 1 \\
        [--out-profile p.json] [--plot fit.png]
    python experiments/benchmarks/bench_batched_profile.py --profile p.json --plot fit.png

Measures a profile with the batched section (``offload-rl profile``'s defaults: batch sizes
1,2,4,8, contexts 128,512,2048, chunks of 256) or reads one, then prints every timed decoder
batch (its tokens, KV, measured and fitted ms per layer, the error), the fit error per part,
and batch 1 against the single-request fits (the two must agree: batch 1 is the single request).
With ``--plot``, measured and fitted seconds per decoder layer against the batch's scheduled
tokens, decodes and chunk batches apart. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from offload_rl.profiler.batch_fitting import predict_s
from offload_rl.profiles import BatchedPoint, Profile, load_profile


def measure(model: str, threads: int, repeats: int) -> Profile:
    """A profile of ``model`` with the batched section, measured here; prints how long it took."""
    from offload_rl.model_config import load_arch
    from offload_rl.profiler import measure_profile
    from offload_rl.profiler.batch_measure import DEFAULT_BATCH_SIZES

    started = time.perf_counter()
    profile = measure_profile(
        load_arch(model),
        threads=threads,
        repeats=repeats,
        measure_peaks=False,
        batch_sizes=DEFAULT_BATCH_SIZES,
    )
    print(f"measured {model} with {threads} thread(s): {time.perf_counter() - started:.0f} s")
    print(f"  {profile.provenance.description}")
    return profile


def _describe(point: BatchedPoint) -> str:
    chunks = [f"{n}@{c}" for n, c in point.sequences if n > 1]
    decodes = [c for n, c in point.sequences if n == 1]
    text = f"chunk {','.join(chunks)}" if chunks else ""
    if decodes:
        contexts = "/".join(str(c) for c in sorted(set(decodes)))
        text += (" + " if text else "") + f"{len(decodes)} dec @{contexts}"
    return text


def report(profile: Profile) -> list[tuple[BatchedPoint, float]]:
    """Print the decoder points, the error per part and batch 1 vs the single-request fits."""
    batched = profile.batched
    if batched is None:
        raise SystemExit(f"{profile.model.name}@{profile.hardware} has no batched section")
    c = batched.coefficients
    decoder = sorted(
        (p for p in batched.points if p.part == "decoder"),
        key=lambda p: (sum(n for n, _ in p.sequences), sum(cc for _, cc in p.sequences)),
    )
    rows = [(p, predict_s(c, p)) for p in decoder]
    print(
        f"\n{'batch (decoder layer 0)':40} {'tokens':>6} {'KV':>6} {'ms':>8} {'fit ms':>8}"
        f" {'err':>6}"
    )
    for p, fitted in rows:
        tokens = sum(n for n, _ in p.sequences)
        kv = sum(n + cc for n, cc in p.sequences)
        err = 100 * (fitted - p.seconds) / p.seconds
        tag = " (single)" if p.source == "single" else ""
        print(
            f"{_describe(p) + tag:40} {tokens:6d} {kv:6d} {p.seconds * 1e3:8.3f} "
            f"{fitted * 1e3:8.3f} {err:+5.0f}%"
        )
    print("\nfit error, abs % (median / p90 / max over points):")
    for part, e in batched.fit_error.items():
        print(
            f"  {part:9} {e.median_abs_pct:5.1f} / {e.p90_abs_pct:5.1f} / {e.max_abs_pct:5.1f}"
            f"  ({e.points} points)"
        )
    print("\ncoefficients: " + ", ".join(f"{k}={v:.3g}" for k, v in c.model_dump().items()))
    layer = profile.layers[0]
    print("\nbatch 1 vs the single-request fits, ms per decoder layer:")
    for ctx in (128, 512, 2048):
        one = BatchedPoint(
            part="decoder", source="batched", sequences=[(1, ctx)], samples=1, seconds=1
        )
        print(
            f"  decode @{ctx:5d}: batched fit {predict_s(c, one) * 1e3:7.3f}, "
            f"single fit {layer.decode_s(ctx) * 1e3:7.3f}"
        )
    for t in (64, 256, 1024):
        one = BatchedPoint(
            part="decoder", source="batched", sequences=[(t, 0)], samples=1, seconds=1
        )
        print(
            f"  prefill T={t:4d}: batched fit {predict_s(c, one) * 1e3:7.3f}, "
            f"single fit {layer.prefill_s(t) * 1e3:7.3f}"
        )
    return rows


def plot(rows: list[tuple[BatchedPoint, float]], title: str, out: Path) -> None:
    """Measured (dots) and fitted (crosses) ms per layer against scheduled tokens, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, chunked, color in (
        ("decode batches", False, "tab:blue"),
        ("with a chunk", True, "tab:orange"),
    ):
        mine = [(p, f) for p, f in rows if any(n > 1 for n, _ in p.sequences) == chunked]
        tokens = [sum(n for n, _ in p.sequences) for p, _ in mine]
        ax.scatter(
            tokens, [p.seconds * 1e3 for p, _ in mine], color=color, label=f"{label}, measured"
        )
        ax.scatter(
            tokens, [f * 1e3 for _, f in mine], color=color, marker="x", label=f"{label}, fitted"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scheduled tokens in the batch")
    ax.set_ylabel("ms per decoder layer")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"\nplot: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="read this profile instead of measuring")
    parser.add_argument("--out-profile", type=Path, help="write the measured profile here")
    parser.add_argument("--plot", type=Path, help="write the measured-vs-fitted plot here")
    args = parser.parse_args()
    profile = (
        load_profile(args.profile)
        if args.profile
        else measure(args.model, args.threads, args.repeats)
    )
    if args.out_profile:
        profile.save(args.out_profile)
    rows = report(profile)
    if args.plot:
        plot(rows, f"{profile.model.name}@{profile.hardware}: batched decoder layer", args.plot)


if __name__ == "__main__":
    main()
