"""The in-stack step measurement against the cell runtime's own forward, timed side by side.

Usage::

    python experiments/benchmarks/bench_stack_steps.py [--model gpt2] [--context 400] \\
        [--rows 1,2,3,4,5,6,7,8] [--chunk 256] [--rounds 5] [--profile DIR/profile.json]

For each batch (decode steps of every row count at one context, a prefill chunk, a chunk with
decodes filling the budget) it times, alternately in one process and one torch thread, the
cell edge's ``PackedModel.forward`` (what ``offload-rl validate --cell`` measures) and the
profiler's in-stack call (:class:`offload_rl.profiler.stack_calls.StackCalls`: the layers, then
the LM head on the sampling rows: what ``offload-rl profile --in-stack`` times). Alternating
rounds see the same background load, so their ratio says whether the profile times what the
runtime runs even on a busy machine. With ``--profile``, the profile's price of each batch too:
its step table (``batched.steps``) and its batched roofline. Prints figures and the load
average; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path


def _median_s(fn: Callable[[], object], rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--context", type=int, default=400)
    parser.add_argument("--rows", default="1,2,3,4,5,6,7,8")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from offload_rl.cell.batch_roofline import BatchRoofline, for_profile
    from offload_rl.profiler.layers import build_parts
    from offload_rl.profiler.stack_calls import StackCalls, build_stack, stack_attention_in
    from offload_rl.profiles import Profile
    from validation.runtime.model import SplitModel, resolve_arch
    from validation.runtime.packed_model import Chunk, PackedModel, SequenceKV

    torch.set_num_threads(1)
    arch = resolve_arch(args.model)
    packed = PackedModel(SplitModel.build(arch))
    parts = build_parts(arch)
    decoders = build_stack(arch, "float32", parts.decoder)
    calls = StackCalls(torch, parts, decoders, arch, "float32", torch.Generator().manual_seed(0))
    cost: BatchRoofline | None = for_profile(Profile.load(args.profile)) if args.profile else None
    c = args.context
    rows = [int(r) for r in args.rows.split(",")]
    batches = [[(1, c)] * r for r in rows]
    batches += [[(args.chunk, 0)], [*([(1, c)] * 3), (args.chunk - 3, 0)]]  # chunks on ctx 0

    contexts: list[SequenceKV] = []  # decode rows' caches, filled once and shared

    def runtime_call(batch: list[tuple[int, int]]) -> Callable[[], object]:
        while len(contexts) < sum(n == 1 for n, _ in batch):
            kv = SequenceKV()
            packed.forward([Chunk([1] * c, kv, False)])
            contexts.append(kv)
        decodes = iter(contexts)
        kvs = [next(decodes) if n == 1 else SequenceKV() for n, _ in batch]

        def run() -> object:
            chunks = [Chunk([1] * n, kv, True) for (n, _), kv in zip(batch, kvs, strict=True)]
            out = packed.forward(chunks)
            for (n, _), kv in zip(batch, kvs, strict=True):
                kv.length -= n  # rewind: every round sees the same context
            return out

        return run

    print(f"{arch.name}, 1 thread, context {c}, load average before {os.getloadavg()}")
    header = "batch                      runtime ms   in-stack ms   ratio"
    print(header + ("   steps ms   roofline ms" if cost else ""))
    with torch.inference_mode():
        for batch in batches:
            runtime = runtime_call(batch)
            inputs = calls.inputs(batch)
            head_x = torch.randn(1, len(batch), arch.shape.d_model)

            def profiled(inputs: object = inputs, head_x: object = head_x) -> object:
                with stack_attention_in(decoders):
                    calls.forward(inputs)  # type: ignore[arg-type]
                return parts.lm_head(head_x)

            rt, st = [], []
            for _ in range(args.rounds):  # alternate: both see the same background load
                rt.append(_median_s(runtime, 1))
                st.append(_median_s(profiled, 1))
            r_ms, s_ms = 1e3 * statistics.median(rt), 1e3 * statistics.median(st)
            label = f"{sum(n == 1 for n, _ in batch)} dec" + (
                f" + chunk {max(n for n, _ in batch)}" if any(n > 1 for n, _ in batch) else ""
            )
            line = f"{label:<26} {r_ms:10.1f} {s_ms:13.1f} {s_ms / r_ms:7.2f}"
            if cost is not None:
                seqs = [(0, n, ctx, True) for n, ctx in batch]
                steps = cost.iteration_s(seqs)
                roof = replace(cost, steps=None).iteration_s(seqs)
                line += f" {1e3 * steps:10.1f} {1e3 * roof:13.1f}"
            print(line, flush=True)
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
