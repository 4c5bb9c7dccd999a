"""The edge server's decode-only stretches compiled with numba (the optional ``fast`` extra).

:meth:`~offload_rl.cell.edge_server.EdgeServer._decode_run` is the reference: a Python loop
over :class:`~offload_rl.cell.edge_server.EdgeRequest` objects. Under random placements most
requests are split ones whose per-token round trips change the batch at nearly every
iteration, so a decision runs ~50-100 such iterations one by one, ~1.3 us each in Python. This
module runs the same loop on flat arrays in machine code: the running requests' fields go in as
two arrays (one row per request, admission order), the loop performs the reference's float
operations in its order (IEEE doubles, no fast-math, so no reassociation or fused
multiply-adds: the results are bit-identical), and what changed comes back for the server to
write into its objects and its KV pool.

The core stays numpy-only (DESIGN.md): without numba, or with ``OFFLOAD_RL_COMPILED=0`` in the
environment, :data:`AVAILABLE` is False and the server runs the Python loop.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

# columns of the integer input (one row per running request, admission order)
COMPUTED, GENERATED, OUTPUT, KV_BYTES, SPLIT, KEPT_SLOT = range(6)
# columns of the float input
READY_AT, ROUND_TRIP, FIRST_TOKEN = range(3)
N_INT_COLUMNS, N_FLOAT_COLUMNS = 6, 3
# KEPT_SLOT of a request that does not keep its KV (it frees what it holds when it finishes);
# a request that keeps it names a slot of ``kept``: the bytes of its session's kept entry, which
# its finish frees (the pool drops a session's old entry) and replaces by its own
NOT_KEPT = -1


def _disabled_by_env() -> bool:
    return os.environ.get("OFFLOAD_RL_COMPILED", "1").strip().lower() in {"0", "false", "no"}


def affine_iterations(s: float, d0: float, g: float, n: int, t: float, ready: float) -> int:
    """How many of ``n`` iterations starting at ``s`` run before the horizon and a round trip.

    Iteration ``j`` takes ``d0 + g * j``, so ``j`` iterations end at
    ``E(j) = s + j * d0 + g * j (j - 1) / 2``. The answer is the largest ``j <= n`` whose
    iterations all end by ``t`` (``E(j) <= t``, as the loop lets an iteration end at the
    horizon) and all start before ``ready`` (``E(j - 1) < ready``, when another request joins):
    the quadratic's root, then corrected against ``E`` itself. One definition for both loops
    (plain Python in the reference, compiled inside :func:`decode_run`).
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


def _ready_batch(
    floats: np.ndarray, alive: np.ndarray, batch: np.ndarray, clock: float
) -> tuple[int, float, float]:
    """Who runs the next iteration (``EdgeServer._ready_decodes``): fills ``batch`` with the
    alive rows ready by ``clock`` or, if none is, the earliest ready (all tied at that time).

    Returns ``(n_batch, s, first)``: the batch's size, when it starts, and the earliest ready
    time after ``clock`` (``inf`` when none is later).
    """
    rows = floats.shape[0]
    first = math.inf
    earliest = -1
    tie = False
    n_batch = 0
    for j in range(rows):
        if not alive[j]:
            continue
        if earliest < 0:
            earliest = j
        x = floats[j, READY_AT]
        if x <= clock:
            batch[n_batch] = j
            n_batch += 1
        elif x < first:
            first = x
            earliest = j
            tie = False
        elif x == first:
            tie = True
    if n_batch > 0:
        return n_batch, clock, first
    if tie:
        for j in range(rows):
            if alive[j] and floats[j, READY_AT] <= first:
                batch[n_batch] = j
                n_batch += 1
    else:
        batch[0] = earliest
        n_batch = 1
    return n_batch, first, first


