"""The draws the workload's property tests range over, and their one comparison of a compiled
sample with the Python one (one home for the test modules)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.workloads.synthetic import SyntheticWorkload

# a seed, a horizon and a session rate for draw_sessions, and how many requests the stream keeps
DRAW_ARGS = {
    "seed": st.integers(0, 2**32 - 1),
    "horizon": st.floats(10.0, 3000.0),
    "rate": st.floats(0.001, 0.2),
    "cut": st.integers(1, 400),
}


def assert_sample_is_the_python_sample(
    wl: SyntheticWorkload, seed: int, n: int, buffered: bool = False
) -> None:
    """``wl.sample`` in compiled mode gives the Python mode's requests (equal, of the same type,
    each field of the same Python type) and leaves the generator in the same state.
    ``buffered``: the generators start with a buffered 32-bit word (a 32-bit draw's other
    half), which the sample's draws leave alone."""
    fast_rng, ref_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    if buffered:
        for rng in (fast_rng, ref_rng):
            rng.integers(7, dtype=np.int32)
    fast = wl.sample(fast_rng, n)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        ref = wl.sample(ref_rng, n)
    assert fast == ref
    for a, b in zip(fast, ref, strict=True):
        assert type(a) is type(b)
        assert all(type(getattr(a, f)) is type(getattr(b, f)) for f in a.__slots__)
    assert fast_rng.bit_generator.state == ref_rng.bit_generator.state
