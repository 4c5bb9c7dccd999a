"""The cell's per-device reset draws in machine code (numba), one call per reset.

:meth:`CellSimulator._draw_devices <offload_rl.cell.simulator.CellSimulator._draw_devices>` is
the reference: for each device the episode's world draws a trace, an offset on it, a class and
the device's seed, four calls of ``world``'s methods (~2.5 us each in Python, mostly argument
handling). :func:`draw_devices` makes the same draws on the world's ``PCG64`` state words, in
place through their address (:func:`~offload_rl.cell.device_seeding.pcg64_head`, whose layout
is checked once per process), with numpy's algorithms inline (:func:`next_double`,
:func:`integers_below`: Lemire's bounded integers, the buffered 32-bit word included), so the
values and the world's state after it are the reference's
(``tests/offload_rl/cell/test_cell_reset_compiled.py``); :func:`session_devices` likewise
draws the sessions' devices, and the synthetic workload's fused draw uses the same samplers
(:func:`standard_exponential` among them). :func:`seed_states` is
``SeedSequence(seed).generate_state(4, np.uint64)`` per seed
(:func:`~offload_rl.cell.device_seeding.seed_sequence_states` in numpy is its reference), in
uint64 arithmetic masked to numpy's uint32 words. :func:`reseed_generators` puts existing
``PCG64`` generators in the state those words seed (:func:`~offload_rl.cell.device_seeding.
reseed_pcg64`, in place, through their state's address), so that a simulator's device
generators are made once and seeded again at each reset.

Importing this module imports numba; the simulator imports it only in compiled mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic
from numba.np.random import _constants as zig  # numpy's ziggurat tables, as numba has them

from offload_rl.cell import kernel_jit
from offload_rl.cell.device_seeding import (
    _INIT_A,
    _INIT_B,
    _MASK32,
    _MULT_A,
    _MULT_B,
    _PCG_MULT,
    _POOL,
    pcg64_head,
)

A = np.ndarray
jit = numba.njit(cache=True, nogil=True)  # fastmath off: IEEE order, bit-identical
# numpy's SeedSequence constants as uint64 (numba mixes a Python int and a uint64 into float64)
U = np.uint64
INIT_A, MULT_A, INIT_B, MULT_B = U(_INIT_A), U(_MULT_A), U(_INIT_B), U(_MULT_B)
MIX_L, MIX_R, MASK, S16, S32 = U(0xCA01F9DD), U(0x4973F715), U(_MASK32), U(16), U(32)
ZERO = U(0)
FI, KI, WI = zig.fi_double, zig.ki_double, zig.wi_double
NOR_R, NOR_INV_R = zig.ziggurat_nor_r, zig.ziggurat_nor_inv_r
FE, KE, WE, EXP_R = zig.fe_double, zig.ke_double, zig.we_double, zig.ziggurat_exp_r
ONE, S1, S3, S11, S58, S63, S64 = U(1), U(1), U(3), U(11), U(58), U(63), U(64)
# PCG64's 128-bit multiplier as (high, low) words
PCG_HI, PCG_LO = U(_PCG_MULT >> 64), U(_PCG_MULT & ((1 << 64) - 1))


@kernel_jit.jit
def draw_devices(
    world: int,
    trace_index: int,
    offset_s: float,
    durations: A,
    cdf: A,
    idx: A,
    offset: A,
    cls: A,
    seed: A,
) -> None:
    """Fill ``idx``, ``offset``, ``cls``, ``seed`` (one row per device) as the reference draws
    them from the world, the ``PCG64`` whose ``pcg64_state`` is at ``world``
    (:func:`~offload_rl.cell.device_seeding.pcg64_head`; numpy's draws inline on it: a numba
    ``Generator`` argument is unboxed in Python, ~30 us a reset after a played episode):
    device 0 keeps ``trace_index`` and ``offset_s``; every other device draws its trace
    (``integers(0, len(durations))``) and its offset on it (``uniform(0.0, duration)``), every
    device its class (one uniform searched in ``cdf``) and its seed (``integers(0, 2**63 -
    1)``)."""
    head = _words_at(U(world))
    pcg = state_words(U(world))
    for i in range(idx.shape[0]):
        if i == 0:
            j = trace_index
            offset[i] = offset_s
        else:
            j = integers_below(head, pcg, durations.shape[0])
            offset[i] = 0.0 + durations[j] * next_double(pcg)  # numpy's low + (high - low) * u
        idx[i] = j
        cls[i] = np.searchsorted(cdf, next_double(pcg), side="right")
        seed[i] = integers_below(head, pcg, 2**63 - 1)


@kernel_jit.jit
def session_devices(world: int, n_devices: int, sessions: A, drawn: A, out: A) -> None:
    """``out[:] = world_generator.integers(n_devices, size=len(drawn))[sessions]`` (each
    session's device, then each request's), ``world`` as :func:`draw_devices` takes it: numpy
    fills the array with one ``integers(0, n_devices)`` draw after the other."""
    head = _words_at(U(world))
    pcg = state_words(U(world))
    for s in range(drawn.shape[0]):
        drawn[s] = integers_below(head, pcg, n_devices)
    for i in range(sessions.shape[0]):
        out[i] = drawn[sessions[i]]


@jit
def _hashmix(value: np.uint64, const: np.uint64, mult: np.uint64) -> tuple[np.uint64, np.uint64]:
    """numpy's ``hashmix`` on uint32 words held in uint64: (hashed value, next constant)."""
    value = (value ^ const) & MASK
    const = (const * mult) & MASK
    value = (value * const) & MASK
    return value ^ (value >> S16), const


