"""The vectorised class draw is ``Generator.choice``'s, index for index.

:func:`offload_rl.workloads.distributions.choice_indices` replaces
``world.choice(len(p), size=n, p=p)`` for the sessions' SLO classes and turn counts; it must
take the same uniforms, give the same indices (dtype included) and leave the generator in the
same state, for any shares that sum to one.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.workloads.distributions import choice_cdf, choice_indices

shares = st.lists(st.floats(0.0, 10.0) | st.just(0.0), min_size=1, max_size=6).filter(
    lambda p: sum(p) > 0.0
)


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
