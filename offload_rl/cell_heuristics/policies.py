"""The cell heuristics: one forecast (:mod:`.predictor`), four ways to choose from it.

* :class:`CellGreedy` (``greedy``): the placement with the best forecast reward.
* :class:`GreedyExternality` (``greedy-externality``): minus the delay the request imposes on
  the edge's other requests, priced at a tuned multiple of what a second in the system costs.
* :class:`ThermalMPC` (``thermal-mpc``): plus a lookahead over the device's next ``H`` requests:
  the heat this one leaves (run through the thermal model: slower local work later) and the
  radio it leaves up (a next offload within the tail skips the promotion).
* :class:`LyapunovPolicy` (``lyapunov``): drift-plus-penalty (Neely, *Stochastic Network
  Optimization with Application to Communication and Queueing Systems*, 2010, ch. 3 and 4):
  virtual queues for device energy and SLO violations grow when a choice exceeds its
  per-request budget, and each decision minimises ``V x cost + Q_E x energy + Q_S x violation``.

Each sees only the decision state and the mask; none reads the future. One object serves every
device of a cell (the state does not say which device asks), so the Lyapunov queues are the
cell's, fed with forecast (not measured) energy and violations.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from offload_rl.cell.thermal import DeviceClass
from offload_rl.cell_heuristics.cache_rules import KeepRule
from offload_rl.cell_heuristics.device_outlook import cool, run_on_device, temperature_estimate
from offload_rl.cell_heuristics.predictor import CellForecaster, TierForecast, valid_tiers
from offload_rl.cell_heuristics.tuned import ExternalityParams, LyapunovParams, ThermalMPCParams
from offload_rl.cost_model import TIER_DEVICE, TIER_LITE, tier_of
from offload_rl.features import CellDecisionState, DecisionState


class CellGreedy:
    """The placement with the best forecast reward; the cache rule decides keep."""

    def __init__(self, name: str, forecaster: CellForecaster, cache: KeepRule) -> None:
        self.name = name
        self.forecaster = forecaster
        self.cache = cache
        self.layout = forecaster.layout
        facts = forecaster.facts
        o = max(facts.mean_output_tokens, 1.0)
        inv = sum(
            share / (ttft + (o - 1.0) * tpot)
            for share, (ttft, tpot) in zip(facts.slo_shares, facts.slo_targets, strict=True)
        )
        # what one second of one request in the system costs, on average (the ledger's rate)
        self.second_price = facts.reward_rule.w_latency * inv

    def reset(self) -> None:
        return None

    def objective(self, state: CellDecisionState, forecasts: list[TierForecast]) -> np.ndarray:
        """Higher is better; one entry per forecast."""
        return np.array([f.reward for f in forecasts])

    def chosen(self, state: CellDecisionState, forecast: TierForecast) -> None:
        """Hook: the forecast of the placement taken (stateful policies update here)."""
        return None

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        """A valid joint action for the cell's decision state (a plain DecisionState lacks the
        device's and the edge's state these heuristics are built on: TypeError)."""
        if not isinstance(state, CellDecisionState):
            raise TypeError(f"{self.name} decides in EdgeCell-v0: it needs a CellDecisionState")
        tiers = valid_tiers(mask)
        forecasts = self.forecaster.forecast(state, tiers)
        best = forecasts[int(np.argmax(self.objective(state, forecasts)))]
        self.chosen(state, best)
        keep = self.cache.keep(state, best)
        return self.layout.nearest_valid(self.layout.encode(best.tier, keep), mask)


class GreedyExternality(CellGreedy):
    """Forecast reward minus ``price x (second price) x seconds of delay imposed on others``."""

    def __init__(
        self, name: str, forecaster: CellForecaster, cache: KeepRule, params: ExternalityParams
    ) -> None:
        super().__init__(name, forecaster, cache)
        self.price = params.price

    def objective(self, state: CellDecisionState, forecasts: list[TierForecast]) -> np.ndarray:
        charge = self.price * self.second_price
        return np.array([f.reward - charge * f.externality_s for f in forecasts])


class ThermalMPC(CellGreedy):
    """Forecast reward plus a ``horizon``-request lookahead over heat and the radio tail.

    The device's next requests are taken to arrive every ``gap`` seconds (its share of the
    scenario's request rate) and, for the heat, to run locally with this request's local work
    (the placement whose speed heat changes). For each placement: the extra wall seconds those
    future runs take because of the heat this one leaves (the thermal model run from the
    temperature the OS level implies, with and without this request's device work), priced at
    ``heat_price`` x the second price; and, for an offload, the promotion a next offload within
    the radio tail skips (its seconds and joules), credited ``radio_price`` x the chance the
    ``j``-th next request comes before the tail ends, for ``j = 1 .. horizon``.
    """

    def __init__(
        self, name: str, forecaster: CellForecaster, cache: KeepRule, params: ThermalMPCParams
    ) -> None:
        super().__init__(name, forecaster, cache)
        self.horizon = params.horizon
        self.heat_price = params.heat_price
        self.radio_price = params.radio_price
        sc = forecaster.scenario
        cell = forecaster.cell
        rate = forecaster.facts.workload_params.request_rate_per_s() * cell.arrival_rate_scale
        self.gap_s = cell.n_devices / rate if rate > 0 else float("inf")
        radio = forecaster.radio
        rule = forecaster.facts.reward_rule
        promo_cost = rule.w_energy * radio.promo_w * radio.promo_s
        promo_cost += self.second_price * radio.promo_s
        p_within = 1.0 - math.exp(-radio.tail_s / self.gap_s) if radio.tail_s > 0 else 0.0
        chain = sum(p_within**j for j in range(1, self.horizon + 1))
        self.radio_credit = self.radio_price * promo_cost * chain
        self._thermal = cell.thermal and sc.cell is not None

    def future_wall_s(self, state: CellDecisionState, work_now: float, work_next: float) -> float:
        """Wall seconds of the next ``horizon`` local runs after ``work_now`` runs now."""
        cls = self.forecaster.device_class(state)
        temp = temperature_estimate(cls, state.thermal_level)
        _, _, temp = run_on_device(cls, temp, work_now)
        # 0.05 C and 2 significant digits of work: far below what moves a clock noticeably,
        # and the runs of one decision's placements (and of the next decisions) are reused
        return _future_wall_s(
            cls, round(temp * 20.0) / 20.0, float(f"{work_next:.2g}"), self.gap_s, self.horizon
        )

    def objective(self, state: CellDecisionState, forecasts: list[TierForecast]) -> np.ndarray:
        L = self.forecaster.L
        local = [f for f in forecasts if tier_of(f.tier, L) == TIER_DEVICE]
        work_next = local[0].device_work_s if local else 0.0
        scores = []
        base = self.future_wall_s(state, 0.0, work_next) if self._thermal and local else 0.0
        for f in forecasts:
            score = f.reward
            if self._thermal and local and f.device_work_s > 0:
                extra = self.future_wall_s(state, f.device_work_s, work_next) - base
                score -= self.heat_price * self.second_price * extra
            if tier_of(f.tier, L) not in (TIER_DEVICE, TIER_LITE):  # these wake no radio
                score += self.radio_credit
            scores.append(score)
        return np.array(scores)


@functools.lru_cache(maxsize=1 << 16)
def _future_wall_s(
    cls: DeviceClass, temp_c: float, work_s: float, gap_s: float, horizon: int
) -> float:
    """Wall seconds of ``horizon`` runs of ``work_s``, ``gap_s`` apart, from ``temp_c``."""
    total = 0.0
    for _ in range(horizon):
        temp_c = cool(cls, temp_c, gap_s)
        wall, _, temp_c = run_on_device(cls, temp_c, work_s)
        total += wall
    return total


class LyapunovPolicy(CellGreedy):
    """Drift-plus-penalty over the forecast: ``min V x cost + Q_E x joules + Q_S x violated``."""

    def __init__(
        self, name: str, forecaster: CellForecaster, cache: KeepRule, params: LyapunovParams
    ) -> None:
        super().__init__(name, forecaster, cache)
        self.v = params.v
        self.energy_budget = params.energy_budget_j
        self.slo_budget = params.slo_budget
        self.q_energy = 0.0
        self.q_slo = 0.0

    def reset(self) -> None:
        self.q_energy = self.q_slo = 0.0

    def objective(self, state: CellDecisionState, forecasts: list[TierForecast]) -> np.ndarray:
        return np.array(
            [
                self.v * f.reward - self.q_energy * f.energy_j - self.q_slo * f.slo_violated
                for f in forecasts
            ]
        )

    def chosen(self, state: CellDecisionState, forecast: TierForecast) -> None:
        """The virtual queues' update: ``Q <- max(Q + x - budget, 0)``."""
        self.q_energy = max(self.q_energy + forecast.energy_j - self.energy_budget, 0.0)
        self.q_slo = max(self.q_slo + float(forecast.slo_violated) - self.slo_budget, 0.0)