@jit
def seed_states(seeds: A, out: A) -> None:
    """``out[j] = SeedSequence(seeds[j]).generate_state(4, np.uint64)`` (``seeds`` int64 >= 0):
    numpy's ``mix_entropy`` on a pool of 4 words, then ``generate_state``'s 8 words, paired
    little-endian into 4 uint64s."""
    pool = np.zeros(_POOL, dtype=np.uint64)
    for r in range(seeds.shape[0]):
        s = U(seeds[r])
        const = INIT_A
        for i in range(_POOL):
            word = s & MASK if i == 0 else (s >> S32 if i == 1 else ZERO)
            pool[i], const = _hashmix(word, const, MULT_A)
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    hashed, const = _hashmix(pool[src], const, MULT_A)
                    mixed = (MIX_L * pool[dst] - MIX_R * hashed) & MASK
                    pool[dst] = mixed ^ (mixed >> S16)
        const = INIT_B
        for w in range(_POOL):
            low, const = _hashmix(pool[(2 * w) % _POOL], const, MULT_B)
            high, const = _hashmix(pool[(2 * w + 1) % _POOL], const, MULT_B)
            out[r, w] = low | (high << S32)


@intrinsic
def _address_words(typingctx: object, address: types.Integer) -> tuple[object, object]:
    """The uint64 words at ``address`` (a uint64): a pointer numba indexes."""
    ptr = types.CPointer(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(ptr))

    return ptr(types.uint64), codegen


# called from kernels with the address alone (numba's intrinsic takes its typing context)
_words_at = cast(Callable[[np.uint64], Any], _address_words)


