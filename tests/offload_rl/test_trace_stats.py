"""1-second statistics per trace and per family, and the README table of ../shared/traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offload_rl.trace_stats import (
    family_key,
    family_stats,
    lag1_autocorr,
    seconds_mbps,
    trace_stats,
)
from offload_rl.traces import Trace, load_traces


def test_seconds_integrate_steps_and_drop_a_partial_second() -> None:
    tr = Trace.from_steps([1.0, 3.0, 2.0, 2.0, 8.0], step_s=0.5)  # 2.5 s
    assert seconds_mbps(tr).tolist() == pytest.approx([2.0, 2.0])
    off_grid = Trace.from_steps([1.0, 4.0], step_s=0.75)  # second 1 straddles the change
    assert seconds_mbps(off_grid).tolist() == pytest.approx([0.75 * 1.0 + 0.25 * 4.0])
    short = Trace.from_steps([1.0, 3.0], step_s=0.25)
    assert seconds_mbps(short).tolist() == pytest.approx([2.0])


def test_trace_stats_by_hand() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 0.05]
    s = trace_stats(Trace.from_steps(values, step_s=1.0, name="h", family="fam"))
    assert (s.name, s.family, s.n_traces, s.duration_s) == ("h", "fam", 1, 5.0)
    assert s.mean_mbps == pytest.approx(2.01)
    assert s.median_mbps == pytest.approx(2.0)
    assert s.p10_mbps == pytest.approx(0.05 + 0.4 * 0.95)
    assert s.p90_mbps == pytest.approx(3.6)
    assert s.share_below_0_1 == pytest.approx(0.2)
    d = np.array(values) - 2.01
    assert s.lag1_autocorr == pytest.approx(float(np.dot(d[:-1], d[1:]) / np.dot(d, d)))


def test_lag1_undefined_for_constant_or_short_series() -> None:
    assert trace_stats(Trace.constant(5.0, duration_s=30.0)).lag1_autocorr is None
    assert lag1_autocorr(np.array([1.0, 2.0])) is None
    assert lag1_autocorr(np.array([1.0, 2.0, 1.0, 2.0])) == pytest.approx(-0.75)


def test_family_pools_seconds_and_takes_median_autocorr() -> None:
    long = Trace.from_steps([1.0, 1.0, 1.0, 2.0, 2.0, 2.0], step_s=1.0, name="a", family="f")
    short = Trace.from_steps([10.0, 0.0, 10.0], step_s=1.0, name="b", family="f")
    other = Trace.from_steps([5.0, 6.0, 5.0], step_s=1.0, name="c", family="g")
    fam = family_stats([long, short, other])
    assert list(fam) == ["f", "g"]
    f = fam["f"]
    assert f.n_traces == 2 and f.duration_s == 9.0
    # Pooled: (9 + 20) Mbit over 9 seconds, not the mean of the two trace means (1.5 and 6.67).
    assert f.mean_mbps == pytest.approx((9.0 + 20.0) / 9.0)
    assert f.share_below_0_1 == pytest.approx(1 / 9)
    acs = [trace_stats(long).lag1_autocorr, trace_stats(short).lag1_autocorr]
    assert f.lag1_autocorr == pytest.approx(float(np.median([a for a in acs if a is not None])))


def test_mahimahi_directions_are_separate_families() -> None:
    up = Trace.from_steps([1.0, 2.0], step_s=1.0, name="ATT.up", family="mm")
    down = Trace.from_steps([5.0, 6.0], step_s=1.0, name="ATT.down", family="mm")
    assert family_key(up) == "mm (.up)" and family_key(down) == "mm (.down)"
    fam = family_stats([up, down])
    assert set(fam) == {"mm (.up)", "mm (.down)"}
    assert fam["mm (.up)"].mean_mbps == pytest.approx(1.5)
    assert trace_stats(up).family == "mm (.up)"
    assert set(trace_stats(up).to_dict()) >= {"mean_mbps", "lag1_autocorr", "share_below_0_1"}


# The table in ../shared/README.md: mean, median, p10, p90, share < 0.1 Mbps, lag-1 AC.
README_TABLE = {
    "norway-hsdpa-3g": (1.21, 1.01, 0.43, 2.19, 0.000, 0.90),
    "fcc-broadband": (1.76, 1.34, 0.57, 3.61, 0.002, 0.68),
    "ghent-4g-lte": (30.2, 29.4, 9.8, 52.4, 0.007, 0.76),
    "nyc-lte": (8.07, 6.22, 0.62, 18.2, 0.061, 0.89),
    "mahimahi-cellular (.up)": (1.63, 1.04, 0.21, 1.49, 0.073, 0.79),
    "mahimahi-cellular (.down)": (4.42, 2.22, 0.17, 10.6, 0.075, 0.82),
}


@pytest.mark.shared
def test_family_stats_reproduce_the_readme_table(shared_traces: Path) -> None:
    folders = ["norway-hsdpa-3g", "fcc-broadband", "ghent-4g-lte", "nyc-lte", "mahimahi-cellular"]
    fam = family_stats(load_traces([shared_traces / f for f in folders]))
    for name, (mean, median, p10, p90, share, ac) in README_TABLE.items():
        s = fam[name]
        assert s.mean_mbps == pytest.approx(mean, rel=0.01), name
        assert s.median_mbps == pytest.approx(median, rel=0.01), name
        assert s.p10_mbps == pytest.approx(p10, rel=0.03), name
        assert s.p90_mbps == pytest.approx(p90, rel=0.01), name
        assert s.share_below_0_1 == pytest.approx(share, abs=0.0006), name
        assert s.lag1_autocorr == pytest.approx(ac, abs=0.006), name
