"""A stream's requests built from columns are the requests ``Request(...)`` builds.

:func:`offload_rl.workloads.request.requests_from_columns` sets each field through its slot
(the frozen dataclass's ``__init__`` is ~1 us per request); the objects must be equal, hash
alike, stay frozen and keep every field's value and type (a NaN gap read as None).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.workloads.request import Request, requests_from_columns

rows = st.lists(
    st.tuples(
        st.floats(allow_nan=False),
        st.integers(0, 10**6),
        st.integers(0, 64),
        st.integers(1, 10**5),
        st.integers(0, 10**5),
        st.integers(1, 10**5),
        st.none() | st.floats(0.0, 1e6) | st.just(math.nan),
    ),
    max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(rows)
def test_columns_make_the_same_requests(values: list[tuple[Any, ...]]) -> None:
    columns = [list(c) for c in zip(*values, strict=True)] if values else [[]] * 7
    got = requests_from_columns(*columns)
    # a NaN gap (a numpy column's "no next turn") is None
    want = [Request(*row[:6], None if row[6] != row[6] else row[6]) for row in values]
    assert got == want
    assert all(type(r) is Request for r in got)
    assert [hash(r) for r in got] == [hash(r) for r in want]
    for r, w in zip(got, want, strict=True):
        assert [type(v) for v in dataclasses.astuple(r)] == [
            type(v) for v in dataclasses.astuple(w)
        ]


def test_built_requests_stay_frozen() -> None:
    (r,) = requests_from_columns([1.0], [0], [0], [5], [0], [3], [None])
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.turn = 2  # type: ignore[misc]


def test_columns_of_unequal_length_are_an_error() -> None:
    with pytest.raises(ValueError):
        requests_from_columns([1.0, 2.0], [0], [0], [5], [0], [3], [None])
