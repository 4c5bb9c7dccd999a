"""The compiled cost ledger collects, bit for bit, what the Python CostLedger collects.

:class:`~offload_rl.cell.ledger_table.CompiledCostLedger` runs each of
:class:`~offload_rl.reward.CostLedger`'s methods in :mod:`offload_rl.cell.compiled_ledger`;
both are driven with the same operations (opens, closes also in the future, spreads also
instants, charges, collections, resets, many operations per collection so that the arrays
grow) and every value must be *equal* (no tolerance).
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.ledger_table import N_HEAP, N_LUMPS, CompiledCostLedger, cost_ledger
from offload_rl.reward import CostLedger

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

OPS = ("open", "open", "close", "spread", "spread", "charge", "collect", "reset")
operations = st.lists(
    st.tuples(
        st.sampled_from(OPS),
        # offset from the last collection (before it too); a few values often: equal times
        st.floats(-1.0, 30.0) | st.sampled_from([0.0, 1.0, 2.0]),
        st.floats(0.0, 30.0) | st.sampled_from([0.0, 5e-7, 1.0]),  # length (spreads, closes)
        st.floats(-5.0, 5.0) | st.sampled_from([0.1, 0.7, 1e-3, 3.3]),  # rate or amount
    ),
    max_size=150,
)


def _has_room(ledger: CompiledCostLedger) -> bool:
    """Room for the next operation (the kernels do not check bounds: the wrapper grows)."""
    table = ledger._table
    heap_rows, lumps = table.heap.shape[1], table.lumps.shape[0]
    used = table.gi[N_HEAP : N_HEAP + 2]
    return bool(used.max() + 2 <= heap_rows and table.gi[N_LUMPS] + 1 <= lumps)


def _state(ledger: CostLedger) -> tuple[float, float, int, float]:
    return ledger.latency_cost, ledger.other_cost, ledger.n_open, ledger.open_until()


@settings(max_examples=120, deadline=None)
@given(operations)
def test_the_compiled_ledger_equals_the_python_ledger(ops):
    python, compiled = CostLedger(), cost_ledger(compiled=True)
    assert isinstance(compiled, CompiledCostLedger) and type(python) is CostLedger
    now, next_key, open_keys = 0.0, 0, []
    for op, offset, length, amount in ops:
        for ledger in (python, compiled):
            if op == "open":
                ledger.open(next_key, now + offset, amount)
            elif op == "close" and open_keys:
                ledger.close(open_keys[0], now + offset + length)
            elif op == "spread":
                ledger.spread(now + offset, now + offset + length, amount)
            elif op == "charge":
                ledger.charge(now + offset, amount)
            elif op == "reset":
                ledger.reset(now)
        if op == "open":
            open_keys.append(next_key)
            next_key += 1
        elif op == "close" and open_keys:
            open_keys.pop(0)
        elif op == "reset":
            open_keys.clear()
        elif op == "collect":
            now += max(offset, 0.0)
            assert compiled.collect(now) == python.collect(now)
        assert _state(compiled) == _state(python) and _has_room(compiled)
    assert compiled.collect(now + 1e4) == python.collect(now + 1e4)
    assert _state(compiled) == _state(python)


def test_closing_a_request_that_is_not_open_is_a_key_error():
    ledger = cost_ledger(compiled=True)
    ledger.open(3, 0.0, 1.0)
    with pytest.raises(KeyError):
        ledger.close(2, 1.0)
    with pytest.raises(KeyError):
        ledger.close(1000, 1.0)
    ledger.close(3, 1.0)
    assert ledger.collect(2.0) == (1.0, 0.0) and ledger.n_open == 0


def test_a_deep_copy_is_independent_of_its_parent():
    """The cell oracle forks the simulator with copy.deepcopy: the fork's ledger is its own."""
    ledger = cost_ledger(compiled=True)
    ledger.open(0, 0.0, 2.0)
    ledger.spread(0.0, 4.0, 8.0)
    fork = copy.deepcopy(ledger)
    fork.close(0, 1.0)
    fork.charge(0.5, 10.0)
    assert fork.collect(2.0) == (2.0, 14.0)
    assert ledger.collect(2.0) == (4.0, 4.0) and ledger.n_open == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 10.0) | st.just(0.0),  # start after the last collection
            st.floats(0.0, 10.0) | st.sampled_from([0.0, 5e-7]),  # length (instants too)
            st.floats(-3.0, 3.0),
            st.floats(0.0, 3.0),
            st.integers(0, 15).map(lambda k: k == 0),  # collect after it (seldom: it fills)
        ),
        min_size=40,
        max_size=120,
    )
)
def test_a_pair_of_spreads_in_one_call_equals_two_spreads(ops):
    """The simulator's energy goes to two ledgers at once (``spread_pair``, one kernel call,
    their arrays grown as they fill) and both are collected at once (``collect_pair``): each
    equals a Python ledger given its own spreads and collections."""
    pair = [cost_ledger(compiled=True), cost_ledger(compiled=True)]
    python = [CostLedger(), CostLedger()]
    first, second = pair
    assert isinstance(first, CompiledCostLedger) and isinstance(second, CompiledCostLedger)
    now = 0.0
    for start, length, total, total2, collect in ops:
        first.spread_pair(second, now + start, now + start + length, total, total2)
        python[0].spread(now + start, now + start + length, total)
        python[1].spread(now + start, now + start + length, total2)
        assert all(_has_room(ledger) for ledger in pair)  # grown before it could overflow
        if collect:  # both in one kernel call (collect_pair), as the simulator collects
            now += start
            assert list(first.collect_pair(second, now)) == [p.collect(now) for p in python]
    assert [ledger.collect(now + 30.0) for ledger in pair] == [
        p.collect(now + 30.0) for p in python
    ]
    for ledger, reference in zip(pair, python, strict=True):  # the running totals too
        assert (ledger.latency_cost, ledger.other_cost) == (
            reference.latency_cost, reference.other_cost,
        )  # fmt: skip
