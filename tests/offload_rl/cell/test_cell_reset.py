"""The cell's reset draws as it always drew: the class draws are ``Generator.choice``'s.

:func:`offload_rl.cell.simulator.draw_index` replaces ``world.choice(len(p), p=p)`` (its
argument checks cost ~7 us per device per reset), and
:func:`offload_rl.workloads.distributions.choice_indices` replaces
``world.choice(len(p), size=n, p=p)`` (the sessions' SLO classes, the turn counts' mixture);
each must take the same uniform draws and give the same indices (dtype included) for any
shares, leaving the generator in the same state.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell.simulator import class_cdf, draw_index
from offload_rl.workloads.distributions import choice_cdf, choice_indices

shares = st.lists(st.floats(0.0, 10.0) | st.just(0.0), min_size=1, max_size=6).filter(
    lambda p: sum(p) > 0.0
)


@settings(max_examples=200, deadline=None)
@given(shares, st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_draw_index_is_generator_choice(raw: list[float], seed: int, n: int) -> None:
    total = sum(raw)
    probs = [p / total for p in raw]  # as CellConfig.class_probabilities normalises them
    ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    cdf = class_cdf(probs)
    for _ in range(n):
        assert draw_index(ours, cdf) == int(numpys.choice(len(probs), p=probs))
    assert ours.bit_generator.state == numpys.bit_generator.state


@settings(max_examples=200, deadline=None)
@given(shares, st.integers(0, 2**32 - 1), st.integers(0, 300))
def test_choice_indices_is_generator_choice(raw: list[float], seed: int, size: int) -> None:
    total = sum(raw)
    probs = [p / total for p in raw]
    ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    got = choice_indices(ours, choice_cdf(probs), size)
    want = numpys.choice(len(probs), size=size, p=np.array(probs))
    assert got.dtype == want.dtype and got.tolist() == want.tolist()
    assert ours.bit_generator.state == numpys.bit_generator.state
