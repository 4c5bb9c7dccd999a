"""CostLedger: cost accrues over time and is collected interval by interval."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from offload_rl.reward import MIN_SPREAD_S, CostLedger


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


class _ReferenceLedger:
    """The ledger as first written: every open request and spread visited at each collection."""

    def __init__(self) -> None:
        self.open_: dict[int, list[float]] = {}
        self.spreads: list[tuple[float, float, float]] = []
        self.lumps: list[tuple[float, float]] = []
        self.t = 0.0

    def collect(self, t: float) -> tuple[float, float]:
        latency = other = 0.0
        for key, (start, rate, end) in list(self.open_.items()):
            lo, hi = max(start, self.t), min(end, t)
            latency += rate * (hi - lo) if hi > lo else 0.0
            if end <= t:
                del self.open_[key]
        for start, end, total in self.spreads:
            lo, hi = max(start, self.t), min(end, t)
            other += total * (hi - lo) / (end - start) if hi > lo else 0.0
        self.spreads = [s for s in self.spreads if s[1] > t]
        other += sum(amount for when, amount in self.lumps if when <= t)
        self.lumps = [lump for lump in self.lumps if lump[0] > t]
        self.t = t
        return latency, other


operations = st.lists(
    st.tuples(
        st.sampled_from(["open", "close", "spread", "charge", "collect"]),
        st.floats(0.0, 30.0),  # offset from the last collection (start, end, instant)
        st.floats(0.0, 30.0) | st.just(0.0),  # length (spread, close after start)
        st.floats(0.0, 5.0),  # rate or amount
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(operations)
@example([("spread", 0.0, 10.0, 1.0), ("spread", 0.0, 2.66e-109, 2.0), ("collect", 20.0, 0.0, 0.0)])
def test_the_ledger_collects_what_visiting_every_entry_collects(ops):
    """Opens, closes (also in the future, also before later collections), spreads (also
    instants), charges and collections in any order, against the reference, within 1e-9."""
    ledger, ref = CostLedger(), _ReferenceLedger()
    next_key = 0
    for op, offset, length, amount in ops:
        now = ref.t
        if op == "open":
            ledger.open(next_key, now + offset, amount)
            ref.open_[next_key] = [now + offset, amount, float("inf")]
            next_key += 1
        elif op == "close" and any(e[2] == float("inf") for e in ref.open_.values()):
            key = next(k for k, e in ref.open_.items() if e[2] == float("inf"))
            end = max(ref.open_[key][0], now) + length
            ledger.close(key, end)
            ref.open_[key][2] = end
        elif op == "spread":
            start, end = now + offset, now + offset + length
            ledger.spread(start, end, amount)
            if end - start > MIN_SPREAD_S:
                ref.spreads.append((start, end, amount))
            else:
                ref.lumps.append((start, amount))
        elif op == "charge":
            ledger.charge(now + offset, amount)
            ref.lumps.append((now + offset, amount))
        elif op == "collect":
            got, want = ledger.collect(now + offset), ref.collect(now + offset)
            assert got == (pytest.approx(want[0], rel=1e-9, abs=1e-9),
                           pytest.approx(want[1], rel=1e-9, abs=1e-9))  # fmt: skip
            assert ledger.n_open == len(ref.open_)
    got, want = ledger.collect(ref.t + 1000.0), ref.collect(ref.t + 1000.0)
    assert got == (pytest.approx(want[0], rel=1e-9, abs=1e-9),
                   pytest.approx(want[1], rel=1e-9, abs=1e-9))  # fmt: skip
