"""A cell's devices seeded in one pass: their generators and their samples before t = 0.

Each reset builds N phones, each with its own generator (``default_rng(seed)``, the seed drawn
from the episode's world) and ``H`` throughput samples of its link before the episode
(:meth:`~offload_rl.cell.device.Device.seed_samples`). Done per device that is ~15 us for the
generator (``SeedSequence``'s output hash runs in Python under ``np.errstate``) and ~20 us for
the samples (``np.interp``, ``np.diff`` and small arrays): most of a reset at N = 32. Here both
are done for all devices at once, bit for bit as the per-device code:

* :func:`seed_sequence_states`: ``SeedSequence(seed).generate_state(4, np.uint64)`` for an
  array of seeds (numpy's hash is uint32 arithmetic: vectorised over the devices);
* :func:`device_generators`: ``Generator(PCG64(...))`` seeded from those words, which is what
  ``default_rng(seed)`` does (the words reach ``PCG64`` through an :class:`ISeedSequence` that
  hands them over, so the streams are ``default_rng(seed)``'s;
  ``tests/offload_rl/cell/test_cell_reset_seeding.py`` checks the states);
* :func:`seeded_samples`: :func:`~offload_rl.device_view.measured_throughput`'s operations,
  element for element, on an ``(N, H + 1)`` grid (one ``np.interp`` per distinct trace: it is
  elementwise), then each device's noise from its own generator, in device order.

The generators' ``seed_seq`` is the hand-over object, not a ``SeedSequence``: nothing in the
cell spawns from a device's generator.
"""

from __future__ import annotations

import ctypes
import functools
import operator
from collections.abc import Sequence
from types import ModuleType
from typing import Any, cast

import numpy as np
from numpy.random.bit_generator import ISeedSequence

from offload_rl.cell import compiled_decode as cd
from offload_rl.device_view import _interp_points
from offload_rl.traces import BYTES_PER_MBIT, Trace

# numpy's SeedSequence constants (numpy/random/bit_generator.pyx), pool size 4
_POOL = 4
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_L = np.uint32(0xCA01F9DD)
_MIX_R = np.uint32(0x4973F715)
_MASK32 = 0xFFFFFFFF


