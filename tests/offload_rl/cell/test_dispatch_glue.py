"""The dispatch path's shortcuts against what they replace, value for value.

:meth:`SequenceTable.take_kept` stands for ``pool.peek`` then ``pool.drop`` (when the split
differs) in a compiled decision, and :meth:`Device.record` draws its noise with
``standard_normal`` where the reference wrote ``normal(0.0, sd)``: both must leave the same
state (the table's arrays, the generator) and give the same numbers.
"""

from __future__ import annotations

import copy
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell.sequence_table import KEPT_BYTES, N_KEPT, SequenceTable, TablePool

entries = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 500), st.integers(1, 10_000), st.booleans()),
    min_size=0,
    max_size=6,
)


def _table(kept: list[tuple[int, int, int, bool]]) -> SequenceTable:
    """A table whose session ``s`` keeps ``kept[s]`` (split, tokens, bytes) when its flag is
    set, and was seen but keeps nothing otherwise."""
    table = SequenceTable(10**9, 2048, 64)
    for sid, (split, tokens, nbytes, live) in enumerate(kept):
        idx = table.session_index(sid)
        table.kept[idx] = (split, tokens, nbytes, sid + 1 if live else -1)
        if live:
            table.gi[KEPT_BYTES] += nbytes
            table.gi[N_KEPT] += 1
    return table


@settings(max_examples=200, deadline=None)
@given(entries, st.integers(0, 8), st.integers(0, 5))
def test_take_kept_is_peek_then_drop_of_another_split(kept, sid, split):
    reference = _table(kept)
    table = copy.deepcopy(reference)
    pool = TablePool(reference)
    entry = pool.peek(sid)
    if entry is not None and entry.split != split:
        pool.drop(sid)
    expected = entry.tokens if entry is not None and entry.split == split else -1
    assert table.take_kept(sid, split) == expected
    for name in ("kept", "gi"):
        assert np.array_equal(getattr(table, name), getattr(reference, name)), name


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(1e-6, 3.0),
    st.floats(0.0, 1e4),
    st.integers(1, 80),
)
def test_record_draws_the_reference_noise(seed, sd, mbps, n):
    """``record``'s samples and its generator's state after ``n`` samples are the
    reference's (``mbps * exp(rng.normal(0.0, sd))``, the window trimmed as before)."""
    from offload_rl.cell.device import Device

    device = Device.__new__(Device)  # only the fields record reads
    device.noise_sd, device.rng = sd, np.random.default_rng(seed)
    device.sample_t, device.sample_mbps = [], []
    rng = np.random.default_rng(seed)
    times: list[float] = []
    values: list[float] = []
    for i in range(n):
        device.record(float(i), mbps + i)
        times.append(float(i))
        values.append((mbps + i) * math.exp(rng.normal(0.0, sd)))
        if len(values) > 64:
            del times[:32], values[:32]
    assert device.sample_t == times and device.sample_mbps == values
    assert device.rng.bit_generator.state == rng.bit_generator.state
