"""A radio bank built from shared parameter sets is the bank built row by row.

:class:`offload_rl.cell.radio_bank.RadioBank` builds one table row per distinct
:class:`RadioParams` object and copies it to the radios that share it (a reset hands every
device on a cellular trace the same object); its table and asleep counts must be those of one
row per radio, for shared, equal-but-distinct and different parameter sets alike.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.radio import RADIOS, RadioParams
from offload_rl.cell.radio_bank import _INITIAL, RadioBank

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

BASES = list(RADIOS.values())


def _reference(params: list[RadioParams]) -> tuple[np.ndarray, np.ndarray]:
    """The table and levels one row per radio (the construction before rows were shared)."""
    powers = list(dict.fromkeys(p.idle_w for p in params))
    table = np.array(
        [
            (*_INITIAL, p.promo_s, p.promo_w, p.beta_w, p.alpha_up_w_per_mbps,
             p.alpha_down_w_per_mbps, p.tail_s, p.tail_w, p.idle_w,
             0.0, 0.0, 0.0, powers.index(p.idle_w))
            for p in params
        ],
        dtype=np.float64,
    ).reshape(len(params), 18)  # fmt: skip
    levels = np.array([(w, 0.0) for w in powers], dtype=np.float64).reshape(-1, 2)
    for p in params:
        levels[powers.index(p.idle_w), 1] += 1.0
    return table, levels


@st.composite
def radio_lists(draw: st.DrawFn) -> list[RadioParams]:
    """Radios drawing from a few parameter sets: shared objects, copies, tweaked idle power."""
    pool = [draw(st.sampled_from(BASES))]
    for _ in range(draw(st.integers(0, 3))):
        base = draw(st.sampled_from(BASES))
        how = draw(st.sampled_from(["same", "copy", "idle", "tail"]))
        if how == "copy":
            base = replace(base)
        elif how == "idle":
            base = replace(base, idle_w=draw(st.floats(0.0, 2.0)))
        elif how == "tail":
            base = replace(base, tail_s=0.0)
        pool.append(base)
    return draw(st.lists(st.sampled_from(pool), min_size=0, max_size=12))


@settings(max_examples=150, deadline=None)
@given(radio_lists())
def test_shared_rows_are_the_row_by_row_bank(params: list[RadioParams]) -> None:
    bank = RadioBank(params)
    table, levels = _reference(params)
    assert bank.table.shape == table.shape and bank.table.flags.c_contiguous
    assert np.array_equal(bank.table, table)
    assert np.array_equal(bank.levels, levels)
