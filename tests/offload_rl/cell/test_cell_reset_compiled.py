"""The compiled reset draws are, value for value and state for state, the Python ones.

:func:`offload_rl.cell.compiled_reset.draw_devices` makes the world's per-device draws (trace,
offset, class, seed) in one numba call; ``CellSimulator._draw_devices`` is the reference. For
any world state (a buffered 32-bit word or not), pinned trace and offset, the two must give the
same devices and leave the world in the same state, or every later draw of the episode moves.
:func:`~offload_rl.cell.compiled_reset.seed_states` must be ``SeedSequence``'s output.

A simulator makes its device generators once (:class:`~offload_rl.cell.device_seeding.
DeviceGenerators`) and :func:`~offload_rl.cell.compiled_reset.reseed_generators` puts them in
``default_rng(seed)``'s state at each reset, through their state's address;
:func:`~offload_rl.cell.compiled_reset.standard_normals` draws numpy's ``standard_normal`` from
them there. Both must leave the generators exactly where numpy would, and a fork (deepcopy) of
the simulator must keep generators of its own.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from types import ModuleType
from typing import cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.cell_oracle import fork_simulator
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.device_seeding import DeviceGenerators, device_generators, pcg64_heads

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

SIMS = {n: EdgeCellEnv("cell", n_devices=n).sim for n in (1, 5, 40)}


def _kernels() -> ModuleType:
    return cd.kernels("compiled_reset")


@settings(max_examples=150, deadline=None)
@given(
    n=st.sampled_from(sorted(SIMS)),
    seed=st.integers(0, 2**32 - 1),
    skew=st.integers(0, 3),
    trace_index=st.integers(0, 10_000),
    offset=st.floats(0.0, 1e4),
)
def test_draws_are_the_python_draws(
    n: int, seed: int, skew: int, trace_index: int, offset: float
) -> None:
    sim = SIMS[n]
    trace_index %= len(sim.resolved.uplinks)
    ours, ref = np.random.default_rng(seed), np.random.default_rng(seed)
    for g in (ours, ref):
        g.integers(5, size=skew, dtype=np.int32)  # an odd count leaves a buffered word
    got = sim._draw_devices_compiled(ours, trace_index, offset)
    assert got is not None
    want = sim._draw_devices(ref, trace_index, offset)
    assert [a.tolist() for a in got[:3]] == list(want[:3])
    assert [g.bit_generator.state for g in got[3].generators] == [
        g.bit_generator.state for g in want[3]
    ]
    assert ours.bit_generator.state == ref.bit_generator.state
    assert ours.random() == ref.random()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.integers(0, 2**63 - 2) | st.integers(0, 2**32 + 5) | st.sampled_from([0, 2**32 - 1]),
        max_size=10,
    )
)
def test_seed_states_are_seed_sequences(values: list[int]) -> None:
    seeds = np.array(values, dtype=np.int64)
    out = np.empty((len(values), 4), dtype=np.uint64)
    _kernels().seed_states(seeds, out)
    for row, s in zip(out, values, strict=True):
        assert np.array_equal(row, np.random.SeedSequence(s).generate_state(4, np.uint64))


SEEDS = st.integers(0, 2**63 - 2) | st.integers(0, 2**32 + 5) | st.sampled_from([0, 2**32 - 1])


def _advanced(seeds: list[int], skew: int) -> list[np.random.Generator]:
    """Generators some way into their streams, every other one with a buffered 32-bit word."""
    gens = device_generators(np.array(seeds, dtype=np.int64))
    for j, g in enumerate(gens):
        g.random(skew + j % 3)
        if j % 2:
            g.integers(7, dtype=np.int32)
    return gens


def test_numpys_layout_is_the_one_the_kernels_write() -> None:
    """Here (numpy's PCG64 on a 64-bit machine) the generators are reusable: the tests below
    run the kernels, not the fallback."""
    assert pcg64_heads(device_generators(np.arange(3, dtype=np.int64))) is not None
    assert pcg64_heads([np.random.Generator(np.random.MT19937(1))]) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(SEEDS, min_size=1, max_size=8), st.lists(SEEDS, min_size=8, max_size=8),
       st.integers(0, 5))  # fmt: skip
def test_reseeded_generators_are_default_rngs(
    before: list[int], after: list[int], skew: int
) -> None:
    gens = _advanced(before, skew)
    heads = pcg64_heads(gens)
    assert heads is not None
    seeds = np.array(after[: len(before)], dtype=np.int64)
    words = np.empty((len(gens), 4), dtype=np.uint64)
    _kernels().seed_states(seeds, words)
    _kernels().reseed_generators(words, heads)
    for g, s in zip(gens, seeds.tolist(), strict=True):
        ref = np.random.default_rng(s)
        assert g.bit_generator.state == ref.bit_generator.state
        assert g.integers(7) == ref.integers(7)  # the buffered 32-bit path
        assert g.standard_normal(3).tolist() == ref.standard_normal(3).tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(SEEDS, min_size=0, max_size=8), st.integers(0, 5), st.integers(0, 40))
def test_standard_normals_are_numpys(seeds: list[int], skew: int, n_draws: int) -> None:
    gens = _advanced(seeds, skew)
    refs = copy.deepcopy(gens)
    heads = pcg64_heads(gens)
    assert heads is not None
    out = np.empty((len(gens), n_draws), dtype=np.float64)
    _kernels().standard_normals(heads, out)
    for row, g, ref in zip(out, gens, refs, strict=True):
        assert row.tolist() == ref.standard_normal(n_draws).tolist()
        assert g.bit_generator.state == ref.bit_generator.state  # buffered word kept
        assert g.integers(2**40) == ref.integers(2**40)


def test_many_standard_normals_are_numpys() -> None:
    """2 x 10^5 draws: the ziggurat's rare paths (the wedges, ~1% of draws, and the tail,
    idx 0, a few dozen times) are taken too."""
    gens = device_generators(np.arange(200, dtype=np.int64) * 1_000_003 + 11)
    refs = copy.deepcopy(gens)
    heads = pcg64_heads(gens)
    assert heads is not None
    out = np.empty((200, 1000), dtype=np.float64)
    _kernels().standard_normals(heads, out)
    want = np.array([r.standard_normal(1000) for r in refs])
    assert np.array_equal(out, want)
    assert np.sum(np.abs(want) > 3.654152885361009) > 0  # beyond the ziggurat's base: tail
    assert [g.bit_generator.state for g in gens] == [r.bit_generator.state for r in refs]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2**63 - 2), min_size=3, max_size=3), min_size=1,
                max_size=4), st.integers(0, 12))  # fmt: skip
def test_a_pool_reseeds_the_same_generators(episodes: list[list[int]], n_draws: int) -> None:
    """:meth:`DeviceGenerators.seeded` per episode: ``device_generators``' streams, in the
    same objects from the second episode on (with their seed words), and its
    :meth:`~DeviceGenerators.standard_normals` each generator's own draws."""
    pool = DeviceGenerators()
    first: list[np.random.Generator] | None = None
    for seeds in episodes:
        gens = pool.seeded(_kernels(), np.array(seeds, dtype=np.int64))
        refs = device_generators(np.array(seeds, dtype=np.int64))
        first = first or list(gens)
        assert all(a is b for a, b in zip(gens, first, strict=True))
        for g, r in zip(gens, refs, strict=True):
            assert g.bit_generator.state == r.bit_generator.state
            words = g.bit_generator.seed_seq.generate_state(4, np.uint64)
            assert np.array_equal(words, r.bit_generator.seed_seq.generate_state(4, np.uint64))
        drawn = pool.standard_normals(n_draws)
        assert drawn.tolist() == [r.standard_normal(n_draws).tolist() for r in refs]
        gens[0].integers(7, dtype=np.int32)  # the episode leaves a buffered word
    assert copy.deepcopy(pool).generators == []


