"""The numba decorators of the cell's kernels: one home for their compile options.

Every kernel compiles with ``cache=True`` (loaded from numba's cache after the first process)
and without fast-math, so its float operations run in the Python reference's order, bit for
bit. Kernels that allocate nothing also compile without NRT, numba's reference-counted memory:
with it, each call from Python wraps every array argument in a new MemInfo (~0.1 us each) and
every kernel-to-kernel call pays atomic incref/decref pairs per array (measured on recorded
N = 32 cells: ~2/3 of an edge iteration's time, ~1.4 us a call). ``_nrt`` is numba's own
option, absent from its type stubs (numba 0.68, the lock's pin).

numba keys a cached kernel on its own file's time stamp only, while the kernels inline
helpers and freeze constants from other files (``compiled_finish`` inlines
``compiled_scheduler``'s loop, the table columns come from ``sequence_table``): after an edit
elsewhere, a cache would load machine code built from the old helper, silently. So this module,
which every kernel module imports before its first call, clears the package's kernel caches
whenever any of its sources changed (:func:`clear_stale_caches`).

Importing this module imports numba; only the compiled modules import it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import numba

PACKAGE = Path(__file__).resolve().parent.parent  # offload_rl/
# the folders whose modules define cached kernels (numba writes each cache beside its file)
KERNEL_DIRS = (PACKAGE / "cell", PACKAGE / "workloads")


def sources_digest(package: Path) -> str:
    """A digest of every Python source under ``package``: what a kernel may inline or read
    its constants from (the whole package, so no import is missed; ~2 ms)."""
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def clear_stale_caches(digest: str, dirs: Iterable[Path]) -> None:
    """Delete numba's cache files (``*.nbi``, ``*.nbc``) in each folder's ``__pycache__``
    unless its stamp says they were built from sources with ``digest``; then stamp it. A
    folder that cannot be written (an installed package: numba then caches elsewhere, and an
    upgrade rewrites every file's time stamp) is left alone."""
    for folder in dirs:
        cache = folder / "__pycache__"
        stamp = cache / f"kernels-{digest}.stamp"
        if stamp.exists():
            continue
        try:
            for old in chain(cache.glob("*.nbi"), cache.glob("*.nbc"), cache.glob("kernels-*")):
                old.unlink(missing_ok=True)
            cache.mkdir(exist_ok=True)
            stamp.touch()
        except OSError:
            continue


clear_stale_caches(sources_digest(PACKAGE), KERNEL_DIRS)

_NO_NRT: dict[str, Any] = {"_nrt": False}
# a kernel that allocates nothing (fastmath off: IEEE order, bit-identical)
jit = numba.njit(cache=True, nogil=True, **_NO_NRT)
# a small helper inlined into its callers by LLVM (called out of line, each call passed a dozen
# array structs on the stack once per request per iteration)
hot = numba.njit(cache=True, nogil=True, forceinline=True, **_NO_NRT)
# a kernel that allocates (np.argsort, np.empty, a Generator): NRT on
jit_alloc = numba.njit(cache=True, nogil=True)


def entry_point(dispatcher: Any) -> Callable[..., Any]:
    """The kernel's one compiled specialization, called straight; ``dispatcher`` itself where
    it holds several or none.

    Why: numba's dispatcher types every argument and looks the specialization up at each
    call (~0.6 us for a kernel of ~40 arguments, ~2 us a call at N = 32); the entry point
    skips that. Safety: the entry point unboxes its arguments by its compiled signature
    without checking them (a float where it was compiled for an int array reads garbage).
    Only for a caller that always passes the same types, and only after that caller's first
    call went through the dispatcher (so the one specialization is the one those types
    picked, not one a warm-up compiled for others): keep the result on the calling object,
    set after that first call."""
    overloads = dispatcher.overloads
    if len(overloads) == 1:
        return next(iter(overloads.values())).entry_point
    return dispatcher
