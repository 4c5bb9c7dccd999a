"""Lazy radio settling charges exactly the energy that settling every radio would.

The simulator settles only the radios it woke (a transfer since they were last idle) and charges
the asleep ones their idle power as one sum per power level. Over a random episode, after every
step, what it charged must equal the sum of every radio's settled energy (to float summation
order), whichever devices transferred, idled, or went back to sleep.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from envs.edge_cell import EdgeCellEnv


@pytest.mark.parametrize("n_devices", [3, 16])
def test_radio_energy_charged_lazily_equals_every_radio_settled(n_devices):
    env = EdgeCellEnv(n_devices=n_devices, episode_requests=150)
    sim = env.sim
    charged = [0.0]

    def counting(lazy: Callable[[float], float]) -> Callable[[float], float]:
        def counted(t: float) -> float:
            e = lazy(t)
            charged[0] += e
            return e

        return counted

    # the Python simulator's, or the compiled one's (streams and settling in one call); the
    # compiled finish path settles inside its advance's kernel and adds to the bank's settled_j
    sim._radio_energy = counting(sim._radio_energy)  # type: ignore[method-assign]
    sim._stream_and_settle = counting(sim._stream_and_settle)  # type: ignore[method-assign]
    env.reset(seed=n_devices)
    rng = np.random.default_rng(n_devices)
    woke = slept = 0
    for _ in range(150):
        env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        awake = len(sim._awake) if sim._bank is None else int(sim._bank.awake[0])
        woke, slept = max(woke, awake), max(slept, n_devices - awake)
        eager = sum(radio.energy_until(sim._t) for radio in sim._radios)
        settled = charged[0] + (0.0 if sim._bank is None else sim._bank.settled_j)
        assert settled == pytest.approx(eager, rel=1e-12, abs=1e-9)
    assert woke > 0 and slept > 0  # both kinds of radio were in the books
