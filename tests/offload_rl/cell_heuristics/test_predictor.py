"""The cell greedy's forecast against the cell itself: one device, nothing else in the system."""

from __future__ import annotations

from pathlib import Path

import pytest

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell_heuristics.cache_rules import LRUKeep
from offload_rl.cell_heuristics.output_length import OutputLengthPredictor
from offload_rl.cell_heuristics.policies import CellGreedy
from offload_rl.cell_heuristics.predictor import CellForecaster, valid_tiers
from offload_rl.cell_heuristics.tuned import PredictorParams
from offload_rl.cost_model import RequestCost
from offload_rl.reward import score_request
from offload_rl.scenario import Scenario, TraceSource, load_scenario
from tests.envs.cell_helpers import FixedWorkload, cell_scenario, request

NEW, OUT = 300, 120
HORIZON_S = 1500.0  # every tail and stream over long before this


def _quiet_cell(tmp_path: Path, thermal: bool, cloud_slowdown: float | None = None) -> Scenario:
    """One flagship on a constant 2 Mbps link measured without noise; no private requests, no
    memory pressure, no cloud queue: what the forecast assumes is then what the cell does."""
    trace = tmp_path / "const" / "two-mbps"
    trace.parent.mkdir(parents=True)
    trace.write_text("".join(f"{i}.0\t2.0\n" for i in range(2001)), encoding="utf-8")
    sc = cell_scenario(n_devices=1, device_mix={"flagship": 1.0}, thermal=thermal)
    net = sc.network.model_copy(
        update={"traces": [TraceSource(source=str(trace))], "throughput_noise": 0.0}
    )
    return sc.model_copy(
        update={
            "network": net,
            "workload": sc.workload.model_copy(update={"private_share": 0.0}),
            "device": sc.device.model_copy(update={"memory_pressure_share": 0.0}),
            "cloud": sc.cloud.model_copy(
                update={"queue_s": 0.0, "slowdown": cloud_slowdown or sc.cloud.slowdown}
            ),
        }
    )


def _realised(env: EdgeCellEnv, tier: int, idle_joules: float) -> tuple[float, float, float]:
    """(latency, TTFT, device joules beyond idle) of request 0 placed on ``tier`` alone."""
    env.reset(seed=0)
    env.sim.dispatch(0, tier, False)
    done = env.sim.advance(HORIZON_S)
    joules = env.sim.joules.collect(HORIZON_S)[1] - idle_joules
    (cr,) = [c for c in done if c.rid == 0]
    return cr.latency_s, cr.ttft_s, joules


