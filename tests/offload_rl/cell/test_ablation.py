"""Each ablation switch removes exactly its phenomenon, as the physical statement it makes."""

from __future__ import annotations

import numpy as np
import pytest

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell.ablation import PHENOMENA, UNBOUNDED_POOL_BYTES, all_on, switch_off
from offload_rl.cell.config import CellConfig
from offload_rl.cell.radio import RADIOS
from offload_rl.errors import ConfigError
from offload_rl.scenario import load_scenario


@pytest.fixture(scope="module")
def base():
    return all_on(load_scenario("cell"))


def test_all_on_correlates_sessions_and_keeps_everything_else(base):
    plain = load_scenario("cell")
    assert base.workload.source == "default-correlated"
    assert base.cell is not None and plain.cell is not None
    assert base.cell.model_dump() == plain.cell.model_dump()  # every switch already on
    assert base.model_copy(update={"workload": plain.workload}) == plain


@pytest.mark.parametrize("phenomenon", PHENOMENA)
def test_a_switch_changes_only_its_own_keys(base, phenomenon):
    off = switch_off(base, phenomenon)
    assert off.cell is not None and base.cell is not None
    changed = {k for k, v in off.cell.model_dump().items() if base.cell.model_dump()[k] != v}
    expected = {
        "batching": {"max_num_seqs"},
        "kv_pool": {"kv_pool_bytes"},
        "heat": {"thermal"},
        "radio_tail": {"radio_tail"},
        "session_correlation": set(),
    }[phenomenon]
    assert changed == expected
    same_workload = off.workload == base.workload
    assert same_workload == (phenomenon != "session_correlation")
    assert off.model_copy(update={"cell": base.cell, "workload": base.workload}) == base


def _reset(sc):
    env = EdgeCellEnv(sc, episode_requests=4)
    env.reset(seed=0)
    return env


def test_the_switches_reach_the_simulator(base):
    on = _reset(base)
    assert on.sim.edge.max_num_seqs == base.cell.max_num_seqs > 1
    assert _reset(switch_off(base, "batching")).sim.edge.max_num_seqs == 1
    pool = _reset(switch_off(base, "kv_pool")).sim.edge.pool.capacity_bytes
    assert pool == int(UNBOUNDED_POOL_BYTES)
    assert not any(d.thermal_on for d in _reset(switch_off(base, "heat")).sim.devices)
    lte = RADIOS["lte"]
    radios = [d.radio.params for d in _reset(switch_off(base, "radio_tail")).sim.devices]
    cellular = [r for r in radios if r.name == "lte"]
    assert cellular and all(r.tail_s == 0.0 for r in radios)
    assert all((r.promo_s, r.promo_w) == (lte.promo_s, lte.promo_w) for r in cellular)
    assert all(r.tail_s > 0 for r in (d.radio.params for d in on.sim.devices))


def test_session_correlation_off_draws_independent_turn_lengths(base):
    """Lag-1 correlation of log output lengths within sessions: ~0.77 fitted, ~0 off."""

    def lag1(sc) -> float:
        env = EdgeCellEnv(sc, episode_requests=3000)
        env.reset(seed=1)
        last: dict[int, int] = {}
        pairs = []
        for r in env.sim.requests:
            if r.session_id in last:
                pairs.append((np.log(last[r.session_id]), np.log(r.output_tokens)))
            last[r.session_id] = r.output_tokens
        return float(np.corrcoef(np.array(pairs).T)[0, 1])

    assert lag1(base) > 0.5
    assert abs(lag1(switch_off(base, "session_correlation"))) < 0.15


def test_unknown_phenomena_and_recorded_workloads_are_refused(base):
    with pytest.raises(ConfigError, match="unknown phenomenon"):
        switch_off(base, "gravity")
    recorded = base.model_copy(
        update={"workload": base.workload.model_copy(update={"source": "x.csv"})}
    )
    with pytest.raises(ConfigError, match="session correlation"):
        switch_off(recorded, "session_correlation")


def test_radio_tail_is_a_validated_switch():
    assert CellConfig().radio_tail is True
    with pytest.raises(ValueError, match="radio_tail"):
        CellConfig(radio_tail="sometimes")  # type: ignore[arg-type]
