"""Seeded synthetic traces and the fitted presets shipped in offload_rl/data."""

from __future__ import annotations

import importlib.util
import json
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from pydantic import ValidationError

from offload_rl import synthetic_traces
from offload_rl.errors import ConfigError
from offload_rl.synthetic_traces import TracePreset, generate_trace, get_preset
from offload_rl.trace_stats import family_stats

REPO = Path(__file__).resolve().parents[2]
PRESET_NAMES = [
    "norway-hsdpa-3g",
    "fcc-broadband",
    "ghent-4g-lte",
    "nyc-lte",
    "mahimahi-uplink",
    "wifi",
]


def shipped_json() -> dict:
    path = resources.files("offload_rl") / "data" / "trace_presets.json"
    return json.loads(path.read_text(encoding="utf-8"))


def test_presets_are_the_six_families() -> None:
    assert list(synthetic_traces.PRESETS) == PRESET_NAMES
    assert get_preset("nyc-lte").name == "nyc-lte"
    assert get_preset("mahimahi-uplink").fitted_to == "mahimahi-cellular (.up)"
    doc = shipped_json()
    assert doc["generated_by"] == "experiments/fitting/fit_trace_presets.py"
    assert doc["generated_on"]


def test_unknown_preset_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        get_preset("lte")
    for name in PRESET_NAMES:
        assert name in str(info.value)


def test_same_seed_same_trace_other_seed_differs() -> None:
    a = generate_trace("nyc-lte", 120.0, seed=7)
    b = generate_trace("nyc-lte", 120.0, seed=7)
    c = generate_trace("nyc-lte", 120.0, seed=8)
    assert np.array_equal(a.mbps, b.mbps)
    assert not np.array_equal(a.mbps, c.mbps)
    assert (a.name, a.family, a.source) == ("nyc-lte-7", "nyc-lte", "synthetic:nyc-lte:7")
    assert a.step_s == 0.1 and a.mbps.size == 1200 and a.duration_s == pytest.approx(120.0)


def test_longer_trace_extends_a_shorter_one_and_other_steps() -> None:
    short = generate_trace("wifi", 30.0, seed=1)
    long = generate_trace("wifi", 90.0, seed=1)
    assert np.array_equal(short.mbps, long.mbps[: short.mbps.size])
    coarse = generate_trace("wifi", 30.0, seed=1, step_s=0.5)
    assert coarse.mbps.size == 60
    assert coarse.total_bytes == pytest.approx(short.total_bytes)
    odd = generate_trace("wifi", 12.34, seed=1)
    assert odd.mbps.size == 124


@pytest.mark.parametrize(
    "kwargs",
    [{"duration_s": 0.0}, {"duration_s": float("nan")}, {"seed": -1}, {"step_s": 0.0}],
)
def test_bad_arguments_raise_config_error(kwargs: dict) -> None:
    args = {"preset": "fcc-broadband", "duration_s": 10.0, "seed": 0, **kwargs}
    with pytest.raises(ConfigError):
        generate_trace(**args)


def test_preset_validation() -> None:
    good = {"name": "x", "ar1": 0.5, "quantile_levels": [0.0, 1.0], "quantile_mbps": [1.0, 3.0]}
    assert TracePreset(**good).mean_mbps == pytest.approx(2.0)
    for bad in (
        {"ar1": 1.0},
        {"quantile_levels": [0.0, 0.5]},
        {"quantile_mbps": [3.0, 1.0]},
        {"quantile_mbps": [0.0, 0.0]},
        {"quantile_mbps": [1.0]},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            TracePreset(**{**good, **bad})


def test_custom_preset_object_and_outage_everywhere() -> None:
    flat = TracePreset(name="flat", ar1=0.0, quantile_levels=[0.0, 1.0], quantile_mbps=[4.0, 4.0])
    tr = generate_trace(flat, 5.0, seed=3)
    assert np.allclose(tr.mbps, 4.0) and tr.family == "flat"
    dead = TracePreset(
        name="dead", ar1=0.0, quantile_levels=[0.0, 0.999999, 1.0], quantile_mbps=[0.0, 0.0, 1.0]
    )
    with pytest.raises(ConfigError, match="no capacity"):
        generate_trace(dead, 3.0, seed=0)


# Tolerances of the comparison below, ~1.3-2x the largest error measured at these seeds over
# the six families (mean 2.4%, median 1.9%, p90 4.8%, p10 13.8%, share below 0.1 Mbps 0.0054,
# lag-1 autocorrelation 0.013): a latent AR coefficient off by 0.1, or a quantile function
# shifted by a few percent, fails.
REL_MEAN, REL_MEDIAN, REL_P90, REL_P10 = 0.04, 0.03, 0.065, 0.18
ABS_OUTAGE_SHARE, ABS_LAG1 = 0.008, 0.02


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_generated_traces_match_the_recorded_family(name: str) -> None:
    """Statistics of synthetic traces (at the family's median length) vs the recorded family
    (the figures the fitter wrote; the next test checks them against the recordings)."""
    quality = shipped_json()["fit_quality"][name]
    rec = quality["recorded"]
    duration = quality["trace_duration_s"]
    n = max(40, int(60_000 / duration))
    traces = [generate_trace(name, duration, seed=500 + i) for i in range(n)]
    got = family_stats(traces)[name]
    assert got.mean_mbps == pytest.approx(rec["mean_mbps"], rel=REL_MEAN)
    assert got.median_mbps == pytest.approx(rec["median_mbps"], rel=REL_MEDIAN)
    assert got.p90_mbps == pytest.approx(rec["p90_mbps"], rel=REL_P90)
    assert got.p10_mbps == pytest.approx(rec["p10_mbps"], rel=REL_P10, abs=0.002)
    assert got.share_below_0_1 == pytest.approx(rec["share_below_0_1"], abs=ABS_OUTAGE_SHARE)
    assert got.lag1_autocorr == pytest.approx(rec["lag1_autocorr"], abs=ABS_LAG1)


def _fitter() -> ModuleType:
    """``experiments/fitting/fit_trace_presets.py``: its list of families and how it loads them."""
    spec = importlib.util.spec_from_file_location(
        "fit_trace_presets", REPO / "experiments" / "fitting" / "fit_trace_presets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_shipped_reference_figures_are_the_recordings(name: str, shared_traces: Path) -> None:
    """The "recorded" figures of the JSON, recomputed from the recorded traces themselves
    (the JSON rounds to 4 significant digits)."""
    fitter = _fitter()
    family = next(f for f in fitter.FAMILIES if f.preset == name)
    stats = family_stats(fitter.load_family(shared_traces, family))
    assert len(stats) == 1
    recorded = next(iter(stats.values()))
    shipped = shipped_json()["fit_quality"][name]["recorded"]
    for field, value in shipped.items():
        assert getattr(recorded, field) == pytest.approx(value, rel=1e-3, abs=1e-6), field
