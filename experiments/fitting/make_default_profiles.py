"""Regenerate the shipped profiles in ``offload_rl/data/profiles/`` and print the calibration.

Usage: ``python experiments/fitting/make_default_profiles.py [--out DIR] [--repeats 5]
[--reuse-measured]``

1. **Measure here** (``<model>@cpu-2core``): gpt2, qwen2.5-0.5b and llama-3.2-1b, fp32, 2 torch
   threads, real ``transformers`` layers with random weights (``offload_rl.profiler``). This
   machine's matmul FLOP/s and copy bandwidth are measured once and recorded in every profile.
   Before each model the script waits for the other processes on the machine to go quiet; a
   point timed under contention is re-measured (and the whole model if one stays contended);
   whatever stayed contended is flagged in the provenance.
2. **Calibrate the roofline**: for every measured decoder-layer point, the efficiency reached
   against this machine's peaks (prefill: FLOPs / (peak * t); decode: bytes / (bandwidth * t)).
   Then the same additive roofline the analytical profiles use is fitted here: a per-layer
   overhead and ``eff_decode`` from the decode points of all three models, ``eff_prefill`` from
   prefill at T >= 256; its predictions are printed against every measured point, which says
   how far the roofline's form is from real layers.
3. **Analytical profiles** for the device, edge and cloud tiers (sd8gen3-phone,
   jetson-orin-nano, l4, h100) with the PARAMETERS.md peaks and efficiency factors. Their
   ``provenance.calibration`` states where each factor comes from and what the check here found.
   The CPU's efficiencies are *not* transferred to the accelerators (different kernels, memory
   system and dtype); the check tells how much the roofline's *shape* can be trusted. The cell's
   models (``ANALYTICAL_ONLY``: too large to time on two cores) get analytical profiles only, on
   the tiers the cell uses (the phone runs the 7B model with 4-bit weights, as phones do).

``--reuse-measured`` skips step 1 and recalibrates from the measured files already in ``--out``.
``--analytical MODEL`` (repeatable) also skips step 1 and writes only MODEL's analytical profiles:
``--analytical qwen2.5-7b`` made ``qwen2.5-7b@{sd8gen3-phone-q4,l4,h100}.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from offload_rl.model_shapes import get_arch
from offload_rl.profiler import (
    CONTENTION_THRESHOLD,
    HostPeaks,
    LoadReport,
    measure_host_peaks,
    measure_profile,
    wait_for_quiet,
)
from offload_rl.profiles import Profile
from offload_rl.roofline import (
    HARDWARE,
    CalibrationPoint,
    Hardware,
    achieved_efficiency,
    analytical_profile,
    fit_overhead_and_efficiency,
    summarize_efficiency,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "offload_rl" / "data" / "profiles"
MODELS = ("gpt2", "qwen2.5-0.5b", "llama-3.2-1b")
HOST = "cpu-2core"
THREADS = 2
LENGTHS = (16, 64, 256, 1024)
ANALYTICAL_HARDWARE = ("sd8gen3-phone", "jetson-orin-nano", "l4", "h100")
# Models profiled analytically only, on the tiers of the cell scenario (offload_rl/data/scenarios).
ANALYTICAL_ONLY: dict[str, tuple[str, ...]] = {
    "llama-3.2-3b": ("sd8gen3-phone", "l4", "h100"),
    "qwen2.5-7b": ("sd8gen3-phone-q4", "l4", "h100"),
}


class StillBusyError(RuntimeError):
    """The machine stayed busy and ``--require-quiet`` forbids writing inflated timings."""


def clean_recorded_peaks(out: Path, exclude: list[str]) -> HostPeaks | None:
    """Host peaks recorded in a measured profile already in ``out`` that was timed quietly.

    When only some models are re-measured, they reuse those peaks, so that every profile of one
    machine is scored against the same numbers.
    """
    for model in MODELS:
        path = out / f"{model}@{HOST}.json"
        if model in exclude or not path.is_file():
            continue
        prov = Profile.load(path).provenance
        text = f"{prov.description} {prov.calibration}"
        if prov.peak_flops and prov.mem_bw_bytes_s and prov.calibration and "WARNING" not in text:
            method = prov.calibration.split("(", 1)[1].split(")", 1)[0]
            return HostPeaks(
                flops=prov.peak_flops,
                mem_bw_bytes_s=prov.mem_bw_bytes_s,
                method=f"{method}; measured {prov.date[:16]} with {path.name}",
            )
    return None


class _Budget:
    """Seconds left for waiting and re-measuring, shared by every model of step 1."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def measure_all(
    models: list[str],
    out: Path,
    repeats: int,
    console: Console,
    budget_s: float,
    require_quiet: bool,
) -> dict[str, Profile]:
    """Step 1: measure ``models`` here and write ``<model>@cpu-2core.json``.

    Waiting for quiet and re-measuring share ``budget_s``: on a quiet machine step 1 takes about
    a minute and a half; on a busy one it measures anyway once the budget is spent (and the
    provenance says how busy the machine was), unless ``require_quiet``: then a model that
    stayed contended is not written and :class:`StillBusyError` is raised at the end.
    """
    budget = _Budget(budget_s)
    peaks = _host_peaks(out, models, budget, require_quiet, console)
    profiles = {}
    skipped = []
    for model in models:
        best: tuple[Profile, LoadReport] | None = None
        for attempt in range(3):  # measure the whole model again if a point stayed contended
            if attempt and budget.left() < 120.0:
                break
            profile, report = _measure_once(model, attempt, repeats, peaks, budget, console)
            if best is None or report.contended < best[1].contended:
                best = (profile, report)
            if report.contended == 0:
                break
        assert best is not None
        if require_quiet and best[1].contended:
            skipped.append(model)
            continue
        best[0].save(out / f"{model}@{HOST}.json")
        profiles[model] = best[0]
    if skipped:
        raise StillBusyError(f"not written (timed under contention): {', '.join(skipped)}")
    return profiles