def _hash_constants(init: int, mult: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The constants of ``n`` successive ``hashmix`` calls (they do not depend on the data):
    each xors the running constant, then multiplies by it after ``constant *= mult``. As
    ``(n, 1)`` uint32 columns, to broadcast over the devices."""
    xors, mults = [], []
    c = init
    for _ in range(n):
        xors.append(c)
        c = (c * mult) & _MASK32
        mults.append(c)
    return (
        np.array(xors, dtype=np.uint32).reshape(n, 1),
        np.array(mults, dtype=np.uint32).reshape(n, 1),
    )


# mix_entropy: 4 words of the pool, then for each source word 3 cross mixes
_MIX_XOR, _MIX_MULT = _hash_constants(_INIT_A, _MULT_A, _POOL + _POOL * (_POOL - 1))
# generate_state(4, np.uint64): 8 uint32 output words, cycling over the pool
_OUT_XOR, _OUT_MULT = _hash_constants(_INIT_B, _MULT_B, 2 * _POOL)
_SHIFT = np.uint32(16)
_OTHERS = [[d for d in range(_POOL) if d != src] for src in range(_POOL)]


def _hashmix(value: np.ndarray, xor: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """numpy's ``hashmix`` (rows: successive calls): xor, multiply, xor-shift, in uint32."""
    v: np.ndarray = np.multiply(np.bitwise_xor(value, xor), mult)
    return np.bitwise_xor(v, np.right_shift(v, _SHIFT))


def seed_sequence_states(seeds: np.ndarray) -> np.ndarray:
    """``SeedSequence(s).generate_state(4, np.uint64)`` for each non-negative int64 seed ``s``
    (rows). A seed below 2**32 is one entropy word and the pool is padded with ``hashmix(0)``:
    the same as a high word of 0, so one formula covers both. The cross mixes of one source
    word read it unchanged, so its three run as one ``(3, N)`` operation."""
    s = np.asarray(seeds, dtype=np.int64).astype(np.uint64)
    words = np.zeros((_POOL, len(s)), dtype=np.uint32)
    words[0] = s & np.uint64(_MASK32)
    words[1] = s >> np.uint64(32)
    pool = _hashmix(words, _MIX_XOR[:_POOL], _MIX_MULT[:_POOL])
    for src in range(_POOL):
        k = _POOL + 3 * src
        hashed = _hashmix(pool[src], _MIX_XOR[k : k + 3], _MIX_MULT[k : k + 3])
        dst = _OTHERS[src]
        mixed: np.ndarray = _MIX_L * pool[dst] - _MIX_R * hashed  # mix(pool[dst], hashed)
        pool[dst] = np.bitwise_xor(mixed, np.right_shift(mixed, _SHIFT))
    out = _hashmix(np.concatenate([pool, pool]), _OUT_XOR, _OUT_MULT)
    return np.ascontiguousarray(out.T).astype("<u4").view("<u8").astype(np.uint64)


class _StateWords(ISeedSequence):
    """Hands ``PCG64`` the seed words :func:`seed_sequence_states` computed (its seeding asks
    its seed sequence for exactly ``generate_state(4, np.uint64)``)."""

    __slots__ = ("words",)

    def __init__(self, words: np.ndarray) -> None:
        self.words = words

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        if n_words == _POOL and dtype is np.uint64:  # what PCG64 asks (np.dtype: ~0.2 us)
            return self.words
        if n_words != _POOL or np.dtype(dtype) != np.dtype(np.uint64):
            raise ValueError("_StateWords holds PCG64's 4 uint64 seed words only")
        return self.words


def device_generators(seeds: np.ndarray) -> list[np.random.Generator]:
    """``[np.random.default_rng(int(s)) for s in seeds]``, the same streams, ~10x cheaper."""
    return generators_from_states(seed_sequence_states(seeds))


def generators_from_states(states: np.ndarray) -> list[np.random.Generator]:
    """One ``Generator(PCG64)`` per row of :func:`seed_sequence_states` (or its compiled twin,
    :func:`offload_rl.cell.compiled_reset.seed_states`)."""
    # PCG64 takes any ISeedSequence (numpy's stubs name only SeedSequence)
    return [np.random.Generator(np.random.PCG64(cast(Any, _StateWords(row)))) for row in states]


class DeviceGenerators:
    """A simulator's device generators: made at its first compiled reset (and when its number
    of devices changes), then seeded again in place at each reset
    (:func:`~offload_rl.cell.compiled_reset.reseed_generators`, the state ``default_rng(seed)``
    starts in). Why: making 32 ``Generator(PCG64)`` objects was ~0.1 ms of a reset after a
    played episode. The previous episode's devices hold the same objects: a generator handed
    out here belongs to this simulator's current devices only.

    A copy starts empty (``copy.deepcopy``, the oracle's fork of the simulator; pickling):
    the copied devices keep their own copies of the generators, and the copy's next reset
    makes its own, so nothing reseeds a generator of another simulator."""

    __slots__ = ("generators", "heads", "words")

    def __init__(self) -> None:
        self.generators: list[np.random.Generator] = []
        self.words = np.empty((0, _POOL), dtype=np.uint64)  # their seed sequences' words
        self.heads: np.ndarray | None = None  # pcg64_heads(generators), None: not reusable

    def __deepcopy__(self, memo: dict[int, object]) -> DeviceGenerators:
        return DeviceGenerators()

    def __reduce__(self) -> tuple[type[DeviceGenerators], tuple[()]]:
        return DeviceGenerators, ()

    def seeded(self, kernels: ModuleType, seeds: np.ndarray) -> list[np.random.Generator]:
        """:func:`device_generators` of ``seeds`` (int64 >= 0) with ``kernels``
        (:mod:`~offload_rl.cell.compiled_reset`): the same streams. The generators keep
        ``words``' rows as their seed sequences' words, rewritten here."""
        n = len(seeds)
        if self.heads is not None and len(self.heads) == n:
            kernels.seed_states(seeds, self.words)
            kernels.reseed_generators(self.words, self.heads)
            return self.generators
        words = np.empty((n, _POOL), dtype=np.uint64)
        kernels.seed_states(seeds, words)
        self.generators = generators_from_states(words)
        self.words, self.heads = words, pcg64_heads(self.generators)
        return self.generators

    def standard_normals(self, n_draws: int) -> np.ndarray:
        """Row ``j``: ``generators[j].standard_normal(n_draws)``, drawn in one compiled call
        (:func:`~offload_rl.cell.compiled_reset.standard_normals`, ~0.1 us a draw instead of
        ~1.5 us a generator) where the generators are reusable, else one call each."""
        if self.heads is None or not cd.AVAILABLE:
            return _standard_normals(self.generators, n_draws)
        out = np.empty((len(self.heads), n_draws), dtype=np.float64)
        cd.kernels("compiled_reset").standard_normals(self.heads, out)
        return out


_M64 = (1 << 64) - 1


# CPython's PyCapsule_GetPointer, typed here (not through ctypes.pythonapi's shared object)
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi)
)


