"""The devices seeded in one pass are the devices seeded one by one, bit for bit.

:mod:`offload_rl.cell.device_seeding` replaces, at each reset, N ``default_rng(seed)`` calls and
N :meth:`Device.seed_samples` calls; the generators must give the same streams and the samples
the same floats, or every EdgeCell-v0 episode moves.
"""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell.device_seeding import (
    device_generators,
    seed_sequence_states,
    seeded_samples,
)
from offload_rl.device_view import measured_throughput
from offload_rl.traces import Trace

seeds = st.lists(
    st.integers(0, 2**63 - 2) | st.integers(0, 2**32 + 5) | st.sampled_from([0, 2**32 - 1]),
    min_size=0,
    max_size=12,
)
TRACES = [
    Trace.from_steps([4.0, 0.0, 12.0, 2.5, 7.0], step_s=0.5, name="steps"),
    Trace.from_steps([1.0, 3.0, 0.5], step_s=1.0, name="short"),
    Trace.constant(10.0, duration_s=30.0, step_s=0.1),
]


@settings(max_examples=100, deadline=None)
@given(seeds)
def test_states_are_seed_sequences(values: list[int]) -> None:
    got = seed_sequence_states(np.array(values, dtype=np.int64))
    assert got.dtype == np.uint64 and got.shape == (len(values), 4)
    for row, s in zip(got, values, strict=True):
        assert np.array_equal(row, np.random.SeedSequence(s).generate_state(4, np.uint64))


@settings(max_examples=40, deadline=None)
@given(seeds)
def test_generators_are_default_rngs(values: list[int]) -> None:
    ours = device_generators(np.array(values, dtype=np.int64))
    for g, s in zip(ours, values, strict=True):
        ref = np.random.default_rng(np.int64(s))
        assert g.bit_generator.state == ref.bit_generator.state
        assert np.array_equal(g.normal(0.0, 0.3, size=5), ref.normal(0.0, 0.3, size=5))
        assert g.integers(7) == ref.integers(7)  # the buffered 32-bit path too
        assert g.bit_generator.state == ref.bit_generator.state


def test_a_copied_generator_goes_on_alone() -> None:
    """The simulator is deep-copied by the oracle's forks: a copy of a device generator is a
    separate stream from the same point."""
    (g,) = device_generators(np.array([12345678901234], dtype=np.int64))
    fork = copy.deepcopy(g)
    assert fork.random() == g.random()
    fork.random()
    assert fork.bit_generator.state != g.bit_generator.state


@settings(max_examples=80, deadline=None)
@given(
    picks=st.lists(
        st.tuples(st.integers(0, len(TRACES) - 1), st.floats(0.0, 200.0)),
        min_size=0,
        max_size=8,
    ),
    history=st.integers(0, 9),
    period=st.sampled_from([0.25, 1.0, 1.7]),
    noise=st.sampled_from([0.0, 0.2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_samples_are_measured_throughput_per_device(
    picks: list[tuple[int, float]], history: int, period: float, noise: float, seed: int
) -> None:
    traces = [TRACES[k] for k, _ in picks]
    origins = [o for _, o in picks]
    rngs = [np.random.default_rng(seed + j) for j in range(len(picks))]
    refs = [np.random.default_rng(seed + j) for j in range(len(picks))]
    got = seeded_samples(traces, origins, history, period, noise, rngs)
    assert got.shape == (len(picks), history)
    for j, (tr, origin) in enumerate(zip(traces, origins, strict=True)):
        want = measured_throughput(tr, origin, -history, history, period, noise, refs[j])
        assert got[j].tolist() == want.tolist()
        assert rngs[j].bit_generator.state == refs[j].bit_generator.state


def _episode(env: EdgeCellEnv, seed: int, steps: int) -> list[object]:
    """Observations, rewards and the devices' samples of a seeded episode's first steps."""
    obs, _ = env.reset(seed=seed)
    out: list[object] = [obs.tolist(), [d.sample_mbps for d in env.sim.devices]]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        valid = np.flatnonzero(env.action_masks())
        obs, reward, *_ = env.step(int(valid[rng.integers(valid.size)]))
        out.append((obs.tolist(), float(reward)))
    return out


def test_a_reset_forgets_the_previous_episode() -> None:
    """Two resets with one seed give one episode, whatever ran before each."""
    env = EdgeCellEnv("cell", n_devices=6)
    first = _episode(env, 11, 40)
    _episode(env, 3, 120)
    assert _episode(env, 11, 40) == first
    assert _episode(EdgeCellEnv("cell", n_devices=6), 11, 40) == first
