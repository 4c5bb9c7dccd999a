"""``kernel_jit.entry_point``: the one home of calling a kernel past numba's dispatcher.

A kernel with one compiled specialization is called through that specialization's entry
point (the same result, no per-call typing); with none or several (types the entry point
would unbox unchecked), the dispatcher stays.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from offload_rl.cell.kernel_jit import entry_point  # noqa: E402


def _kernel() -> object:
    @numba.njit(nogil=True, _nrt=False)
    def scaled_sum(x: np.ndarray, w: float) -> float:
        total = 0.0
        for v in x:
            total += w * v
        return total

    return scaled_sum


def test_one_specialization_is_called_straight_with_the_same_result():
    kernel = _kernel()
    x = np.arange(5.0)
    expected = kernel(x, 0.5)  # the first call, through the dispatcher
    call = entry_point(kernel)
    assert call is not kernel
    assert call is next(iter(kernel.overloads.values())).entry_point
    assert call(x, 0.5) == expected == 5.0


def test_none_or_several_specializations_keep_the_dispatcher():
    kernel = _kernel()
    assert entry_point(kernel) is kernel  # never called: nothing compiled yet
    kernel(np.arange(3.0), 1.0)
    kernel(np.arange(3, dtype=np.int64), 1.0)  # a second specialization
    assert len(kernel.overloads) == 2
    assert entry_point(kernel) is kernel