def _host_peaks(
    out: Path, models: list[str], budget: _Budget, require_quiet: bool, console: Console
) -> HostPeaks:
    """The peaks recorded in clean profiles of other models, else measured now."""
    peaks = clean_recorded_peaks(out, exclude=models)
    if peaks is None:
        wait_for_quiet(max_wait_s=min(120.0, budget.left() / 6))
        peaks = measure_host_peaks(THREADS, "float32", retries=6, retry_wait_s=5.0)
        if require_quiet and "WARNING" in peaks.method:
            raise StillBusyError("host peaks measured under contention")
    console.print(
        f"host peaks: {peaks.flops / 1e9:.0f} GFLOP/s, {peaks.mem_bw_bytes_s / 1e9:.1f} GB/s "
        f"({peaks.method})"
    )
    return peaks


def _measure_once(
    model: str, attempt: int, repeats: int, peaks: HostPeaks, budget: _Budget, console: Console
) -> tuple[Profile, LoadReport]:
    """One measurement of every point of ``model``, after waiting (a while) for quiet."""
    load = wait_for_quiet(max_wait_s=min(120.0, budget.left() / 6))
    if load is not None and load > CONTENTION_THRESHOLD:
        console.print(f"[yellow]machine still busy ({load:.2f} CPUs elsewhere)[/]")
    report = LoadReport(threshold=CONTENTION_THRESHOLD)
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(model, total=None)

        def on_progress(description: str, done: int, total: int, task: TaskID = task) -> None:
            progress.update(task, description=description, completed=done, total=total)

        profile = measure_profile(
            model,
            threads=THREADS,
            dtype="float32",
            lengths=LENGTHS,
            repeats=repeats,
            hardware=HOST,
            retries=8,
            retry_wait_s=30.0,
            load_report=report,
            on_progress=on_progress,
            peaks=peaks,
            retry_budget_s=budget.left() / 3,
        )
    console.print(
        f"measured {model} (attempt {attempt + 1}) in "
        f"{time.perf_counter() - started:.0f} s; {report.summary()}"
    )
    return profile, report


def host_hardware(
    measured: dict[str, Profile], eff_prefill: float, eff_decode: float, overhead_s: float
) -> Hardware:
    """This machine as a roofline: median measured peaks and the factors fitted here."""
    peaks = [p.provenance.peak_flops for p in measured.values() if p.provenance.peak_flops]
    bws = [p.provenance.mem_bw_bytes_s for p in measured.values() if p.provenance.mem_bw_bytes_s]
    return Hardware(
        name=HOST,
        description="this 2-core machine as a roofline (peaks measured here)",
        peak_flops=statistics.median(peaks),
        mem_bw_bytes_s=statistics.median(bws),
        eff_prefill=min(eff_prefill, 1.0),
        eff_decode=min(eff_decode, 1.0),
        per_layer_overhead_s=overhead_s,
        dtype_bytes=4,
        sources="measured here: fp32 matmul and tensor copy, 2 threads",
    )


