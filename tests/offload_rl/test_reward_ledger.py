"""CostLedger: cost accrues over time and is collected interval by interval."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.reward import CostLedger


def test_open_requests_accrue_until_they_close_even_in_the_future():
    ledger = CostLedger()
    ledger.open(1, 0.0, 2.0)
    ledger.open(2, 1.0, 1.0)
    ledger.close(1, 3.0)
    assert ledger.collect(2.0) == (pytest.approx(2.0 * 2 + 1.0 * 1), 0.0)
    ledger.close(2, 10.0)
    assert ledger.collect(4.0)[0] == pytest.approx(2.0 * 1 + 1.0 * 2)
    assert ledger.n_open == 1
    assert ledger.collect(20.0)[0] == pytest.approx(6.0)
    assert ledger.n_open == 0


def test_spreads_and_charges_are_collected_when_they_happen():
    ledger = CostLedger()
    ledger.spread(1.0, 3.0, 4.0)
    ledger.charge(2.5, 1.0)
    ledger.spread(5.0, 5.0, 0.5)  # an instant
    assert ledger.collect(2.0) == (0.0, pytest.approx(2.0))
    assert ledger.collect(4.0) == (0.0, pytest.approx(3.0))
    assert ledger.collect(5.0) == (0.0, pytest.approx(0.5))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 100), st.floats(0, 50), st.floats(0.01, 5)), min_size=1, max_size=20
    ),
    st.lists(st.floats(0, 200), min_size=1, max_size=10),
)
def test_collections_sum_to_the_integral_whatever_the_decision_times(jobs, cuts):
    ledger = CostLedger()
    for key, (start, length, rate) in enumerate(jobs):
        ledger.open(key, start, rate)
        ledger.close(key, start + length)
    total = sum(ledger.collect(t)[0] for t in sorted(cuts)) + ledger.collect(1000.0)[0]
    assert total == pytest.approx(sum(length * rate for _, length, rate in jobs), abs=1e-9)