def _pcg64_state_address(bit_generator: np.random.BitGenerator) -> int:
    """The address of the bit generator's ``pcg64_state``: its ``bitgen_t``'s first field,
    read through its capsule (``bit_generator.ctypes`` builds ctypes function objects:
    ~10 us a generator)."""
    bitgen = _capsule_pointer(bit_generator.capsule, b"BitGenerator")
    return int(ctypes.c_void_p.from_address(bitgen).value or 0)


@functools.cache
def _pcg64_layout_holds() -> bool:
    """Whether numpy's ``PCG64`` keeps its state as ``reseed_generators`` writes it (a 64-bit
    pointer to the 128-bit state and increment, low words first, then ``has_uint32`` and
    ``uinteger``): checked once against ``.state`` on a generator with a buffered word."""
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    g = np.random.default_rng(20261207)
    g.integers(7, dtype=np.int32)  # buffers the draw's other 32-bit half
    st = g.bit_generator.state
    head = _pcg64_state_address(g.bit_generator)
    words = list((ctypes.c_uint64 * 4).from_address(int(ctypes.c_uint64.from_address(head).value)))
    flags = list((ctypes.c_uint32 * 2).from_address(head + 8))
    s, inc = st["state"]["state"], st["state"]["inc"]
    want = [s & _M64, s >> 64, inc & _M64, inc >> 64]
    return words == want and flags == [st["has_uint32"], st["uinteger"]] and flags[0] == 1


# the bit generator pcg64_head read last and its state's address (~2 us to read through its
# capsule, four times a reset on the same world); held, so that no other object takes its id
_last_head: list[tuple[np.random.BitGenerator, int]] = []


def pcg64_head(generator: np.random.Generator) -> int | None:
    """The generator's ``pcg64_state`` address, for the compiled samplers that draw on its state
    words (:func:`~offload_rl.cell.compiled_reset.state_words`); None where it is not a
    ``PCG64`` or numpy's layout is not the one they read. The address is the generator's
    while it lives (its state is rewritten in place, never moved)."""
    bit_generator = generator.bit_generator
    if type(bit_generator) is not np.random.PCG64 or not _pcg64_layout_holds():
        return None
    if _last_head and _last_head[0][0] is bit_generator:
        return _last_head[0][1]
    head = _pcg64_state_address(bit_generator)
    _last_head[:] = [(bit_generator, head)]
    return head


def pcg64_heads(generators: Sequence[np.random.Generator]) -> np.ndarray | None:
    """Each generator's ``pcg64_state`` address (uint64), for
    :func:`~offload_rl.cell.compiled_reset.reseed_generators`; None where one is not a
    ``PCG64`` or numpy's layout is not the one that kernel writes."""
    if not _pcg64_layout_holds() or any(
        type(g.bit_generator) is not np.random.PCG64 for g in generators
    ):
        return None
    return np.array([_pcg64_state_address(g.bit_generator) for g in generators], dtype=np.uint64)


def world_generator(seed: int, reuse: np.random.Generator | None = None) -> np.random.Generator:
    """``np.random.default_rng(seed)``, the same stream: in compiled mode, for a seed in
    ``[0, 2**63)``, seeded from the compiled :func:`~offload_rl.cell.compiled_reset.seed_states`
    (~2 us instead of ``SeedSequence``'s ~7 us, once per EdgeCell-v0 reset: its world).

    ``reuse``: a generator this function returned before (the previous episode's world, no
    longer drawn from), then seeded again in place and returned (:func:`reseed_pcg64`). Why:
    a numba kernel that takes a generator reads its bit generator's ctypes interface, which
    numpy builds at the first read of each bit generator (~25 us of the first kernel call on
    a new one, per reset); a reseeded one keeps it."""
    if not (cd.AVAILABLE and 0 <= seed < 2**63):
        return np.random.default_rng(seed)
    try:
        kernels = cd.kernels("compiled_reset")
    except cd.COMPILE_ERRORS as err:
        cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return np.random.default_rng(seed)
    states = np.empty((1, _POOL), dtype=np.uint64)
    kernels.seed_states(np.array([seed], dtype=np.int64), states)
    if reuse is not None and type(reuse.bit_generator) is np.random.PCG64:
        reseed_pcg64(reuse.bit_generator, states[0])
        return reuse
    return generators_from_states(states)[0]