def _device_states(sim: object) -> list[object]:
    return [d.rng.bit_generator.state for d in sim.devices]  # type: ignore[attr-defined]


def test_a_fork_keeps_its_own_generators() -> None:
    """The oracle forks the simulator with deepcopy (``cell_oracle.fork_simulator``): a reset
    of the original (reseeding its generators in place) must not move the fork's, nor a reset
    of the fork the original's; the fork's resets give the original's episodes."""
    env = EdgeCellEnv("cell", n_devices=5)
    env.reset(seed=3)
    env.reset(seed=4)  # the pool's generators, reseeded once
    for _ in range(20):
        valid = np.flatnonzero(env.action_masks())
        env.step(int(valid[0]))
    sim = env.sim
    forked = fork_simulator(sim)
    kept = _device_states(forked)
    assert kept == _device_states(sim)
    world = np.random.default_rng(5)
    sim.reset(world, 8, 0, 1.5)
    assert _device_states(forked) == kept
    moved = _device_states(sim)
    assert moved != kept
    forked.reset(np.random.default_rng(6), 8, 1, 2.5)
    assert _device_states(sim) == moved
    assert not {id(d.rng) for d in forked.devices} & {id(d.rng) for d in sim.devices}
    forked.reset(np.random.default_rng(5), 8, 0, 1.5)
    assert _device_states(forked) == moved


