"""A reset makes what it always made, from fewer calls: each shortcut equals its reference.

* the world's consecutive draws of one kind come from one call (``random`` for privacy, SLO
  class and memory pressure; ``standard_exponential`` for the two queue draws) and
  ``pick_episode``'s offset from ``rng.random()``: the same doubles as the separate calls,
  the generator left in the same state;
* :meth:`SequenceTable.fresh` (arrays copied from a pristine table) is the constructor's
  table field by field (names, dtypes, shapes, values), and owns all its arrays;
* :func:`edge_server.cost_facts` (made once per cost) are the facts the constructor derived;
* a fork made before a reset keeps its own state (nothing of it is shared with the next
  episode's objects).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.cell_oracle import fork_simulator
from envs.edge_cell import EdgeCellEnv
from envs.episode_options import pick_episode
from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.edge_server import EdgeServer, cost_facts
from offload_rl.cell.sequence_table import SequenceTable
from offload_rl.cell.simulator import edge_batch_cost
from offload_rl.traces import Trace
from offload_rl.workloads.distributions import choice_cdf, choice_indices
from tests.envs.cell_helpers import cell_scenario


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 80), st.integers(1, 300))
def test_merged_draws_are_the_separate_calls(seed: int, ns: int, n: int) -> None:
    cdf = choice_cdf([0.5, 0.3, 0.2])
    ours, ref = np.random.default_rng(seed), np.random.default_rng(seed)
    u = ours.random(2 * ns + n)
    queues = ours.standard_exponential(2 * n)
    private = ref.random(ns)
    slo = choice_indices(ref, cdf, ns)
    pressure = ref.random(n)
    edge_q, cloud_q = ref.exponential(1.0, size=n), ref.exponential(1.0, size=n)
    assert u[:ns].tolist() == private.tolist() and u[2 * ns :].tolist() == pressure.tolist()
    assert cdf.searchsorted(u[ns : 2 * ns], side="right").tolist() == slo.tolist()
    assert queues[:n].tolist() == edge_q.tolist() and queues[n:].tolist() == cloud_q.tolist()
    assert ours.bit_generator.state == ref.bit_generator.state


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(1e-6, 1e9, allow_nan=False, allow_infinity=False),
    st.integers(1, 5),
)
def test_pick_episode_draws_its_offset_as_uniform_did(seed: int, duration: float, k: int) -> None:
    # one step each: a trace as long as drawn, whatever the double
    traces = [Trace.constant(10.0, duration, duration, f"t{i}") for i in range(k)]
    ours, ref = np.random.default_rng(seed), np.random.default_rng(seed)
    idx, offset, wseed = pick_episode(traces, ours, {})
    want_idx = int(ref.integers(k))
    want = float(ref.uniform(0.0, traces[want_idx].duration_s))
    assert (idx, offset, wseed) == (want_idx, want, int(ref.integers(2**31 - 1)))
    assert type(offset) is float and ours.bit_generator.state == ref.bit_generator.state


def _assert_same_table(got: SequenceTable, want: SequenceTable) -> None:
    """Field for field: the same attributes, arrays of one dtype, shape and values, ``args``
    the table's own arrays in the kernel's order."""
    assert list(vars(got)) == list(vars(want))
    for name, value in vars(want).items():
        other = vars(got)[name]
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype and other.shape == value.shape, name
            assert other.tobytes() == value.tobytes(), name
        elif name == "args":
            assert len(other) == len(value)
            for a, b in zip(other, value, strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        else:
            assert type(other) is type(value) and other == value, name
    mine = [vars(got)[k] for k, v in vars(want).items() if isinstance(v, np.ndarray)]
    assert [id(a) for a in got.args] == [id(got.__dict__[k]) for k in _ARGS]
    assert len({id(a) for a in mine}) == len(mine)


_ARGS = (
    "ints", "floats", "kept", "gi", "gf", "run", "wait", "sched", "batch", "out_i", "out_t",
    "subs", "sub_t",
)  # fmt: skip

budgets = st.tuples(st.integers(1, 2**40), st.integers(1, 8192), st.integers(1, 512))


@settings(max_examples=50, deadline=None)
@given(st.lists(budgets, min_size=1, max_size=4))
def test_a_fresh_table_is_the_constructors_and_its_own(keys: list[tuple[int, int, int]]) -> None:
    for key in keys:
        first = SequenceTable.fresh(*key)
        _assert_same_table(first, SequenceTable(*key))
        # used as an episode uses it (rows, sessions, growth): the next one is still fresh
        for arr in first.args:
            arr[...] = 7
        first.requests[0] = None
        first._free.pop()
        first.session_index(3)
        first._grow_rows(16)
        second = SequenceTable.fresh(*key)
        _assert_same_table(second, SequenceTable(*key))
        assert not any(np.shares_memory(a, b) for a in first.args for b in second.args)


def test_cost_facts_are_what_the_server_derived() -> None:
    cost = edge_batch_cost(EdgeCellEnv(cell_scenario()).resolved)
    other = copy.deepcopy(cost)  # another object: its facts are made again, equal
    for c in (cost, other, cost):
        facts = cost_facts(c)
        assert cost_facts(c) is facts  # made once per cost object
        n = c.n_layers
        assert facts.kv_bytes == tuple((n - k) * c.kv_bytes_per_token_layer for k in range(n))
        fixed = tuple(c.fixed_s(k, k == 0, True) for k in range(n + 1))
        slope = n * (c.kv_s_per_token + 2 * c.attn_s_unit)
        terms = (c.kv_s_per_token, c.linear_s_per_token, c.attn_s_unit, c.head_s_per_token,
                 c.embed_s_per_token, c.head_s_per_sample, n)  # fmt: skip
        assert (facts.decode_fixed_s, facts.decode_slope, facts.decode_terms) == (
            fixed,
            slope,
            terms,
        )
        coefficients = np.array(
            [*terms[:6], c.layer_fixed_s, c.head_fixed_s, c.embed_fixed_s, slope, n]
        )
        for got, want in zip(facts.arrays, (coefficients, np.array(fixed)), strict=True):
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
        server = EdgeServer(c, 10**9)
        assert (server._kv_bytes, server._decode_fixed_s) == (facts.kv_bytes, fixed)
        assert (server._decode_slope, server._decode_terms) == (slope, terms)


@pytest.mark.skipif(not cd.AVAILABLE, reason="numba is not installed or OFFLOAD_RL_COMPILED=0")
def test_a_fork_made_before_a_reset_keeps_its_own_state() -> None:
    env = EdgeCellEnv(cell_scenario(), episode_requests=24)
    env.reset(seed=3)
    for _ in range(12):
        env.step(int(np.flatnonzero(env.action_masks())[0]))
    fork = fork_simulator(env.sim)
    table = fork.edge._table
    before = [a.copy() for a in (*table.args, *fork.edge._cost_arrays, *fork._decide_leading)]
    env.reset(seed=4)
    for _ in range(12):
        env.step(int(np.flatnonzero(env.action_masks())[-1]))
    after = (*table.args, *fork.edge._cost_arrays, *fork._decide_leading)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, after, strict=True))
    mine = (*env.sim.edge._table.args, *env.sim.edge._cost_arrays, *env.sim._decide_leading)
    assert not any(np.shares_memory(a, b) for a in after for b in mine)
