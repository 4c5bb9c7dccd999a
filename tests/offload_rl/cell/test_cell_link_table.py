"""The simulator keeps each uplink's link model and radio across episodes.

``CellSimulator._links`` replaces building a :class:`~offload_rl.cost_model.LinkModel` per trace
per reset: the devices' links and radios must be the ones built fresh, and a deep copy (the
oracle's fork) must share the table rather than copy the traces it holds.
"""

from __future__ import annotations

import copy

from envs.edge_cell import EdgeCellEnv


def test_kept_links_are_the_fresh_ones_and_forks_share_them() -> None:
    env = EdgeCellEnv("cell", n_devices=16)
    sim = env.sim
    for seed in (0, 1, 2):
        env.reset(seed=seed)
        ups, downs = sim.resolved.uplinks, sim.resolved.downlinks
        for d in sim.devices:
            idx = next(k for k, up in enumerate(ups) if up is d.uplink)
            assert d.link == sim.facts.link(ups[idx], downs[idx])
            assert d.radio.params == sim._device_radio("wifi" in ups[idx].family.lower())
    fork = copy.deepcopy(sim)
    assert fork._links is sim._links
    assert fork.devices[0].link is not sim.devices[0].link  # the rest is copied
