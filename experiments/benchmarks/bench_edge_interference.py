"""How much a neighbour slows the cell runtime's edge forward: the noise under the validation.

Usage::

    python experiments/benchmarks/bench_edge_interference.py [--model gpt2] [--rows 3] \\
        [--context 400] [--rounds 4] [--per-round 15] [--duty 0.2] [--period-ms 5]

The cell validation's edge (``validation.runtime.cell_edge``) runs ``PackedModel.forward`` on
one torch thread while, in the same process, threads read the devices' frames, pace the
tokens out and post the edge's state to the decision service after every iteration, and, in
other processes, the devices and the service run on the machine's other core. The runtime's
decode iterations of one row count come in two modes (docs/VALIDATION.md, run H: ~95-100 and
~115-125 ms for 3 rows), and the same requests run twice differ by p90 43% (runs H, I, J).
This times the forward of ``--rows`` decode rows at ``--context`` tokens, alternating in
rounds (so that every condition sees the same drift of the machine), under:

- ``alone``: nothing else of ours running;
- ``thread``: a Python thread in the forward's process busy ``--duty`` of every
  ``--period-ms`` (it competes for the GIL, as the edge's own reader/sender/report threads do);
- ``process``: the same work in another process (it competes for the CPUs only);
- ``pinned``: that process pinned to CPU 0 and the forward to CPU 1 (Linux only).

Prints median / p10 / p90 ms per condition, each median's ratio to ``alone``, and the load
average before and after. Asserts nothing; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

Spin = Callable[[], None]


def _busy(stop: Any, duty: float, period_s: float) -> None:
    """Pure-Python work for ``duty`` of every ``period_s`` until ``stop`` is set."""
    payload = {"sessions": {str(i): {"tokens": i, "split": 0} for i in range(64)}}
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < duty * period_s:
            json.dumps(payload)
        time.sleep((1.0 - duty) * period_s)


def _busy_pinned(stop: Any, duty: float, period_s: float, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    _busy(stop, duty, period_s)


def _forward_step(model: str, rows: int, context: int) -> Spin:
    """One decode iteration of ``rows`` rows through the runtime's own forward, rewound."""
    from validation.runtime.model import SplitModel, resolve_arch
    from validation.runtime.packed_model import Chunk, PackedModel, SequenceKV

    packed = PackedModel(SplitModel.build(resolve_arch(model)))
    kvs = []
    for _ in range(rows):
        kv = SequenceKV()
        packed.forward([Chunk([1] * context, kv, False)])
        kvs.append(kv)

    def step() -> None:
        packed.forward([Chunk([1], kv, True) for kv in kvs])
        for kv in kvs:
            kv.length -= 1

    return step


def _timed(step: Spin, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _with_neighbour(kind: str, step: Spin, n: int, duty: float, period_s: float) -> list[float]:
    if kind == "alone":
        return _timed(step, n)
    if kind == "thread":
        stop_t = threading.Event()
        thread = threading.Thread(target=_busy, args=(stop_t, duty, period_s), daemon=True)
        thread.start()
        try:
            return _timed(step, n)
        finally:
            stop_t.set()
            thread.join()
    stop_p = mp.Event()
    proc = (
        mp.Process(target=_busy_pinned, args=(stop_p, duty, period_s, 0), daemon=True)
        if kind == "pinned"
        else mp.Process(target=_busy, args=(stop_p, duty, period_s), daemon=True)
    )
    proc.start()
    time.sleep(0.2)  # let it start spinning
    try:
        return _timed(step, n)
    finally:
        stop_p.set()
        proc.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--context", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=15)
    parser.add_argument("--duty", type=float, default=0.2)
    parser.add_argument("--period-ms", type=float, default=5.0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    kinds = ["alone", "thread", "process"]
    pin = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    if pin:
        kinds.append("pinned")
    print(f"load average before {os.getloadavg()}; {os.cpu_count()} CPUs")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    with torch.inference_mode():
        step = _forward_step(args.model, args.rows, args.context)
        _timed(step, 3)  # warm-up
        own = os.sched_getaffinity(0) if pin else set()
        for _ in range(args.rounds):
            for kind in kinds:
                if pin:
                    os.sched_setaffinity(0, {1} if kind == "pinned" else own)
                period = args.period_ms / 1e3
                times[kind] += _with_neighbour(kind, step, args.per_round, args.duty, period)
        if pin:
            os.sched_setaffinity(0, own)
    base = statistics.median(times["alone"])
    print(
        f"{args.model}, {args.rows} decode rows at context {args.context}, 1 torch thread; "
        f"neighbour busy {args.duty:.0%} of every {args.period_ms:g} ms"
    )
    print("condition   median ms   p10 ms   p90 ms   median / alone")
    for kind, ts in times.items():
        ms = sorted(1e3 * t for t in ts)
        p10, p90 = ms[len(ms) // 10], ms[(9 * len(ms)) // 10]
        med = statistics.median(ms)
        print(f"{kind:10s} {med:9.1f} {p10:8.1f} {p90:8.1f}   {med / (1e3 * base):.3f}")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
