"""The room analysis's isolated outcome: a fork with only the decided request in it."""

from __future__ import annotations

from types import ModuleType

import pytest

from envs.edge_cell import EdgeCellEnv
from tests.envs.cell_helpers import FixedWorkload, cell_scenario, request
from tests.experiments.analysis_scripts import load_analysis


@pytest.fixture(scope="module")
def room() -> ModuleType:
    return load_analysis("cell_oracle_room")


@pytest.mark.parametrize("tier", [0, "local", "cloud"])
def test_the_isolated_outcome_is_what_the_cell_does_with_the_request_alone(room, tier):
    """One phone, two requests far apart: the fork's latency is the episode's, its joules are
    positive, and the own cost is the reward rule's on them; the episode is not moved."""
    sc = cell_scenario(n_devices=1, device_mix={"flagship": 1.0})
    reqs = [request(5.0, 0, 200, 40), request(5000.0, 1, 50, 10)]
    env = EdgeCellEnv(sc, episode_requests=1, workload=FixedWorkload(reqs))
    env.reset(seed=0)
    L = env.layout.n_layers
    index = {0: 0, "local": L, "cloud": env.layout.cloud_index}[tier]
    action = env.layout.encode(index, 0)
    assert env.action_masks()[action]
    open_before = env.sim.ledger.n_open
    latency, joules, own = room.isolated_outcome(env, action)
    assert not env.sim.in_flight() and env.sim.ledger.n_open == open_before  # a fork, not the cell
    before = env.sim.requests[env.request_index].arrival_s
    cr = env.sim.dispatch(env.request_index, index, False)
    env.sim.advance(before + 4000.0)
    assert latency == pytest.approx(cr.latency_s)
    assert joules > 0.0
    rule = env.facts.reward_rule
    slo_total = cr.slo[0] + max(cr.request.output_tokens - 1, 0) * cr.slo[1]
    want = (
        rule.w_latency * latency / slo_total
        + rule.w_energy * joules
        + rule.w_slo * float(cr.slo_violated)
        + rule.w_cost * cr.usd
    )
    assert own == pytest.approx(want)