def fit_prefill_efficiency(
    points: list[CalibrationPoint], measured: dict[str, Profile], fixed_hw: Hardware
) -> float:
    """The compute efficiency that makes the additive roofline match prefill at T >= 256.

    The roofline's fixed part (overhead, weight read, KV writes) comes from the decode fit;
    the compute rate is the relative-error least-squares slope of what is left.
    """
    ratios, rests = [], []
    for p in points:
        if p.phase != "prefill" or p.x < 256:
            continue
        layer = measured[p.model].layers[0]
        moved = layer.weight_bytes + p.x * layer.kv_bytes_per_token
        fixed = fixed_hw.per_layer_overhead_s + moved / (
            fixed_hw.mem_bw_bytes_s * fixed_hw.eff_decode
        )
        ratios.append(p.work / p.measured_s)
        rests.append(1.0 - fixed / p.measured_s)
    a, r = np.array(ratios), np.array(rests)
    seconds_per_flop = float(a @ r) / float(a @ a)
    return 1.0 / (seconds_per_flop * fixed_hw.peak_flops)


def calibrate(measured: dict[str, Profile], console: Console) -> dict[str, float]:
    """Step 2: achieved efficiencies, the cpu-2core roofline, and the table against measurements.

    Returns the factors found here and the worst error of the fitted roofline (T >= 64, decode).
    """
    points: list[CalibrationPoint] = []
    for model, profile in measured.items():
        prov = profile.provenance
        assert prov.peak_flops and prov.mem_bw_bytes_s, f"{model}: no host peaks recorded"
        points += achieved_efficiency(
            get_arch(model), profile, prov.peak_flops, prov.mem_bw_bytes_s
        )
    med_prefill, med_decode = summarize_efficiency(points, min_prefill_tokens=256)
    probe = host_hardware(measured, 1.0, 1.0, 0.0)
    overhead, eff_decode = fit_overhead_and_efficiency(points, "decode", probe.mem_bw_bytes_s)
    fixed = host_hardware(measured, 1.0, min(eff_decode, 1.0), overhead)
    eff_prefill = fit_prefill_efficiency(points, measured, fixed)
    hw = host_hardware(measured, eff_prefill, eff_decode, overhead)
    console.print(
        f"\nthis machine: matmul peak {hw.peak_flops / 1e9:.0f} GFLOP/s (fp32, {THREADS} threads), "
        f"copy bandwidth {hw.mem_bw_bytes_s / 1e9:.1f} GB/s (as recorded in the profiles)\n"
        f"achieved by the decoder layers, median per point: prefill {med_prefill:.2f} of peak "
        f"(T >= 256), decode {med_decode:.2f} of copy bandwidth\n"
        f"additive roofline fitted across the three models: overhead {overhead * 1e3:.2f} ms per "
        f"layer, eff_decode {eff_decode:.2f}, eff_prefill {eff_prefill:.2f}"
    )
    table = Table(title=f"decoder layer on {HOST}: fitted additive roofline vs measured")
    for column in ("model", "phase", "T / ctx", "measured ms", "roofline ms", "error", "achieved"):
        table.add_column(column, justify="left" if column in ("model", "phase") else "right")
    worst = 0.0
    for model, profile in measured.items():
        predicted = analytical_profile(profile.model, hw).layers[0]
        for p in (q for q in points if q.model == model):
            model_s = predicted.prefill_s(p.x) if p.phase == "prefill" else predicted.decode_s(p.x)
            error = model_s / p.measured_s - 1.0
            if p.phase == "decode" or p.x >= 64:
                worst = max(worst, abs(error))
            table.add_row(
                model,
                p.phase,
                str(p.x),
                f"{p.measured_s * 1e3:.2f}",
                f"{model_s * 1e3:.2f}",
                f"{error:+.0%}",
                f"{p.achieved:.2f}",
            )
    console.print(table)
    whole = Table(title="whole model (embedding + all layers + head) on this machine, measured")
    for column in ("model", "prefill 256 tok s", "decode ms/token @512", "tokens/s @512"):
        whole.add_column(column)
    for model, profile in measured.items():
        prefill, decode = whole_model_s(profile)
        whole.add_row(model, f"{prefill:.2f}", f"{decode * 1e3:.0f}", f"{1 / decode:.1f}")
    console.print(whole)
    return {
        "med_prefill": med_prefill,
        "med_decode": med_decode,
        "eff_prefill": eff_prefill,
        "eff_decode": eff_decode,
        "overhead_s": overhead,
        "peak": hw.peak_flops,
        "bw": hw.mem_bw_bytes_s,
        "worst": worst,
    }


