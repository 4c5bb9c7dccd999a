"""How long profiling a config takes: analytical for a 32-layer model, measured per layer.

Usage: ``python experiments/benchmarks/bench_profile.py [--repeats 3]``

Prints figures, asserts nothing. Analytical: Llama-3.1-8B's config (32 layers) read through
transformers, counted on the meta device and priced for the L4; the one-time import of
transformers (which imports torch when it is installed) is printed apart. Measured: the seconds
per timed decoder layer of a shipped model (gpt2, the profiler's default settings) and of the
same shape read as a plain config.json, i.e. today's path against the config path.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

LLAMA31_8B = {  # meta-llama/Llama-3.1-8B config.json
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
}


def analytical(folder: Path, repeats: int) -> None:
    """Import once, then the profile from a fresh config.json each time (no cache hit)."""
    started = time.perf_counter()
    import transformers  # noqa: F401  (the one-time cost, printed apart)

    from offload_rl.model_config import load_arch
    from offload_rl.roofline import HARDWARE, analytical_profile

    print(f"import transformers (+ torch): {time.perf_counter() - started:.2f} s")
    for i in range(repeats):
        path = folder / f"llama{i}.json"
        path.write_text(json.dumps({**LLAMA31_8B, "vocab_size": 128256 + i}))
        started = time.perf_counter()
        profile = analytical_profile(load_arch(str(path)), HARDWARE["l4"])
        elapsed = time.perf_counter() - started
        print(f"analytical, 32 layers ({profile.model.name}): {elapsed:.3f} s")


def measured(folder: Path) -> None:
    """Seconds per timed decoder layer: shipped gpt2 vs the same config read from a file."""
    from offload_rl.model_config import load_arch
    from offload_rl.model_shapes import get_arch
    from offload_rl.profiler import measure_profile

    gpt2 = get_arch("gpt2")
    path = folder / "gpt2.json"
    path.write_text(json.dumps({**(gpt2.config or {}), "_name_or_path": "gpt2-copy"}))
    for label, arch in (("shipped gpt2", gpt2), ("gpt2 from config.json", load_arch(str(path)))):
        started = time.perf_counter()
        profile = measure_profile(arch, threads=2, measure_peaks=False)
        elapsed = time.perf_counter() - started
        print(f"measured {label}: {elapsed:.1f} s for 1 timed decoder layer + embedding + head")
        print(f"  decoder layer at T=1024: {profile.layers[0].prefill_s(1024) * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-measured", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        analytical(Path(tmp), args.repeats)
        if not args.skip_measured:
            measured(Path(tmp))


if __name__ == "__main__":
    main()