# PCG64's 128-bit multiplier (numpy's pcg64.h, PCG_DEFAULT_MULTIPLIER_128)
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645
_MASK128 = (1 << 128) - 1


def reseed_pcg64(bit_generator: np.random.PCG64, words: np.ndarray) -> None:
    """Put ``bit_generator`` in the state ``PCG64`` seeded with ``words`` (its seed
    sequence's ``generate_state(4, np.uint64)``) starts in: numpy's ``pcg64_set_seed``, the
    128-bit seed ``words[0:2]`` and stream ``words[2:4]`` (high word first), then
    ``pcg_setseq_128_srandom_r`` (state 0, one LCG step, plus the seed, one more step), no
    buffered 32-bit word (``tests/offload_rl/cell/test_cell_reset_samples.py`` compares the
    state with ``default_rng``'s)."""
    w0, w1, w2, w3 = words.tolist()
    inc = ((((w2 << 64) | w3) << 1) | 1) & _MASK128
    state = (inc + ((w0 << 64) | w1)) & _MASK128  # the step from 0 gives inc
    state = (state * _PCG_MULT + inc) & _MASK128
    bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": state, "inc": inc},
        "has_uint32": 0,
        "uinteger": 0,
    }


def seeded_samples(
    traces: Sequence[Trace],
    origins_s: Sequence[float],
    history: int,
    period_s: float,
    noise_sd: float,
    rngs: Sequence[np.random.Generator],
) -> np.ndarray:
    """Row ``j``: ``measured_throughput(traces[j], origins_s[j], -history, history, period_s,
    noise_sd, rngs[j])``, bit for bit (the same operations on the same values)."""
    group: dict[int, int] = {}  # id(trace) -> its index among the distinct traces
    distinct: list[Trace] = []
    of = []
    for tr in traces:
        g = group.get(id(tr))
        if g is None:
            g = group[id(tr)] = len(distinct)
            distinct.append(tr)
        of.append(g)
    key = np.array(of, dtype=np.int64)
    duration = np.array([tr.duration_s for tr in distinct], dtype=np.float64)[key][:, None]
    total = np.array([tr.total_bytes for tr in distinct], dtype=np.float64)[key][:, None]
    steps = (np.arange(history + 1) - history) * period_s
    times = np.asarray(origins_s, dtype=np.float64)[:, None] + steps
    cycles = np.floor(times / duration)
    within = times - cycles * duration
    # one np.interp per distinct trace, on its devices' rows made contiguous (slices, not
    # index lists: numpy turns a list index into an array at every use)
    order = np.argsort(key, kind="stable")
    rows = within[order]
    ends = np.cumsum(np.bincount(key, minlength=len(distinct))).tolist()
    start = 0
    for tr, end in zip(distinct, ends, strict=True):
        grid, cum_bytes = _interp_points(tr)
        rows[start:end] = np.interp(rows[start:end], grid, cum_bytes)
        start = end
    filled = np.empty_like(within)
    filled[order] = rows
    values = np.diff(cycles * total + filled, axis=1) / (BYTES_PER_MBIT * period_s)
    return _with_noise(values, history, noise_sd, rngs)


def _standard_normals(rngs: Sequence[np.random.Generator], n_draws: int) -> np.ndarray:
    """Row ``j``: ``rngs[j].standard_normal(n_draws)``, each written into its row."""
    noise = np.empty((len(rngs), n_draws), dtype=np.float64)
    for row, rng in zip(noise, rngs, strict=True):
        rng.standard_normal(out=row)
    return noise


