"""Fit the synthetic trace presets to the recorded families and write the preset JSON.

Usage: ``python experiments/fitting/fit_trace_presets.py [--shared ../shared/traces] [--out PATH]``

For each preset (one per recorded family; ``mahimahi-uplink`` is fitted to the mahimahi ``.up``
files, the only real uplinks) the script

1. loads the family and computes its 1-second statistics (:func:`family_stats`, the table of
   ``../shared/README.md``);
2. takes the pooled 1-second quantiles as the preset's quantile function, then rescales the
   knots above the median by a factor close to 1 so its integral equals the family mean exactly
   (piecewise-linear interpolation between knots overestimates a right-skewed tail slightly);
3. bisects the latent AR(1) coefficient so that the median lag-1 autocorrelation of synthetic
   traces as long as the family's median trace matches the family's (fixed seeds, so the
   bisection sees a deterministic, monotone function);
4. generates a fresh set of synthetic traces (other seeds) and prints their statistics against
   the family's — the table that says how good the presets are.

The JSON holds only fitted numbers (no recorded samples), the name of this script and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from offload_rl.synthetic_traces import TracePreset, generate_trace
from offload_rl.trace_stats import OUTAGE_MBPS, TraceStats, family_key, family_stats, seconds_mbps
from offload_rl.traces import Trace, load_traces, trace_files

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = Path(os.environ.get("OFFLOAD_RL_SHARED", REPO_ROOT.parent / "shared")) / "traces"
DEFAULT_OUT = REPO_ROOT / "offload_rl" / "data" / "trace_presets.json"
SCRIPT = "experiments/fitting/fit_trace_presets.py"

# Probability levels of the quantile knots: every percent, denser in the tails where outages and
# peaks live; each family adds a knot at its own share of seconds below 0.1 Mbps (fit_quantiles).
BASE_LEVELS: tuple[float, ...] = tuple(
    sorted({round(0.01 * i, 4) for i in range(101)} | {0.001, 0.002, 0.005, 0.995, 0.998, 0.999})
)
NATIVE_STEP_S = 1.0
FIT_SEEDS = range(0, 160)
CHECK_SEED0 = 10_000
CHECK_MIN_TRACES = 200
CHECK_MIN_SECONDS = 400_000.0  # synthetic seconds in the comparison, so its noise is small
BISECTION_STEPS = 22


@dataclass(frozen=True)
class FamilySpec:
    """Which recorded traces a preset is fitted to."""

    preset: str
    folder: str
    suffix: str  # "" = every file; ".up" = only uplink files
    description: str


FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        "norway-hsdpa-3g",
        "norway-hsdpa-3g",
        "",
        "Telenor 3G/HSDPA while commuting (Riiser et al. 2013); downlink",
    ),
    FamilySpec(
        "fcc-broadband",
        "fcc-broadband",
        "",
        "FCC Measuring Broadband America 2016 web-get traces; fixed broadband downlink",
    ),
    FamilySpec(
        "ghent-4g-lte",
        "ghent-4g-lte",
        "",
        "Belgian 4G/LTE on foot, bicycle, bus, car, train, tram (van der Hooft 2016); downlink",
    ),
    FamilySpec(
        "nyc-lte",
        "nyc-lte",
        "",
        "New York LTE on subway, bus, ferry, car (Mei et al. 2019); downlink with deep fades",
    ),
    FamilySpec(
        "mahimahi-uplink",
        "mahimahi-cellular",
        ".up",
        "US carriers' LTE/UMTS/EVDO uplink while driving (mahimahi .up, Winstein 2013); the only "
        "recorded uplink",
    ),
    FamilySpec(
        "wifi",
        "wifi",
        "",
        "WiFi links, up to 100 s each (Aydin, Fund, Panwar); downlink with outages",
    ),
)

STAT_FIELDS: tuple[tuple[str, str], ...] = (
    ("mean_mbps", "mean"),
    ("median_mbps", "median"),
    ("p10_mbps", "p10"),
    ("p90_mbps", "p90"),
    ("share_below_0_1", "<0.1"),
    ("lag1_autocorr", "AC1"),
)


def load_family(traces_dir: Path, spec: FamilySpec) -> list[Trace]:
    files = [
        f
        for f in trace_files(traces_dir / spec.folder)
        if not spec.suffix or f.name.endswith(spec.suffix)
    ]
    return load_traces(files)


def quantile_levels(pooled: np.ndarray) -> list[float]:
    """Base levels plus one at the share of seconds below 0.1 Mbps (outages stay exact)."""
    share = round(float(np.mean(pooled < OUTAGE_MBPS)), 6)
    levels = set(BASE_LEVELS)
    if 0.0 < share < 1.0 and all(abs(share - lv) > 1e-4 for lv in levels):
        levels.add(share)
    return sorted(levels)


def fit_quantiles(pooled: np.ndarray, levels: list[float], target_mean: float) -> list[float]:
    """Quantile knots of the pooled seconds, upper half rescaled to match the mean exactly."""
    lv = np.asarray(levels)
    knots = np.quantile(pooled, lv)
    upper = lv > 0.5

    def mean_with(factor: float) -> float:
        q = knots.copy()
        q[upper] *= factor
        return float(np.sum(np.diff(lv) * (q[:-1] + q[1:]) / 2.0))

    m1, m2 = mean_with(1.0), mean_with(2.0)
    factor = 1.0 + (target_mean - m1) / (m2 - m1)
    fitted = knots.copy()
    fitted[upper] *= factor
    fitted = np.maximum.accumulate(np.maximum(fitted, 0.0))
    return [float(f"{q:.6g}") for q in fitted]


def synthetic_stats(preset: TracePreset, duration_s: float, seeds: range) -> TraceStats:
    """Family statistics of synthetic traces of one length, one per seed."""
    traces = [generate_trace(preset, duration_s, seed) for seed in seeds]
    return next(iter(family_stats(traces).values()))


def fit_ar1(base: TracePreset, duration_s: float, target_ac: float) -> float:
    lo, hi = 0.0, 0.999
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2.0
        preset = base.model_copy(update={"ar1": mid})
        ac = synthetic_stats(preset, duration_s, FIT_SEEDS).lag1_autocorr or 0.0
        if ac < target_ac:
            lo = mid
        else:
            hi = mid
    return round((lo + hi) / 2.0, 5)


def stats_dict(s: TraceStats) -> dict[str, float | None]:
    """The compared statistics, to 4 significant digits."""
    out: dict[str, float | None] = {}
    for key, _ in STAT_FIELDS:
        value = getattr(s, key)
        out[key] = None if value is None else float(f"{value:.4g}")
    return out


def to_json(value: object, indent: int = 0) -> str:
    """JSON with one key per line but lists of numbers on one line (readable diffs)."""
    pad = " " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {to_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    if isinstance(value, list):
        items = [pad + to_json(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(value)


@dataclass(frozen=True)
class FamilyFit:
    """A fitted preset beside the statistics of its recorded family and of its own draws."""

    preset: TracePreset
    family: str
    traces: int
    duration_s: float
    recorded: Any  # FamilyStats of the recording
    synthetic: Any  # FamilyStats of n_check synthetic traces
    n_check: int

    def quality(self) -> dict[str, object]:
        """The ``fit_quality`` entry written to the presets file."""
        return {
            "family": self.family,
            "traces": self.traces,
            "trace_duration_s": self.duration_s,
            "recorded": stats_dict(self.recorded),
            "synthetic": stats_dict(self.synthetic),
            "synthetic_traces": self.n_check,
        }


def fit_family(traces_dir: Path, spec: FamilySpec) -> FamilyFit:
    """The preset of one recorded family, checked against fresh synthetic draws."""
    traces = load_family(traces_dir, spec)
    target = next(iter(family_stats(traces).values()))
    pooled = np.concatenate([seconds_mbps(t) for t in traces])
    levels = quantile_levels(pooled)
    duration = float(np.median([t.duration_s for t in traces]))
    base = TracePreset(
        name=spec.preset,
        description=spec.description,
        fitted_to=family_key(traces[0]),
        native_step_s=NATIVE_STEP_S,
        ar1=0.5,
        quantile_levels=levels,
        quantile_mbps=fit_quantiles(pooled, levels, target.mean_mbps),
    )
    preset = base.model_copy(update={"ar1": fit_ar1(base, duration, target.lag1_autocorr or 0.0)})
    n_check = max(CHECK_MIN_TRACES, math.ceil(CHECK_MIN_SECONDS / duration))
    got = synthetic_stats(preset, duration, range(CHECK_SEED0, CHECK_SEED0 + n_check))
    return FamilyFit(preset, family_key(traces[0]), len(traces), duration, target, got, n_check)


def add_quality_rows(table: Table, fit: FamilyFit) -> None:
    """Recorded, synthetic and error rows of one preset in the printed comparison."""
    fmt = "{:.1%}".format
    rec_row, syn_row, err_row = [], [], []
    for field, _ in STAT_FIELDS:
        a, b = getattr(fit.recorded, field), getattr(fit.synthetic, field)
        if field == "share_below_0_1":
            rec_row.append(fmt(a))
            syn_row.append(fmt(b))
            err_row.append(f"{(b - a) * 100:+.1f} pt")
        elif field == "lag1_autocorr":
            rec_row.append(f"{a:.2f}")
            syn_row.append(f"{b:.2f}")
            err_row.append(f"{b - a:+.2f}")
        else:
            rec_row.append(f"{a:.3g}")
            syn_row.append(f"{b:.3g}")
            err_row.append(f"{(b - a) / a:+.0%}" if a >= 0.05 else f"{b - a:+.2f} abs")
    table.add_row(fit.preset.name, f"recorded ({fit.family})", *rec_row)
    table.add_row("", f"synthetic (ar1={fit.preset.ar1:.3f})", *syn_row)
    table.add_row("", "error", *err_row, end_section=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the traces folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="preset JSON to write")
    args = parser.parse_args(argv)
    traces_dir: Path = args.shared
    if not traces_dir.is_dir():
        print(
            f"fit_trace_presets: recorded traces not found at {traces_dir}; pass --shared "
            "or set OFFLOAD_RL_SHARED to the folder that holds traces/",
            file=sys.stderr,
        )
        return 2

    console = Console(width=160)
    presets: dict[str, dict[str, object]] = {}
    quality: dict[str, dict[str, object]] = {}
    table = Table(title="Synthetic presets vs recorded families (1-second statistics, Mbps)")
    table.add_column("preset")
    table.add_column("")
    for _, label in STAT_FIELDS:
        table.add_column(label, justify="right")
    for spec in FAMILIES:
        fit = fit_family(traces_dir, spec)
        add_quality_rows(table, fit)
        presets[spec.preset] = fit.preset.model_dump(exclude={"name"})
        quality[spec.preset] = fit.quality()
    console.print(table)
    document = {
        "generated_by": SCRIPT,
        "generated_on": dt.date.today().isoformat(),
        "source": "../shared/traces (recorded families; see ../shared/README.md)",
        "model": (
            "Gaussian copula of a latent AR(1) process: rate = Q(Phi(z)), z AR(1) with coefficient "
            "ar1 per native_step_s, Q piecewise linear through (quantile_levels, quantile_mbps); "
            "see offload_rl/synthetic_traces.py"
        ),
        "presets": presets,
        "fit_quality": quality,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_json(document) + "\n", encoding="utf-8")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
