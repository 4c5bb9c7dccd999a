"""The cell's per-device reset draws in machine code (numba), one call per reset.

:meth:`CellSimulator._draw_devices <offload_rl.cell.simulator.CellSimulator._draw_devices>` is
the reference: for each device the episode's world draws a trace, an offset on it, a class and
the device's seed, four calls of ``world``'s methods (~2.5 us each in Python, mostly argument
handling). :func:`draw_devices` makes the same calls on the same generator (numba's
``Generator`` methods are numpy's algorithms on the same bit generator state, buffered 32-bit
words included), so the values and the world's state after it are the reference's
(``tests/offload_rl/cell/test_cell_reset_compiled.py``). :func:`seed_states` is
``SeedSequence(seed).generate_state(4, np.uint64)`` per seed
(:func:`~offload_rl.cell.device_seeding.seed_sequence_states` in numpy is its reference), in
uint64 arithmetic masked to numpy's uint32 words.

Importing this module imports numba; the simulator imports it only in compiled mode.
"""

from __future__ import annotations

import numba
import numpy as np

from offload_rl.cell.device_seeding import _INIT_A, _INIT_B, _MASK32, _MULT_A, _MULT_B, _POOL

A = np.ndarray
jit = numba.njit(cache=True, nogil=True)  # fastmath off: IEEE order, bit-identical
# numpy's SeedSequence constants as uint64 (numba mixes a Python int and a uint64 into float64)
U = np.uint64
INIT_A, MULT_A, INIT_B, MULT_B = U(_INIT_A), U(_MULT_A), U(_INIT_B), U(_MULT_B)
MIX_L, MIX_R, MASK, S16, S32 = U(0xCA01F9DD), U(0x4973F715), U(_MASK32), U(16), U(32)
ZERO = U(0)


@jit
def draw_devices(
    world: np.random.Generator,
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
    them: device 0 keeps ``trace_index`` and ``offset_s``; every device draws its class (one
    uniform searched in ``cdf``) and its seed."""
    n_ups = durations.shape[0]
    for i in range(idx.shape[0]):
        if i == 0:
            j = trace_index
            offset[i] = offset_s
        else:
            j = int(world.integers(0, n_ups))
            offset[i] = world.uniform(0.0, durations[j])
        idx[i] = j
        cls[i] = np.searchsorted(cdf, world.random(), side="right")
        seed[i] = world.integers(0, 2**63 - 1)


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


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels for the types the simulator passes."""
    n = 2
    world = np.random.default_rng(0)
    idx = np.empty(n, dtype=np.int64)
    seeds = np.empty(n, dtype=np.int64)
    draw_devices(
        world,
        0,
        0.0,
        np.ones(1, dtype=np.float64),
        np.ones(1, dtype=np.float64),
        idx,
        np.empty(n, dtype=np.float64),
        np.empty(n, dtype=np.int64),
        seeds,
    )
    seed_states(seeds, np.empty((n, _POOL), dtype=np.uint64))
