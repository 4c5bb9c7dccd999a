"""The compiled reset draws are, value for value and state for state, the Python ones.

:func:`offload_rl.cell.compiled_reset.draw_devices` makes the world's per-device draws (trace,
offset, class, seed) in one numba call; ``CellSimulator._draw_devices`` is the reference. For
any world state (a buffered 32-bit word or not), pinned trace and offset, the two must give the
same devices and leave the world in the same state, or every later draw of the episode moves.
:func:`~offload_rl.cell.compiled_reset.seed_states` must be ``SeedSequence``'s output.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode as cd

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

SIMS = {n: EdgeCellEnv("cell", n_devices=n).sim for n in (1, 5, 40)}


def _kernels() -> ModuleType:
    return cd.kernels("compiled_reset")


@settings(max_examples=150, deadline=None)
@given(
    n=st.sampled_from(sorted(SIMS)),
    seed=st.integers(0, 2**32 - 1),
    skew=st.integers(0, 3),
    trace_index=st.integers(0, 10_000),
    offset=st.floats(0.0, 1e4),
)
def test_draws_are_the_python_draws(
    n: int, seed: int, skew: int, trace_index: int, offset: float
) -> None:
    sim = SIMS[n]
    trace_index %= len(sim.resolved.uplinks)
    ours, ref = np.random.default_rng(seed), np.random.default_rng(seed)
    for g in (ours, ref):
        g.integers(5, size=skew, dtype=np.int32)  # an odd count leaves a buffered word
    got = sim._draw_devices_compiled(ours, trace_index, offset)
    assert got is not None
    want = sim._draw_devices(ref, trace_index, offset)
    assert got[:3] == want[:3]
    assert [g.bit_generator.state for g in got[3]] == [g.bit_generator.state for g in want[3]]
    assert ours.bit_generator.state == ref.bit_generator.state
    assert ours.random() == ref.random()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.integers(0, 2**63 - 2) | st.integers(0, 2**32 + 5) | st.sampled_from([0, 2**32 - 1]),
        max_size=10,
    )
)
def test_seed_states_are_seed_sequences(values: list[int]) -> None:
    seeds = np.array(values, dtype=np.int64)
    out = np.empty((len(values), 4), dtype=np.uint64)
    _kernels().seed_states(seeds, out)
    for row, s in zip(out, values, strict=True):
        assert np.array_equal(row, np.random.SeedSequence(s).generate_state(4, np.uint64))
