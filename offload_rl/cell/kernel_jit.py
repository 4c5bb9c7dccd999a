"""The numba decorators of the cell's kernels: one home for their compile options.

Every kernel compiles with ``cache=True`` (loaded from numba's cache after the first process)
and without fast-math, so its float operations run in the Python reference's order, bit for
bit. Kernels that allocate nothing also compile without NRT, numba's reference-counted memory:
with it, each call from Python wraps every array argument in a new MemInfo (~0.1 us each) and
every kernel-to-kernel call pays atomic incref/decref pairs per array (measured on recorded
N = 32 cells: ~2/3 of an edge iteration's time, ~1.4 us a call). ``_nrt`` is numba's own
option, absent from its type stubs (numba 0.68, the lock's pin).

Importing this module imports numba; only the compiled modules import it.
"""

from __future__ import annotations

from typing import Any

import numba

_NO_NRT: dict[str, Any] = {"_nrt": False}
# a kernel that allocates nothing (fastmath off: IEEE order, bit-identical)
jit = numba.njit(cache=True, nogil=True, **_NO_NRT)
# a small helper inlined into its callers by LLVM (called out of line, each call passed a dozen
# array structs on the stack once per request per iteration)
hot = numba.njit(cache=True, nogil=True, forceinline=True, **_NO_NRT)
# a kernel that allocates (np.argsort, np.empty, a Generator): NRT on
jit_alloc = numba.njit(cache=True, nogil=True)
