"""Whether the workload's compiled kernels may run now, and loading them once per process.

:mod:`offload_rl.workloads.compiled_workload` (numba, the optional ``fast`` extra) speeds up
the synthetic generator's per-request arithmetic; the numpy code beside each use is the
reference. The kernels run only where the cell's compiled code does:
:data:`offload_rl.cell.compiled_decode.AVAILABLE` (numba installed, ``OFFLOAD_RL_COMPILED`` not
0, no failed compile), read at each call so that a test or a benchmark can switch it off.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

_loaded: list[ModuleType | None] = []  # [] not tried yet; [None] unavailable here
_decode: list[ModuleType] = []  # offload_rl.cell.compiled_decode, once imported
# kernels' compiled entry points (kernel_jit.entry_point), set after each one's first call
# through numba's dispatcher: the dispatcher types every argument in Python at each call (~30
# us a reset for a Generator argument after a played episode, its code out of the caches)
_entries: dict[str, Callable[..., Any]] = {}


def compiled() -> ModuleType | None:
    """:mod:`~offload_rl.workloads.compiled_workload`, compiled (or loaded from numba's cache)
    at the first call; None in Python mode or where numba cannot compile it."""
    if not _decode:
        # imported at the first call (the cell's modules import this package); an import
        # statement at each call runs importlib's Python (~1 us, ~10 after a played episode)
        from offload_rl.cell import compiled_decode

        _decode.append(compiled_decode)
    if not _decode[0].AVAILABLE:
        return None
    if not _loaded:
        _loaded.append(_load())
    return _loaded[0]


def _load() -> ModuleType | None:
    try:
        from numba.core.errors import NumbaError
    except ImportError:
        return None
    try:
        module = importlib.import_module("offload_rl.workloads.compiled_workload")
        module.warm_up()
    except (ImportError, NumbaError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        warnings.warn(
            f"compiled workload kernels unavailable, using numpy: {reason}",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    return module


def call(name: str, *args: Any) -> Any:
    """The compiled kernel ``name`` (:func:`compiled` must have returned the module) on
    ``args``, straight to its compiled code after its first call. Only for kernels whose one
    caller always passes the same types (the entry point does not check them)."""
    entry = _entries.get(name)
    if entry is not None:
        return entry(*args)
    module = _loaded[0]
    assert module is not None, "kernels.call before kernels.compiled()"
    dispatcher = getattr(module, name)
    out = dispatcher(*args)
    from offload_rl.cell.kernel_jit import entry_point  # imports numba: compiled only

    _entries[name] = entry_point(dispatcher)
    return out
