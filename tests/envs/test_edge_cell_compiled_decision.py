"""A compiled decision is, field for field, the reference's.

In compiled mode ``EdgeCellEnv`` decides in one call
(:func:`offload_rl.cell.compiled_observation.decide`) and builds the
:class:`~offload_rl.features.CellDecisionState` only when ``env.state`` is read. The reference
(``CellSimulator.decision_state``, the Python encoder's rules, ``shared_action_mask``) runs in a
twin environment whose compiled decider is switched off. Over played episodes with random
actions (invalid ones too), both must give the same observations (bytes), masks, rewards, info
(keys, order, values and types) and states (``==`` and the fields' types), whether the state is
read at every step or never.
"""

from __future__ import annotations

import runpy
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode as cd

# the fingerprint's outage scenario (experiments/ is not a package)
_SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "benchmarks" / "cell_fingerprint.py"
OUTAGE_SCENARIO = runpy.run_path(str(_SCRIPT))["outage_scenario"]

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)


def _envs(scenario: object, n_devices: int, seed: int) -> tuple[EdgeCellEnv, EdgeCellEnv]:
    """A compiled-decision environment and its reference twin, reset to the same episode."""
    fast = EdgeCellEnv(scenario, n_devices=n_devices, episode_requests=60)  # type: ignore[arg-type]
    ref = EdgeCellEnv(scenario, n_devices=n_devices, episode_requests=60)  # type: ignore[arg-type]
    ref._compiled_decider = lambda: None  # type: ignore[method-assign]
    obs, _ = fast.reset(seed=seed)
    expected, _ = ref.reset(seed=seed)
    assert fast._decide is not None and ref._decide is None
    assert obs.tobytes() == expected.tobytes()
    return fast, ref


def _same_state(fast: EdgeCellEnv, ref: EdgeCellEnv) -> None:
    got, expected = fast.state, ref.state
    assert got == expected
    assert [type(v) for v in astuple(got)] == [type(v) for v in astuple(expected)]
    assert [type(v) for v in got.throughput_mbps] == [type(v) for v in expected.throughput_mbps]


def _play(fast: EdgeCellEnv, ref: EdgeCellEnv, seed: int, read_state: bool) -> None:
    rng = np.random.default_rng(seed)
    n_actions = int(fast.action_space.n)
    for _ in range(140):  # past the episode's end: a reset on the way
        if read_state:
            _same_state(fast, ref)
        mask = fast.action_masks()
        assert mask.tobytes() == ref.action_masks().tobytes()
        valid = np.flatnonzero(mask)
        a = int(rng.integers(n_actions)) if rng.random() < 0.1 else int(rng.choice(valid))
        got, expected = fast.step(a), ref.step(a)
        assert got[0].tobytes() == expected[0].tobytes()
        assert got[1:4] == expected[1:4]
        assert list(got[4].items()) == list(expected[4].items())
        assert [type(v) for v in got[4].values()] == [type(v) for v in expected[4].values()]
        if got[3]:
            got_obs, _ = fast.reset()
            assert got_obs.tobytes() == ref.reset()[0].tobytes()
    _same_state(fast, ref)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([1, 4, 16, 48]), st.booleans())
def test_compiled_decisions_are_the_references(seed: int, n_devices: int, read: bool) -> None:
    fast, ref = _envs("cell", n_devices, seed)
    _play(fast, ref, seed, read)


@settings(max_examples=4, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_compiled_decisions_in_outages_are_the_references(seed: int, read: bool) -> None:
    """Outages: the probe before deciding and the mask's fallback (budget phones, WiFi)."""
    fast, ref = _envs(OUTAGE_SCENARIO(), 8, seed)
    _play(fast, ref, seed, read)


@settings(max_examples=3, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_compiled_decisions_with_a_lite_model_are_the_references(seed: int, read: bool) -> None:
    """A device-lite model: its tier in the mask and ``lite``/``quality`` in the info."""
    fast, ref = _envs("cell_lite", 8, seed)
    _play(fast, ref, seed, read)