def whole_model_s(profile: Profile) -> tuple[float, float]:
    """Whole-model seconds (embedding + every layer + head): a 256-token prefill, and one
    decoded token at a context of 512 (the figures the printed tables compare)."""
    n = profile.n_layers
    prefill = (
        profile.embedding.prefill_s(256)
        + profile.prefill_s(0, n, 256)
        + profile.head.prefill_s(256)
    )
    decode = (
        profile.embedding.decode_s(512) + profile.decode_s(0, n, 512) + profile.head.decode_s(512)
    )
    return prefill, decode


def analytical_targets(only: list[str] | None) -> dict[str, tuple[str, ...]]:
    """Model -> hardware of the analytical profiles to write (``only``: just these models)."""
    targets = {m: ANALYTICAL_HARDWARE for m in MODELS} | ANALYTICAL_ONLY
    return targets if not only else {m: targets[m] for m in only}


def write_analytical(
    out: Path, check_note: str, console: Console, targets: dict[str, tuple[str, ...]]
) -> None:
    """Step 3: the roofline profiles of the device, edge and cloud tiers."""
    date = datetime.now(UTC).date().isoformat()
    table = Table(title="analytical profiles: whole model, ms")
    for column in ("profile", "prefill 256", "decode @512", "tokens/s"):
        table.add_column(column)
    for model, hardware in targets.items():
        shape = get_arch(model).shape
        for name in hardware:
            hw = HARDWARE[name]
            note = f"{hw.efficiency_basis}. {check_note}"
            profile = analytical_profile(shape, hw, calibration=note, date=date)
            profile.save(out / f"{model}@{name}.json")
            prefill, decode = whole_model_s(profile)
            table.add_row(
                f"{model}@{name}",
                f"{prefill * 1e3:.1f}",
                f"{decode * 1e3:.2f}",
                f"{1 / decode:.0f}",
            )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="seconds step 1 may spend waiting for a quiet machine and re-measuring",
    )
    parser.add_argument(
        "--reuse-measured", action="store_true", help="recalibrate from the measured files in --out"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=MODELS,
        help="measure only this model (repeatable); the others are read from --out",
    )
    parser.add_argument(
        "--analytical",
        action="append",
        choices=[*MODELS, *ANALYTICAL_ONLY],
        help="write only this model's analytical profiles (repeatable); measures nothing",
    )
    parser.add_argument(
        "--require-quiet",
        action="store_true",
        help="do not write a measurement that stayed contended (exit 3 instead)",
    )
    args = parser.parse_args(argv)
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    to_measure = [] if args.reuse_measured or args.analytical else list(args.only or MODELS)
    try:
        measured = (
            measure_all(
                to_measure, args.out, args.repeats, console, args.budget_s, args.require_quiet
            )
            if to_measure
            else {}
        )
    except StillBusyError as err:
        console.print(f"[red]machine too busy:[/] {err}")
        return 3
    measured = {  # in MODELS order; the ones not measured now are read back
        m: measured[m] if m in measured else Profile.load(args.out / f"{m}@{HOST}.json")
        for m in MODELS
    }
    c = calibrate(measured, console)
    date = measured[MODELS[0]].provenance.date[:10]
    check_note = (
        f"Check of the roofline on a 2-core x86 CPU (experiments/fitting/make_default_profiles.py, "
        f"{date}): real transformers fp32 decoder layers of {', '.join(MODELS)} reached a median "
        f"{c['med_prefill']:.2f} of the measured matmul peak ({c['peak'] / 1e9:.0f} GFLOP/s) in "
        f"prefill at T >= 256 and {c['med_decode']:.2f} of the measured copy bandwidth "
        f"({c['bw'] / 1e9:.0f} GB/s) in decode; the same additive roofline fitted there (overhead "
        f"{c['overhead_s'] * 1e3:.2f} ms/layer, eff_prefill {c['eff_prefill']:.2f}, eff_decode "
        f"{c['eff_decode']:.2f}) was within {c['worst']:.0%} of every measured layer time at "
        f"T >= 64 and in decode. The PARAMETERS.md factors are kept for this hardware: the CPU "
        f"check supports the model's form, not the accelerator's efficiency"
    )
    write_analytical(args.out, check_note, console, analytical_targets(args.analytical))
    console.print(f"done in {time.perf_counter() - started:.0f} s; profiles in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