def _with_noise(
    values: np.ndarray,
    history: int,
    noise_sd: float,
    rngs: Sequence[np.random.Generator] | DeviceGenerators,
) -> np.ndarray:
    """``values`` (one row per device) times each device's lognormal measurement noise, drawn
    from its own generator (``measured_throughput``'s ``np.exp(rng.normal(...))``)."""
    n = len(values)
    if noise_sd > 0 and n:
        # rng.normal(0.0, sd, size) is 0.0 + sd * standard_normal(size), element by element
        # (numpy's definition): the same draws, and exp of the same values (adding 0.0 only
        # turns -0.0 into 0.0, and exp ignores the zero's sign), each device's written into
        # its row, without normal's argument checks and the rows' arrays (~30% less;
        # tests/offload_rl/cell/test_cell_reset_seeding.py)
        if isinstance(rngs, DeviceGenerators):
            noise = rngs.standard_normals(history)
        else:
            noise = _standard_normals(rngs, history)
        values *= np.exp(noise_sd * noise)
    return values


class TraceTables:
    """The uplinks' arrays in the layout of
    :func:`~offload_rl.cell.compiled_samples.throughput_rows`: each trace's cycle and bytes per
    cycle, and its :func:`_interp_points` tables laid end to end (``start[k]`` to
    ``start[k + 1]``). Built once per list of traces (a process holds one per scenario); never
    written after, so a copy is itself (a simulator keeps its uplinks' and the oracle's forks
    deep-copy it: ~3 MB of tables at the cell's 24 traces)."""

    __slots__ = ("cum", "duration", "grid", "start", "total", "traces")

    def __deepcopy__(self, memo: dict[int, object]) -> TraceTables:
        return self

    def __init__(self, traces: Sequence[Trace]) -> None:
        self.traces = tuple(traces)
        points = [_interp_points(tr) for tr in self.traces]
        self.duration = np.array([tr.duration_s for tr in self.traces], dtype=np.float64)
        self.total = np.array([tr.total_bytes for tr in self.traces], dtype=np.float64)
        self.grid = np.concatenate([g for g, _ in points]).astype(np.float64)
        self.cum = np.concatenate([c for _, c in points]).astype(np.float64)
        self.start = np.zeros(len(points) + 1, dtype=np.int64)
        self.start[1:] = np.cumsum([len(g) for g, _ in points])


_TABLES: dict[tuple[int, ...], TraceTables] = {}


def trace_tables(traces: Sequence[Trace]) -> TraceTables:
    """:class:`TraceTables` of ``traces``, built at the first call for those trace objects."""
    key = tuple(map(id, traces))
    hit = _TABLES.get(key)
    # the same objects (ids of live objects are unique), checked in C (~0.3 us for 24)
    if hit is not None and all(map(operator.is_, hit.traces, traces)):
        return hit
    if len(_TABLES) >= 16:  # traces made on the fly (tests): keep the cache small
        _TABLES.clear()
    tables = _TABLES[key] = TraceTables(traces)
    return tables


def seeded_samples_compiled(
    traces: Sequence[Trace] | TraceTables,
    trace_index: np.ndarray,
    origins_s: np.ndarray,
    history: int,
    period_s: float,
    noise_sd: float,
    rngs: Sequence[np.random.Generator] | DeviceGenerators,
    out: np.ndarray | None = None,
) -> np.ndarray | None:
    """:func:`seeded_samples` for the devices on ``traces[trace_index[j]]`` (int64) from
    ``origins_s[j]`` (float64) (``traces``: the list, or its :func:`trace_tables`), the rows
    made by the compiled :func:`~offload_rl.cell.compiled_samples.throughput_rows`, the noise
    as :func:`seeded_samples` draws it (``rngs``: the devices' generators, or the pool that
    made them: its :meth:`DeviceGenerators.standard_normals`). ``out``: C-contiguous float64
    rows, one per device, at least ``history`` wide (the cell's sample values), written in
    their first ``history`` columns: the result is then that view. None in Python mode (or if
    numba failed)."""
    if not cd.AVAILABLE:
        return None
    try:
        throughput_rows = cd.kernels("compiled_samples").throughput_rows
    except cd.COMPILE_ERRORS as err:
        cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None
    t = traces if isinstance(traces, TraceTables) else trace_tables(traces)
    if out is None:
        out = np.empty((len(trace_index), history), dtype=np.float64)
    throughput_rows(
        trace_index, origins_s, history, period_s, t.duration, t.total, t.grid, t.cum, t.start,
        out,
    )  # fmt: skip
    return _with_noise(out[:, :history], history, noise_sd, rngs)