@pytest.mark.parametrize(
    ("thermal", "cloud_slowdown", "best"),
    [(False, None, "edge"), (True, None, "edge"), (False, 0.3, "cloud")],  # an unloaded cloud
)
def test_n1_forecast_of_every_placement_equals_what_the_cell_realises(
    tmp_path, thermal, cloud_slowdown, best
):
    """Tolerance 0.3% on latency, TTFT and energy (radio promotion, stream and tail included).
    Where the two differ, and why: a split's per-token upload is priced by the cell at the
    link's capacity when the prompt's upload ends and its per-token device work at the clock
    on arrival (the cost model integrates them as one transfer: 0.1% here); with heat on, the
    forecast starts the phone mid-band of the OS level it shows (30.5 C for 'nominal') where
    this one starts at 25 C, which moves a local run's throttled time by 0.1%."""
    sc = _quiet_cell(tmp_path, thermal, cloud_slowdown)
    reqs = [request(5.0, 0, NEW, OUT), request(HORIZON_S + 500.0, 1, 50, 10)]
    env = EdgeCellEnv(sc, episode_requests=1, workload=FixedWorkload(reqs))
    env.reset(seed=0)
    state, mask = env.state, env.action_masks()
    assert state.edge_running == state.edge_waiting == 0 and state.radio_state == 0
    forecaster = CellForecaster(sc, PredictorParams())
    forecasts = forecaster.forecast(state, valid_tiers(mask), output_tokens=OUT)
    assert len(forecasts) == env.layout.n_tiers  # every placement is valid here
    env.reset(seed=0)
    env.sim.advance(HORIZON_S)
    idle = env.sim.joules.collect(HORIZON_S)[1]
    realised_reward = {}
    rule = forecaster.facts.reward_rule
    for f in forecasts:
        latency, ttft, joules = _realised(env, f.tier, idle)
        assert f.latency_s == pytest.approx(latency, rel=3e-3), f.tier
        assert f.ttft_s == pytest.approx(ttft, rel=3e-3), f.tier
        assert f.energy_j == pytest.approx(joules, rel=3e-3), f.tier
        cost = RequestCost(ttft, latency, joules, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        slo = (state.slo_ttft_s, state.slo_tpot_s)
        realised_reward[f.tier] = score_request(cost, OUT, *slo, rule).reward
    # the greedy, told the true output length, takes the placement that is best in hindsight
    greedy = CellGreedy("greedy", forecaster, LRUKeep(forecaster.L))
    greedy.forecaster.output = OutputLengthPredictor(OUT, 0.0)
    tier, keep = env.layout.decode(greedy.act(state, mask))
    assert realised_reward[tier] == max(realised_reward.values())
    assert tier == {"edge": 0, "cloud": env.layout.cloud_index}[best]
    assert keep == (best == "edge")  # keep-always, except where nothing can be kept


def test_the_forecast_sees_the_device_queue_wait_the_thermal_level_implies(tmp_path):
    """The tuned wait per OS level delays the placements with device work (local, split), not
    token ids to the edge or the cloud, which the cell does not queue on the phone."""
    sc = _quiet_cell(tmp_path, thermal=False)
    reqs = [request(5.0, 0, NEW, OUT), request(HORIZON_S, 1, 50, 10)]
    env = EdgeCellEnv(sc, episode_requests=1, workload=FixedWorkload(reqs))
    env.reset(seed=0)
    state, tiers = env.state, valid_tiers(env.action_masks())
    plain = CellForecaster(sc, PredictorParams()).forecast(state, tiers, OUT)
    waiting = CellForecaster(sc, PredictorParams(device_wait_s=[7.0, 0.0, 0.0, 0.0]))
    kinds = set()
    for a, b in zip(plain, waiting.forecast(state, tiers, OUT), strict=True):
        queues = 0 < a.tier <= env.layout.n_layers  # split or local: device work
        kinds.add(queues)
        assert b.latency_s == pytest.approx(a.latency_s + (7.0 if queues else 0.0))
    assert kinds == {True, False} and 0 in tiers


@pytest.mark.parametrize("busy_p", [0.0, 0.3, 1.0])
def test_a_busy_share_makes_the_forecast_the_expectation_over_a_free_and_a_busy_queue(
    tmp_path, busy_p
):
    """With the queue busy for a share ``p`` of requests (``device_busy_p``), the forecast of a
    placement with device work is ``p`` x its forecast with the wait plus ``1 - p`` x without
    (reward, latency, energy); placements without device work do not wait at all. A share of 1
    is the forecast without the field (every request waits the mean)."""
    sc = _quiet_cell(tmp_path, thermal=False)
    reqs = [request(5.0, 0, NEW, OUT), request(HORIZON_S, 1, 50, 10)]
    env = EdgeCellEnv(sc, episode_requests=1, workload=FixedWorkload(reqs))
    env.reset(seed=0)
    state, tiers = env.state, valid_tiers(env.action_masks())
    wait = [40.0, 0.0, 0.0, 0.0]
    free = CellForecaster(sc, PredictorParams()).forecast(state, tiers, OUT)
    busy = CellForecaster(sc, PredictorParams(device_wait_s=wait)).forecast(state, tiers, OUT)
    mixed = CellForecaster(
        sc, PredictorParams(device_wait_s=wait, device_busy_p=[busy_p, 1.0, 1.0, 1.0])
    ).forecast(state, tiers, OUT)
    for f0, f1, m in zip(free, busy, mixed, strict=True):
        p = busy_p if 0 < m.tier <= env.layout.n_layers else 0.0  # split or local
        for field in ("reward", "latency_s", "ttft_s", "energy_j"):
            want = p * getattr(f1, field) + (1.0 - p) * getattr(f0, field)
            assert getattr(m, field) == pytest.approx(want), (m.tier, field)
    # a wait this long misses the SLO on the local tier, so the mixture is not the mean wait's
    local = env.layout.n_layers
    by_tier = {f.tier: f for f in busy}
    if 0.0 < busy_p < 1.0 and local in by_tier:
        assert by_tier[local].slo_violated


def test_busy_shares_outside_zero_one_are_refused():
    with pytest.raises(ValueError, match="device_busy_p"):
        PredictorParams(device_busy_p=[0.5, 1.5, 1.0, 1.0])


def test_the_lite_tier_is_forecast_as_the_cell_runs_it_with_its_quality_cost(tmp_path):
    """The device-lite model runs on the phone alone (no link, no radio); the forecast prices
    it from the lite profile with the reward's quality term, as the cell realises it."""
    quiet = _quiet_cell(tmp_path, thermal=True)
    sc = quiet.model_copy(update={"lite": load_scenario("cell_lite").lite})
    reqs = [request(5.0, 0, NEW, OUT), request(HORIZON_S + 500.0, 1, 50, 10)]
    env = EdgeCellEnv(sc, episode_requests=1, workload=FixedWorkload(reqs))
    env.reset(seed=0)
    state, mask = env.state, env.action_masks()
    lite = env.layout.lite_index
    assert lite is not None and mask[2 * lite]
    forecaster = CellForecaster(sc, PredictorParams())
    (f,) = forecaster.forecast(state, [lite], output_tokens=OUT)
    env.reset(seed=0)
    env.sim.advance(HORIZON_S)
    idle = env.sim.joules.collect(HORIZON_S)[1]
    latency, ttft, joules = _realised(env, lite, idle)
    assert f.latency_s == pytest.approx(latency, rel=3e-3)
    assert f.ttft_s == pytest.approx(ttft, rel=3e-3)
    assert f.energy_j == pytest.approx(joules, rel=3e-3)
    rule = forecaster.facts.reward_rule
    cost = RequestCost(ttft, latency, joules, 0.0, 0.0, 0.0, 0.0, 0.0, 0, lite=True)
    expected = score_request(cost, OUT, state.slo_ttft_s, state.slo_tpot_s, rule).reward
    assert rule.lite_penalty > 0
    assert f.reward == pytest.approx(expected, rel=3e-3)


@pytest.mark.parametrize(("batching", "seqs", "cap"), [(True, 3, 3), (False, 3, 1)])
def test_the_forecast_caps_the_edge_batch_as_the_simulator_does(batching, seqs, cap):
    """The edge model reads ``max_num_seqs`` (1 with batching off) from the cell config."""
    sc = load_scenario("cell")
    assert sc.cell is not None
    cell = sc.cell.model_copy(update={"batching": batching, "max_num_seqs": seqs})
    forecaster = CellForecaster(sc.model_copy(update={"cell": cell}), PredictorParams())
    assert forecaster.edge_model.max_seqs == cap
