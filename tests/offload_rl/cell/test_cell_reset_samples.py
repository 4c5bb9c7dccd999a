"""The devices' samples before t = 0 made by the compiled kernel are the reference's, bit for bit.

:func:`~offload_rl.cell.device_seeding.seeded_samples_compiled` replaces, in compiled mode, the
numpy of :func:`~offload_rl.cell.device_seeding.seeded_samples` (each device's
:func:`measured_throughput`): a float that moves moves every EdgeCell-v0 episode.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.compiled_samples import _interp
from offload_rl.cell.device_seeding import (
    seeded_samples,
    seeded_samples_compiled,
    trace_tables,
    world_generator,
)
from offload_rl.device_view import measured_throughput
from offload_rl.traces import Trace

pytestmark = pytest.mark.skipif(not cd.AVAILABLE, reason="numba (the fast extra) is not installed")

TRACES = [
    Trace.from_steps([4.0, 0.0, 12.0, 2.5, 7.0], step_s=0.5, name="steps"),
    Trace.from_steps([1.0, 3.0, 0.5], step_s=1.0, name="short"),
    Trace.constant(10.0, duration_s=30.0, step_s=0.1),
    Trace.from_steps([0.0, 0.0, 5.0, 0.0, 3.3, 9.1, 0.0], step_s=0.3, name="outages"),
]


@settings(max_examples=150, deadline=None)
@given(
    picks=st.lists(
        st.tuples(
            st.integers(0, len(TRACES) - 1),
            st.floats(0.0, 200.0) | st.sampled_from([0.0, 0.5, 1.0, 1.5, 3.0, 30.0]),
        ),
        min_size=0,
        max_size=8,
    ),
    history=st.integers(0, 9),
    period=st.sampled_from([0.25, 0.3, 1.0, 1.7]),
    noise=st.sampled_from([0.0, 0.2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_compiled_samples_are_the_reference(
    picks: list[tuple[int, float]], history: int, period: float, noise: float, seed: int
) -> None:
    index = np.array([k for k, _ in picks], dtype=np.int64)
    origins = np.array([o for _, o in picks], dtype=np.float64)
    rngs = [np.random.default_rng(seed + j) for j in range(len(picks))]
    refs = [np.random.default_rng(seed + j) for j in range(len(picks))]
    got = seeded_samples_compiled(TRACES, index, origins, history, period, noise, rngs)
    assert got is not None and got.shape == (len(picks), history)
    for j, (k, origin) in enumerate(picks):
        want = measured_throughput(TRACES[k], origin, -history, history, period, noise, refs[j])
        assert got[j].tolist() == want.tolist()
        assert rngs[j].bit_generator.state == refs[j].bit_generator.state
    again = [np.random.default_rng(seed + j) for j in range(len(picks))]
    batch = seeded_samples([TRACES[k] for k, _ in picks], origins, history, period, noise, again)
    assert got.tolist() == batch.tolist()
    # written into wider rows (the cell's sample values), from the tables: the same values
    rows = np.full((len(picks), history + 3), 7.0)
    again = [np.random.default_rng(seed + j) for j in range(len(picks))]
    into = seeded_samples_compiled(
        trace_tables(TRACES), index, origins, history, period, noise, again, out=rows
    )
    assert into is not None and into.tolist() == got.tolist()
    assert np.all(rows[:, history:] == 7.0)


@settings(max_examples=300, deadline=None)
@given(
    points=st.lists(st.tuples(st.floats(1e-3, 10.0), st.floats(-1e6, 1e6)), min_size=2,
                    max_size=40),
    start=st.floats(-5.0, 5.0),
    at=st.floats(-10.0, 300.0) | st.integers(0, 40),
)  # fmt: skip
@example(points=[(1.0, 0.0), (1.0, 0.3), (0.1, 0.7), (8.9, 5.0)], start=0.0, at=2)
@example(points=[(1.0, 0.0), (0.1, 0.3), (0.1, 0.7), (8.9, 5.0)], start=0.0, at=1)
def test_interp_is_np_interp_on_any_grid(
    points: list[tuple[float, float]], start: float, at: float | int
) -> None:
    """The kernel's interval search guesses from evenly spaced points and walks: on uneven
    grids too, and at the grid's own points, it must find numpy's interval (and value)."""
    grid = start + np.cumsum([0.0] + [dx for dx, _ in points[1:]])
    values = np.array([f for _, f in points], dtype=np.float64)
    if np.any(np.diff(grid) <= 0):
        return
    v = float(grid[at]) if isinstance(at, int) and at < len(grid) else float(at)
    padded_x = np.concatenate([[-1e9], grid, [1e9]])  # the kernel reads [lo, hi) only
    padded_f = np.concatenate([[0.0], values, [0.0]])
    assert _interp(v, padded_x, padded_f, 1, len(grid) + 1) == float(np.interp(v, grid, values))


def test_tables_are_kept_per_list_of_traces() -> None:
    """One build per list of trace objects; another list (even of equal traces) its own."""
    assert trace_tables(TRACES) is trace_tables(list(TRACES))
    other = [Trace.from_steps([4.0, 0.0, 12.0, 2.5, 7.0], step_s=0.5, name="steps")]
    tables = trace_tables(other)
    assert tables.traces[0] is other[0] and tables.start.tolist() == [0, 6]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**63 - 1) | st.integers(0, 2**31) | st.sampled_from([0, 2**32 - 1, 2**32]))
def test_world_generator_is_default_rng(seed: int) -> None:
    """The episode's world: the stream ``default_rng(seed)`` gives, buffered words included."""
    ours, ref = world_generator(seed), np.random.default_rng(seed)
    assert ours.bit_generator.state == ref.bit_generator.state
    assert ours.integers(7) == ref.integers(7)  # the buffered 32-bit path
    assert ours.random(5).tolist() == ref.random(5).tolist()
    assert ours.bit_generator.state == ref.bit_generator.state


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**63 - 1) | st.sampled_from([0, 2**32 - 1, 2**32]),
    st.integers(0, 2**63 - 1),
    st.integers(0, 9),
)
def test_a_reused_world_is_default_rng(seed: int, before: int, draws: int) -> None:
    """The previous episode's world seeded again in place (``reuse``, compiled mode): the same
    object, in ``default_rng(seed)``'s state whatever it drew before (a buffered 32-bit word
    included), then the same stream."""
    old = world_generator(before)
    old.integers(7)  # leaves a buffered 32-bit word
    old.random(draws)
    ours, ref = world_generator(seed, old), np.random.default_rng(seed)
    assert ours is old
    assert ours.bit_generator.state == ref.bit_generator.state
    assert ours.integers(7) == ref.integers(7)
    assert ours.random(5).tolist() == ref.random(5).tolist()
    assert ours.bit_generator.state == ref.bit_generator.state


def test_world_generator_takes_any_seed_default_rng_takes() -> None:
    """Seeds outside the compiled path's range go to ``default_rng`` itself."""
    for seed in (2**63, 2**70 + 3):
        assert world_generator(seed).random() == np.random.default_rng(seed).random()
    with pytest.raises(ValueError):
        world_generator(-1)
