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
import pytest
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


counts = st.one_of(st.integers(-(2**63), 2**63 - 1), st.booleans(), st.integers(0, 9).map(np.int64))
times = st.one_of(st.floats(allow_nan=True), st.integers(-(2**70), 2**70))


@settings(max_examples=300, deadline=None)
@given(st.lists(counts, min_size=10, max_size=10), st.lists(times, min_size=7, max_size=7))
def test_stage_packs_the_rows_numpy_writes(ints, floats):
    """:meth:`SequenceTable.stage` (fields packed with ``struct``) leaves the rows numpy's
    assignment writes, bit for bit, whatever the fields hold (ints, bools, numpy ints, huge
    ints; floats, NaN, ints as times)."""
    from offload_rl.cell.edge_server import EdgeRequest

    r = EdgeRequest(7, 3, 1, 0.0, 10, 5, 4)
    (r.computed, r.generated, r.output_tokens, r.kv_bytes_per_token, r.split, r.known,
     r.keep, r.preemptions, r.cached_tokens, r.batch_at_admit) = ints  # fmt: skip
    (r.ready_at, r.round_trip_s, r.first_token_s, r.admit_s, r.finish_s, r.queued_s,
     r.queued_since) = floats  # fmt: skip
    packed, reference = SequenceTable(10**9, 2048, 64), SequenceTable(10**9, 2048, 64)
    for table in (packed, reference):
        table.ints[:] = 99  # rows reused: every column must be written
        table.floats[:] = 99.0
    try:
        j = packed.stage(r)
    except OverflowError:  # numpy refuses it too: the fallback raised numpy's error
        with pytest.raises(OverflowError):
            reference._write_rows(reference._free.pop(), r)
        return
    reference._free.pop()
    reference._write_rows(j, r)
    assert packed.ints.tobytes() == reference.ints.tobytes()
    assert packed.floats.tobytes() == reference.floats.tobytes()
