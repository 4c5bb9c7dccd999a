"""A stream's columns made by the compiled pass are the numpy reference's, integer for integer.

:func:`offload_rl.workloads.stream._compiled_columns` replaces, where the workload's kernels
run, the sort-based numpy of :func:`~offload_rl.workloads.stream._stream_columns` (turns,
scaled and capped lengths, contexts, dense session ids): a token that moves moves every
EdgeCell-v0 episode.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.workloads import kernels
from offload_rl.workloads.request import UNLIMITED_TOKENS, TokenScaling
from offload_rl.workloads.stream import _compiled_columns, _stream_columns

pytestmark = pytest.mark.skipif(
    kernels.compiled() is None, reason="numba (the fast extra) is not installed"
)

scalings = st.builds(
    TokenScaling,
    scale=st.sampled_from([1.0, 0.5, 0.37, 1.5, 2.0, 0.01]),
    max_context_tokens=st.integers(1, 5000) | st.just(UNLIMITED_TOKENS),
    max_new_tokens=st.integers(1, 3000),
    max_output_tokens=st.integers(1, 2000),
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 40), st.integers(0, 9000), st.integers(0, 3000), st.integers(0, 20000)
        ),
        min_size=1,
        max_size=60,
    ),
    scaling=scalings,
)
def test_compiled_columns_are_numpys(
    rows: list[tuple[int, int, int, int]], scaling: TokenScaling
) -> None:
    key, new, output, prior = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
    got = _compiled_columns(key, new, output, prior, scaling)
    want = _stream_columns(key, new, output, prior, scaling)
    assert got is not None
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.tolist() == w.tolist()


def test_wide_or_negative_keys_take_numpy() -> None:
    """The kernel indexes arrays by key: keys it cannot hold go to the numpy reference."""
    ones = np.ones(2, dtype=np.int64)
    s = TokenScaling()
    assert _compiled_columns(np.array([0, 10**9], dtype=np.int64), ones, ones, ones, s) is None
    assert _compiled_columns(np.array([-1, 0], dtype=np.int64), ones, ones, ones, s) is None
    assert _compiled_columns(np.array([0, 1], dtype=np.int32), ones, ones, ones, s) is None
