"""Whether the edge server runs compiled (numba, the optional ``fast`` extra), and the helpers
the Python scheduler and the compiled one share.

:class:`~offload_rl.cell.edge_server.EdgeServer`'s Python methods are the reference. With numba
installed, a server keeps its requests in a
:class:`~offload_rl.cell.sequence_table.SequenceTable` and runs whole ``advance`` calls in
machine code (:mod:`offload_rl.cell.compiled_scheduler`), bit for bit as the Python scheduler:
under random placements most requests are split ones whose per-token round trips change the
batch at nearly every iteration, so a decision runs ~50-100 iterations one by one, ~1.3 us each
in Python.

The core stays numpy-only (DESIGN.md): without numba, or with ``OFFLOAD_RL_COMPILED=0`` in the
environment, :data:`AVAILABLE` is False and the server runs the Python scheduler.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from types import ModuleType

# a closed-form run must save at least this many iterations (it costs about as much as three)
JUMP_MIN = 4


def _disabled_by_env() -> bool:
    return os.environ.get("OFFLOAD_RL_COMPILED", "1").strip().lower() in {"0", "false", "no"}


def affine_iterations(s: float, d0: float, g: float, n: int, t: float, ready: float) -> int:
    """How many of ``n`` iterations starting at ``s`` run before the horizon and a round trip.

    Iteration ``j`` takes ``d0 + g * j``, so ``j`` iterations end at
    ``E(j) = s + j * d0 + g * j (j - 1) / 2``. The answer is the largest ``j <= n`` whose
    iterations all end by ``t`` (``E(j) <= t``, as the loop lets an iteration end at the
    horizon) and all start before ``ready`` (``E(j - 1) < ready``, when another request joins):
    the quadratic's root, then corrected against ``E`` itself. One definition for both loops
    (plain Python in the reference, compiled in :mod:`offload_rl.cell.compiled_scheduler`).
    """
    for bound in (t, ready):
        if bound == math.inf or n <= 0:
            continue
        x = bound - s  # > 0: the caller checked both bounds lie after s
        b = d0 - g / 2.0
        root = 2.0 * x / (b + math.sqrt(b * b + 2.0 * g * x))  # E(root) = bound, cancellation-free
        n = min(n, int(root) + 1)
    while n > 0:
        if s + (n * d0 + g * (n * (n - 1) // 2)) > t:  # E(n) after the horizon
            n -= 1
            continue
        m = n - 1
        if n > 1 and s + (m * d0 + g * (m * (m - 1) // 2)) >= ready:  # E(n - 1): joins first
            n -= 1
            continue
        break
    return n


# what a failed first call raises: numba missing after all, or numba's errors once imported
COMPILE_ERRORS: tuple[type[Exception], ...] = (ImportError,)
# numba is there (found, not imported: importing it costs ~0.3 s, paid at the first call)
AVAILABLE = not _disabled_by_env() and importlib.util.find_spec("numba") is not None
_modules: dict[str, ModuleType] = {}


def kernels(name: str) -> ModuleType:
    """``offload_rl.cell.<name>`` (a ``compiled_*`` module), its kernels compiled (cached on
    disk between processes) by its ``warm_up`` at the first call; raises one of
    :data:`COMPILE_ERRORS` if that fails."""
    module = _modules.get(name)
    if module is None:
        global COMPILE_ERRORS
        from numba.core.errors import NumbaError

        COMPILE_ERRORS = (ImportError, NumbaError)
        module = importlib.import_module(f"offload_rl.cell.{name}")
        module.warm_up()
        _modules[name] = module
    return module


def scheduler() -> ModuleType:
    """:mod:`offload_rl.cell.compiled_scheduler` (the edge server's kernels)."""
    return kernels("compiled_scheduler")


def devices() -> ModuleType:
    """:mod:`offload_rl.cell.compiled_devices` (the phones' kernels)."""
    return kernels("compiled_devices")


def ledger() -> ModuleType:
    """:mod:`offload_rl.cell.compiled_ledger` (the cost ledger's kernels)."""
    return kernels("compiled_ledger")


def observation() -> ModuleType:
    """:mod:`offload_rl.cell.compiled_observation` (the cell observation's writer)."""
    return kernels("compiled_observation")


def disable(reason: str) -> None:
    """Fall back to the Python loop for the rest of the process (numba failed to compile)."""
    global AVAILABLE
    AVAILABLE = False
    warnings.warn(
        f"compiled edge scheduler unavailable, using the Python one: {reason}",
        RuntimeWarning,
        stacklevel=3,
    )
