"""The edge load process: seeded, bounded, with the documented regimes and correlation."""

from __future__ import annotations

import numpy as np
import pytest

from offload_rl.edge_load import EdgeLoadParams, generate_edge_load


def test_same_seed_same_series_and_bounded():
    p = EdgeLoadParams()
    a = generate_edge_load(p, 3600, np.random.default_rng(3))
    b = generate_edge_load(p, 3600, np.random.default_rng(3))
    c = generate_edge_load(p, 3600, np.random.default_rng(4))
    np.testing.assert_array_equal(a.util, b.util)
    assert not np.array_equal(a.util, c.util)
    assert a.util.min() >= 0.0 and a.util.max() <= p.max_util


def test_ar1_noise_has_the_stated_correlation_and_spread():
    p = EdgeLoadParams(calm_util=0.5, busy_util=0.5, noise_sd=0.05, ar_coeff=0.9)
    u = generate_edge_load(p, 200_000, np.random.default_rng(1)).util
    d = u - u.mean()
    assert (d[1:] * d[:-1]).mean() / d.var() == pytest.approx(0.9, abs=0.02)
    assert u.std() == pytest.approx(0.05, rel=0.05)


def test_regimes_spend_time_in_proportion_to_their_dwell_times():
    p = EdgeLoadParams(noise_sd=0.0, mean_calm_s=300, mean_busy_s=100)
    u = generate_edge_load(p, 2_000_000, np.random.default_rng(2)).util
    assert np.mean(u > 0.5) == pytest.approx(0.25, abs=0.03)


def test_queue_and_slowdown_grow_with_load_and_the_report_lags():
    p = EdgeLoadParams(service_s=0.1, slowdown=1.0, report_lag_s=5.0)
    s = generate_edge_load(p, 100, np.random.default_rng(0))
    assert s.params.mean_queue_s(0.0) == 0.0
    assert s.params.mean_queue_s(0.5) == pytest.approx(0.1)
    assert s.params.mean_queue_s(0.9) == pytest.approx(0.9)
    assert s.params.slowdown_at(0.5) == pytest.approx(1.5)
    assert s.reported_at(50.0) == s.util_at(45.0)
    np.testing.assert_array_equal(s.util_at_many(np.array([1.0, 45.0])), s.util[[1, 45]])


def test_constant_load():
    s = generate_edge_load(
        EdgeLoadParams(kind="constant", calm_util=0.2), 10, np.random.default_rng(0)
    )
    assert np.all(s.util == 0.2)