@functools.cache
def _integer_draws() -> Callable[[int, int, np.ndarray], None]:
    """A kernel filling ``out`` with ``integers_below(high)`` draws from the PCG64 at
    ``world`` (compiled once)."""
    import numba

    cr = _kernels()

    @numba.njit
    def draws(world: int, high: int, out: np.ndarray) -> None:
        head = cr._words_at(np.uint64(world))
        pcg = cr.state_words(np.uint64(world))
        for i in range(out.shape[0]):
            out[i] = cr.integers_below(head, pcg, high)

    return cast(Callable[[int, int, np.ndarray], None], draws)


@settings(max_examples=200, deadline=None)
@given(
    high=st.integers(1, 2**63 - 1)
    | st.integers(1, 2**33)
    | st.integers(2**31, 2**32 + 1)  # ranges where Lemire's rejection is likely:
    | st.integers(2**62, 2**63 - 1),  # on 32-bit words, on 64-bit draws
    k=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
    skew=st.integers(0, 3),
)
def test_inline_integers_are_numpys(high: int, k: int, seed: int, skew: int) -> None:
    """:func:`~offload_rl.cell.compiled_reset.integers_below` (``draw_devices``' trace and
    seed draws) is ``integers(0, high)`` drawn ``k`` times, buffered 32-bit word included, for
    any range: none drawn for 1, Lemire's rejection on 32-bit words and on 64-bit draws."""
    ours, ref = np.random.default_rng(seed), np.random.default_rng(seed)
    for g in (ours, ref):
        g.integers(5, size=skew, dtype=np.int32)  # an odd count leaves a buffered word
    heads = pcg64_heads([ours])
    assert heads is not None
    got = np.empty(k, dtype=np.int64)
    _integer_draws()(int(heads[0]), high, got)
    assert got.tolist() == [int(ref.integers(0, high)) for _ in range(k)]
    assert ours.bit_generator.state == ref.bit_generator.state


@settings(max_examples=100, deadline=None)
@given(
    n=st.sampled_from(sorted(SIMS)),
    ns=st.integers(1, 300),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    skew=st.integers(0, 3),
)
def test_session_devices_are_the_python_draws(
    n: int, ns: int, data: st.DataObject, seed: int, skew: int
) -> None:
    """The compiled reset's sessions' devices (``CellSimulator._session_devices``) are numpy's
    ``integers(n_devices, size=ns)[sessions]``, and leave the world where numpy leaves it."""
    sim = SIMS[n]
    sessions = np.array(data.draw(st.lists(st.integers(0, ns - 1), max_size=400)), dtype=np.int64)
    ours, ref = np.random.default_rng(seed), np.random.default_rng(seed)
    for g in (ours, ref):
        g.integers(5, size=skew, dtype=np.int32)  # an odd count leaves a buffered word
    got = sim._session_devices(ours, ns, sessions)
    want = ref.integers(sim.cell.n_devices, size=ns)[sessions]
    assert got.dtype == want.dtype and got.tolist() == want.tolist()
    assert ours.bit_generator.state == ref.bit_generator.state


def test_a_generators_head_is_its_own() -> None:
    """``pcg64_head`` (kept for the generator read last) gives each generator its own
    state's address, generators asked in turn and a new one at a freed one's place."""
    from offload_rl.cell.device_seeding import _pcg64_state_address, pcg64_head

    gens = [np.random.default_rng(s) for s in range(3)]
    for g in [*gens, gens[0], gens[0], gens[2], gens[1]]:
        assert pcg64_head(g) == _pcg64_state_address(g.bit_generator)
    for s in range(5):  # the last one asked dropped, a new one made
        gens[-1] = np.random.default_rng(s)
        assert pcg64_head(gens[-1]) == _pcg64_state_address(gens[-1].bit_generator)