def _price_batch(
    ints: np.ndarray, batch: np.ndarray, n_batch: int, terms: np.ndarray, n_layers: int
) -> tuple[int, float, int, int]:
    """The batch's price (``EdgeServer._price_decodes``), summed in the reference's order.

    Returns ``(need, total, min_split, max_split)``: the KV bytes one iteration adds, the
    per-request part of its duration, and the lowest and highest split among its rows.
    """
    kv, lin, attn, head_tok, embed, head_smp = (
        terms[0],
        terms[1],
        terms[2],
        terms[3],
        terms[4],
        terms[5],
    )
    need = 0
    total = 0.0
    min_split = n_layers
    max_split = 0
    for b in range(n_batch):
        j = batch[b]
        need += ints[j, KV_BYTES]
        c = ints[j, COMPUTED]
        k = ints[j, SPLIT]
        seq = (n_layers - k) * (kv * (c + 1) + lin + attn * (2 * c + 2)) + head_tok
        if k == 0:
            seq += embed
        total += seq + head_smp
        if k < min_split:
            min_split = k
        if k > max_split:
            max_split = k
    return need, total, min_split, max_split


def _jump_batch(
    ints: np.ndarray,
    floats: np.ndarray,
    batch: np.ndarray,
    n_batch: int,
    s: float,
    d0: float,
    g: float,
    t: float,
    first: float,
    free: int,
    need: int,
    jump_min: int,
) -> tuple[int, float]:
    """A fixed token-id batch's next iterations in closed form (``EdgeServer._jump``).

    Returns ``(n, e)``: how many iterations ran and when the last ended; when fewer than
    ``jump_min`` would run it changes nothing and returns ``n < jump_min`` (the caller then
    runs one iteration as usual).
    """
    left = ints[batch[0], OUTPUT] - ints[batch[0], GENERATED]
    for b in range(1, n_batch):
        j = batch[b]
        left = min(left, ints[j, OUTPUT] - ints[j, GENERATED])
    n = min(left - 1, free // need)
    n = _affine_jit(s, d0, g, n, t, first)
    if n < jump_min:
        return n, s
    e = s + (n * d0 + g * (n * (n - 1) // 2))
    for b in range(n_batch):
        j = batch[b]
        ints[j, COMPUTED] += n
        ints[j, GENERATED] += n
        if floats[j, FIRST_TOKEN] < 0:
            floats[j, FIRST_TOKEN] = s + d0
    return n, e


def _step_batch(
    ints: np.ndarray,
    floats: np.ndarray,
    kept: np.ndarray,
    alive: np.ndarray,
    batch: np.ndarray,
    n_batch: int,
    e: float,
    free: int,
    finished: np.ndarray,
    finish_s: np.ndarray,
    n_fin: int,
) -> tuple[int, int]:
    """One iteration ending at ``e`` applied to the batch's rows: a token each; a request
    that has all its tokens finishes (its KV freed, or swapped for its session's kept entry),
    a split one not finished waits a round trip for its next token id.

    Returns ``(free, n_fin)`` updated; finished rows are marked dead in ``alive``.
    """
    for b in range(n_batch):
        j = batch[b]
        ints[j, COMPUTED] += 1
        ints[j, GENERATED] += 1
        if floats[j, FIRST_TOKEN] < 0:
            floats[j, FIRST_TOKEN] = e
        if ints[j, GENERATED] >= ints[j, OUTPUT]:
            alive[j] = 0
            finished[n_fin] = j
            finish_s[n_fin] = e
            n_fin += 1
            held = ints[j, COMPUTED] * ints[j, KV_BYTES]
            slot = ints[j, KEPT_SLOT]
            if slot == NOT_KEPT:
                free += held
            else:
                free += kept[slot]
                kept[slot] = held
        elif ints[j, SPLIT] > 0:
            floats[j, READY_AT] = e + floats[j, ROUND_TRIP]
    return free, n_fin


def _decode_run(
    ints: np.ndarray,
    floats: np.ndarray,
    fixed: np.ndarray,
    terms: np.ndarray,
    n_layers: int,
    slope: float,
    cap: int,
    jump_min: int,
    clock: float,
    busy: float,
    t: float,
    free: int,
    kept: np.ndarray,
    alive: np.ndarray,
    batch: np.ndarray,
    finished: np.ndarray,
    finish_s: np.ndarray,
) -> tuple[float, float, int, int, int, int, int, bool, bool, float]:
    """The loop of ``EdgeServer._decode_run`` on arrays (``ints``, ``floats`` and ``kept``
    updated in place; ``alive``, ``batch``, ``finished``, ``finish_s``: scratch and outputs, at
    least one entry per row). Each part is a helper that mirrors one method of the reference.

    Returns ``(clock, busy, iterations, closed_form_iterations, last, n_batch, n_finished,
    at_horizon, in_flight, iter_end)``: ``batch[:n_batch]`` holds the rows of the batch left in
    flight, ``finished[:n_finished]`` / ``finish_s`` the rows that finished, in order, and when.
    """
    rows = ints.shape[0]
    n_alive = rows
    for j in range(rows):
        alive[j] = 1
    iterations = 0
    closed = 0
    last = 0
    n_fin = 0
    n_batch = 0
    at_horizon = False
    in_flight = False
    iter_end = 0.0
    while n_alive > 0:
        n_batch, s, first = _ready_batch_jit(floats, alive, batch, clock)
        if s >= t:
            at_horizon = True
            n_batch = 0
            break
        whole = n_batch <= cap
        if not whole:
            n_batch = cap
        need, total, min_split, max_split = _price_batch_jit(ints, batch, n_batch, terms, n_layers)
        if need > free:
            clock = s
            n_batch = 0
            break
        d0 = total + fixed[min_split]
        if max_split == 0 and whole and first - s > jump_min * d0:
            g = n_batch * slope
            n, e = _jump_batch_jit(
                ints, floats, batch, n_batch, s, d0, g, t, first, free, need, jump_min
            )
            if n >= jump_min:
                free -= n * need
                busy += e - s
                clock = e
                iterations += n
                closed += n
                last = n_batch
                continue
        free -= need
        e = s + d0
        last = n_batch
        if e > t:
            in_flight = True
            iter_end = e
            clock = s
            at_horizon = True
            break
        busy += e - s
        clock = e
        iterations += 1
        n_before = n_fin
        free, n_fin = _step_batch_jit(
            ints, floats, kept, alive, batch, n_batch, e, free, finished, finish_s, n_fin
        )
        n_alive -= n_fin - n_before
    if not in_flight:
        n_batch = 0
    return (
        clock,
        busy,
        iterations,
        closed,
        last,
        n_batch,
        n_fin,
        at_horizon,
        in_flight,
        iter_end,
    )


# the helpers as _decode_run calls them: the Python functions, the compiled ones once _compile ran
_affine_jit: Callable[..., int] = affine_iterations
_ready_batch_jit: Callable[..., tuple[int, float, float]] = _ready_batch
_price_batch_jit: Callable[..., tuple[int, float, int, int]] = _price_batch
_jump_batch_jit: Callable[..., tuple[int, float]] = _jump_batch
_step_batch_jit: Callable[..., tuple[int, int]] = _step_batch


# what a failed first call raises: numba missing after all, or numba's errors once imported
COMPILE_ERRORS: tuple[type[Exception], ...] = (ImportError,)
# numba is there (found, not imported: importing it costs ~0.3 s, paid at the first call)
AVAILABLE = not _disabled_by_env() and importlib.util.find_spec("numba") is not None
_kernel: Callable[..., Any] | None = None


def _compile() -> Callable[..., Any]:
    """The compiled loop (compiled at its first call, cached on disk between processes)."""
    import numba
    from numba.core.errors import NumbaError

    global _affine_jit, _ready_batch_jit, _price_batch_jit, _jump_batch_jit, _step_batch_jit
    global COMPILE_ERRORS
    COMPILE_ERRORS = (ImportError, NumbaError)
    jit = numba.njit(cache=True, nogil=True)  # fastmath off: IEEE order, bit-identical
    _affine_jit = jit(affine_iterations)
    _ready_batch_jit = jit(_ready_batch)
    _price_batch_jit = jit(_price_batch)
    _jump_batch_jit = jit(_jump_batch)
    _step_batch_jit = jit(_step_batch)
    return jit(_decode_run)


def decode_run(*args: Any) -> Any:
    """The compiled :func:`_decode_run` (numba imported and the loop compiled at the first call;
    raises one of :data:`COMPILE_ERRORS` if that fails)."""
    global _kernel
    if _kernel is None:
        _kernel = _compile()
    return _kernel(*args)


def disable(reason: str) -> None:
    """Fall back to the Python loop for the rest of the process (numba failed to compile)."""
    global AVAILABLE
    AVAILABLE = False
    warnings.warn(
        f"compiled edge decode loop unavailable, using the Python loop: {reason}",
        RuntimeWarning,
        stacklevel=3,
    )
