"""``lite-on-outage`` in the cell: the cell greedy's placement, the phone's lite model when the
link is down or when greedy's forecast latency exceeds ``factor`` x the request's SLO.

The fail-safe a deployment with a device-lite model runs (the single-device rule is
:class:`offload_rl.heuristics.LiteOnOutagePolicy`), here on top of
:class:`~offload_rl.cell_heuristics.policies.CellGreedy`: it sees what the cell greedy sees (the
decision state, the mask and the cell forecast: the edge's queue and batch, the phone's class,
heat and radio), and nothing else. When the lite model answers is
:class:`offload_rl.heuristics.LiteOnOutageRule`, shared with the single-device rule (the outage
is the mask's own, :func:`offload_rl.features.link_is_out`). Where the lite tier is not valid
(the scenario has none, or the phone cannot hold it) it is the cell greedy.
"""

from __future__ import annotations

import numpy as np

from offload_rl.cell_heuristics.cache_rules import KeepRule
from offload_rl.cell_heuristics.policies import CellGreedy
from offload_rl.cell_heuristics.predictor import CellForecaster, TierForecast
from offload_rl.features import CellDecisionState, DecisionState
from offload_rl.heuristics import LiteOnOutageRule

CELL_LITE_SLO_FACTOR = 1.0
"""Greedy's forecast latency above this x the SLO (``ttft_slo + (o - 1) * tpot_slo``, ``o`` the
forecast output length) sends the request to the lite model. Tuned on the cell's training
episodes only (see :data:`TUNING`)."""

TUNING = (
    "python experiments/tuning/tune_cell_lite_factor.py --episodes 4 --workers 2 (2026-12-06, "
    "484 s on 2 loaded cores): cell_lite, synthetic seeds 6..11 of its 4 presets, 16 episodes "
    "of 256 decisions drawn with seed 2026, loads 1 and 2; settled mean reward per decision: "
    "factor 0.1 / 0.2 -2.7856, 0.3 / 0.5 -1.9727, 0.75 -1.2579, 0.9 / 1 -1.2560, 1.25 -1.2757, "
    "1.5 -1.3444, 2 -1.3768, 3 -1.4679, 4 -1.6390, 8 -1.8831, inf (outages only) -2.2626; "
    "the cell greedy -1.2518 (it prices the lite tier itself, this rule only on its terms)"
)
"""The command that produced :data:`CELL_LITE_SLO_FACTOR` and what it measured (a tie goes to
the larger factor)."""


class CellLiteOnOutage(CellGreedy):
    """The cell greedy, with the lite model on an outage or a forecast far over the SLO."""

    def __init__(
        self,
        name: str,
        forecaster: CellForecaster,
        cache: KeepRule,
        factor: float = CELL_LITE_SLO_FACTOR,
    ) -> None:
        super().__init__(name, forecaster, cache)
        self.factor = factor
        self.lite_rule = LiteOnOutageRule(self.layout, forecaster.facts.spec)
        self._greedy_choice: TierForecast | None = None

    def chosen(self, state: CellDecisionState, forecast: TierForecast) -> None:
        """Remembers greedy's choice, so that :meth:`act` can weigh its forecast latency."""
        self._greedy_choice = forecast

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        def greedy(m: np.ndarray) -> int:
            return super(CellLiteOnOutage, self).act(state, m)

        def greedy_on_main(main: np.ndarray) -> tuple[int, float, int]:
            self._greedy_choice = None
            action = greedy(main)
            best = self._greedy_choice
            assert best is not None  # CellGreedy.act reports its choice through chosen()
            return action, best.latency_s, best.output_tokens

        return self.lite_rule.act(state, mask, self.factor, greedy, greedy_on_main)