@kernel_jit.hot
def _mul64(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """The 128-bit product of two uint64s as (high, low) words, in 32-bit halves."""
    a0, a1, b0, b1 = a & MASK, a >> S32, b & MASK, b >> S32
    p00, p01, p10 = a0 * b0, a0 * b1, a1 * b0
    mid = (p00 >> S32) + (p01 & MASK) + (p10 & MASK)
    return a1 * b1 + (p01 >> S32) + (p10 >> S32) + (mid >> S32), a * b


@kernel_jit.hot
def _lcg(
    hi: np.uint64, lo: np.uint64, inc_hi: np.uint64, inc_lo: np.uint64
) -> tuple[np.uint64, np.uint64]:
    """PCG64's step: ``(state * MULT + inc) mod 2**128`` on (high, low) words."""
    top, low = _mul64(lo, PCG_LO)  # the low words' full product ...
    top += hi * PCG_LO + lo * PCG_HI  # ... plus the cross terms' low words, mod 2**128
    new_lo = low + inc_lo
    return top + inc_hi + (ONE if new_lo < low else ZERO), new_lo


@kernel_jit.jit
def reseed_generators(words: A, heads: A) -> None:
    """``reseed_pcg64(PCG64 j, words[j])`` for each row: ``heads[j]`` is the address of that
    generator's ``pcg64_state`` (``{pcg64_random_t *pcg_state; int has_uint32; uint32_t
    uinteger}``, whose ``pcg_state`` is ``{state, inc}``, 128-bit little-endian words; the
    layout :func:`~offload_rl.cell.device_seeding.pcg64_heads` checks): ``inc = stream << 1 |
    1``, ``state = (inc + seed) * MULT + inc`` (mod 2**128), no buffered 32-bit word."""
    for r in range(heads.shape[0]):
        head = _words_at(heads[r])
        pcg = _words_at(head[0])
        w0, w1, w2, w3 = words[r, 0], words[r, 1], words[r, 2], words[r, 3]
        inc_hi, inc_lo = (w2 << S1) | (w3 >> S63), (w3 << S1) | ONE
        lo = inc_lo + w1
        hi = inc_hi + w0 + (ONE if lo < inc_lo else ZERO)
        pcg[1], pcg[0] = _lcg(hi, lo, inc_hi, inc_lo)
        pcg[2] = inc_lo
        pcg[3] = inc_hi
        head[1] = ZERO  # has_uint32 = 0, uinteger = 0


@kernel_jit.hot
def state_words(head: np.uint64) -> Any:
    """The state words (``{state, inc}``, 128-bit little-endian) of the ``PCG64`` whose
    ``pcg64_state`` is at ``head`` (:func:`~offload_rl.cell.device_seeding.pcg64_heads`' layout),
    for :func:`next_double` and the samplers beside it, which advance them in place."""
    return _words_at(_words_at(head)[0])


@kernel_jit.hot
def _next64(pcg: A) -> np.uint64:
    """numpy's ``pcg64_next64`` on the state words ``pcg``: one step, then the XSL-RR output
    (the high and low words xor-ed, rotated right by the state's top 6 bits)."""
    hi, lo = _lcg(pcg[1], pcg[0], pcg[3], pcg[2])
    pcg[0] = lo
    pcg[1] = hi
    x = hi ^ lo
    rot = hi >> S58
    return (x >> rot) | (x << ((S64 - rot) & S63))


@kernel_jit.hot
def _next32(head: A, pcg: A) -> np.uint64:
    """numpy's ``pcg64_next32``: the buffered word (``uinteger``) where ``has_uint32``, else a
    draw's low half, its high half buffered (``head``: the ``pcg64_state``'s words, the
    second ``has_uint32`` then ``uinteger``)."""
    flags = head[1]
    if flags & MASK:
        head[1] = flags & ~MASK  # has_uint32 = 0; uinteger stays
        return flags >> S32
    x = _next64(pcg)
    head[1] = (x & ~MASK) | ONE
    return x & MASK


@kernel_jit.hot
def integers_below(head: A, pcg: A, high: int) -> np.int64:
    """numpy's ``Generator.integers(0, high)`` (int64, ``high`` >= 1) on the ``PCG64`` at
    ``head`` (:func:`state_words`: ``pcg``): ``random_bounded_uint64_fill`` for one value of
    range ``rng = high - 1``: none drawn for 0; Lemire's rejection on a 32-bit word
    (``next_uint32``, the buffered one first) up to ``2**32 - 2``, the word itself at ``2**32 -
    1``, else on a 64-bit draw with the 128-bit product. (int64 throughout: numba unifies
    int64 and uint64 into float64.)"""
    rng = U(high - 1)
    if rng == ZERO:
        return np.int64(0)
    excl = rng + ONE
    if rng <= MASK:
        if rng == MASK:
            return np.int64(_next32(head, pcg))
        m = _next32(head, pcg) * excl
        if m & MASK < excl:
            threshold = (MASK - rng) % excl
            while m & MASK < threshold:
                m = _next32(head, pcg) * excl
        return np.int64(m >> S32)
    hi, lo = _mul64(_next64(pcg), excl)
    if lo < excl:
        threshold = (~rng) % excl  # UINT64_MAX - rng
        while lo < threshold:
            hi, lo = _mul64(_next64(pcg), excl)
    return np.int64(hi)


@kernel_jit.hot
def next_double(pcg: A) -> float:
    """numpy's ``pcg64_next_double``: the top 53 bits of a draw over 2**53."""
    return float(_next64(pcg) >> S11) * (1.0 / 9007199254740992.0)


@kernel_jit.hot
def _standard_normal(pcg: A) -> float:
    """numpy's ``random_standard_normal`` (the ziggurat of ``distributions.c``, its tables
    as numba has them) on the state words ``pcg``."""
    while True:
        r = _next64(pcg)
        idx = int(r & U(0xFF))
        r >>= U(8)
        rabs = (r >> ONE) & U(0x000FFFFFFFFFFFFF)
        x = float(rabs) * WI[idx]
        if r & ONE:
            x = -x
        if rabs < KI[idx]:
            return x
        if idx == 0:
            while True:
                xx = -NOR_INV_R * np.log1p(-next_double(pcg))
                yy = -np.log1p(-next_double(pcg))
                if yy + yy > xx * xx:
                    return -(NOR_R + xx) if (rabs >> U(8)) & ONE else NOR_R + xx
        elif (FI[idx - 1] - FI[idx]) * next_double(pcg) + FI[idx] < np.exp(-0.5 * x * x):
            return x


@kernel_jit.hot
def standard_exponential(pcg: A) -> float:
    """numpy's ``random_standard_exponential`` (the ziggurat of ``distributions.c``, its
    tables as numba has them: numba's ``Generator.standard_exponential``, line for line) on
    the state words ``pcg``."""
    while True:
        r = _next64(pcg) >> S3
        idx = int(r & U(0xFF))
        r >>= U(8)
        x = float(r) * WE[idx]
        if r < KE[idx]:
            return x
        if idx == 0:
            return EXP_R - np.log1p(-next_double(pcg))
        if (FE[idx - 1] - FE[idx]) * next_double(pcg) + FE[idx] < np.exp(-x):
            return x


@kernel_jit.jit
def standard_normals(heads: A, out: A) -> None:
    """``out[r] = generator r's standard_normal(out.shape[1])``, generator ``r``'s
    ``pcg64_state`` at ``heads[r]`` (as :func:`reseed_generators` reads it), advanced as those
    draws advance it (``next_uint64`` leaves the buffered 32-bit word alone)."""
    for r in range(heads.shape[0]):
        pcg = state_words(heads[r])
        for i in range(out.shape[1]):
            out[r, i] = _standard_normal(pcg)


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels for the types the simulator passes."""
    n = 2
    rng = np.random.default_rng(0)  # alive while its state's address is in use
    world = pcg64_head(rng)
    seeds = np.zeros(n, dtype=np.int64)
    if world is not None:  # else the simulator draws its devices in Python
        draw_devices(
            world,
            0,
            0.0,
            np.ones(1, dtype=np.float64),
            np.ones(1, dtype=np.float64),
            np.empty(n, dtype=np.int64),
            np.empty(n, dtype=np.float64),
            np.empty(n, dtype=np.int64),
            seeds,
        )
        ints = np.zeros(n, dtype=np.int64)
        session_devices(world, 3, ints, np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64))
    seed_states(seeds, np.empty((n, _POOL), dtype=np.uint64))
    no_heads = np.empty(0, dtype=np.uint64)
    reseed_generators(np.empty((0, _POOL), dtype=np.uint64), no_heads)
    standard_normals(no_heads, np.empty((0, 1), dtype=np.float64))
