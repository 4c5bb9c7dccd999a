"""What this machine is: its CPU and libraries, and the matmul FLOP/s and copy bandwidth it reaches.

The peaks let the provenance say what fraction of this host's FLOP/s and bandwidth the measured
decoder layer reached: the efficiencies the analytical roofline (``offload_rl.roofline``) needs.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from offload_rl import __version__
from offload_rl.profiler.timing import CONTENTION_THRESHOLD, BackgroundLoad
from offload_rl.profiler.torch_extra import require_torch, torch_dtype


@dataclass
class HostPeaks:
    """Effective peaks of this machine, measured (best of several runs)."""

    flops: float  # a large dense matmul in the profile's dtype
    mem_bw_bytes_s: float  # a large tensor copy, counted as bytes read + bytes written
    method: str


def measure_host_peaks(
    threads: int,
    dtype: str = "float32",
    matmul_n: int = 3072,
    copy_mib: int = 1024,
    runs: int = 7,
    retries: int = 3,
    retry_wait_s: float = 2.0,
    contention_threshold: float = CONTENTION_THRESHOLD,
) -> HostPeaks:
    """Measure the effective matmul FLOP/s and copy bandwidth with ``threads`` threads.

    Each is the best of ``runs``; an attempt during which other processes kept more than
    ``contention_threshold`` CPUs busy is repeated (up to ``retries`` times), keeping the best.
    """
    torch, _ = require_torch()
    dtype_class = torch_dtype(torch, dtype)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    monitor = BackgroundLoad()
    flops = bandwidth = 0.0
    worst_load = 0.0
    try:
        with torch.inference_mode():
            for attempt in range(retries + 1):
                if attempt:
                    time.sleep(retry_wait_s)
                monitor.restart()
                flops = max(flops, _best_matmul_flops(torch, dtype_class, matmul_n, runs))
                bandwidth = max(bandwidth, _best_copy_bandwidth(torch, copy_mib, runs))
                load = monitor.cpus_used_by_others()
                worst_load = load or 0.0
                if load is None or load <= contention_threshold:
                    break
    finally:
        torch.set_num_threads(previous)
    method = (
        f"best of {runs}: {matmul_n}x{matmul_n} {dtype} matmul; {copy_mib} MiB tensor copy counted "
        f"as read + write; {threads} threads"
    )
    if worst_load > contention_threshold:
        method += f"; WARNING: measured while {worst_load:.2f} CPUs were busy elsewhere"
    return HostPeaks(flops=flops, mem_bw_bytes_s=bandwidth, method=method)


def _best_matmul_flops(torch: Any, dtype: Any, n: int, runs: int) -> float:
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    return 2.0 * n**3 / min(_once(lambda: a @ b) for _ in range(runs))


def _best_copy_bandwidth(torch: Any, copy_mib: int, runs: int) -> float:
    elements = copy_mib * 2**20 // 4
    src = torch.full((elements,), 1.0, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up, and every page touched
    return 2.0 * elements * 4 / min(_once(lambda: dst.copy_(src)) for _ in range(runs))


def _once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def host_description(threads: int) -> str:
    """CPU model, core count and OS of this machine, for the provenance."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}; "
        f"measured with {threads} torch threads"
    )


def library_versions() -> dict[str, str]:
    """The versions a measured profile depends on, for its provenance."""
    torch, transformers = require_torch()
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "numpy": np.__version__,
        "offload-rl": __version__,
    }
