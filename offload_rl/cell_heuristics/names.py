"""Names of the cell heuristics, and the one factory that builds them with the tuned parameters.

``<base>[+<cache rule>]`` with base ``greedy``, ``greedy-externality``, ``thermal-mpc``,
``lyapunov`` or ``lite-on-outage`` (:mod:`.lite_on_outage`) and cache rule ``lru`` (keep always,
the pool evicts LRU; the default) or
``gdsf`` (value per byte): ``greedy``, ``greedy+gdsf``, ``thermal-mpc+lru``... They run on
scenarios with a ``cell:`` section; the single-device names of :mod:`offload_rl.heuristics`
(``greedy-ewma-always``...) keep the single-device view everywhere.
"""

from __future__ import annotations

from pathlib import Path

from offload_rl.cell_heuristics.cache_rules import CACHE_RULE_NAMES, GDSFKeep, KeepRule, LRUKeep
from offload_rl.cell_heuristics.lite_on_outage import CellLiteOnOutage
from offload_rl.cell_heuristics.policies import (
    CellGreedy,
    GreedyExternality,
    LyapunovPolicy,
    ThermalMPC,
)
from offload_rl.cell_heuristics.predictor import CellForecaster
from offload_rl.cell_heuristics.tuned import TunedParams, load_tuned_params
from offload_rl.errors import ConfigError
from offload_rl.scenario import Scenario

CELL_BASES: tuple[str, ...] = (
    "greedy",
    "greedy-externality",
    "thermal-mpc",
    "lyapunov",
    "lite-on-outage",
)
DEFAULT_CELL_CACHE_RULE = "lru"
CELL_HEURISTIC_NAMES: tuple[str, ...] = CELL_BASES + tuple(
    f"{b}+{c}" for b in CELL_BASES for c in CACHE_RULE_NAMES
)


def is_cell_heuristic_name(name: str) -> bool:
    return name.strip().lower() in CELL_HEURISTIC_NAMES


def make_cell_heuristic(
    name: str, scenario: Scenario, tuned: TunedParams | str | Path | None = None
) -> CellGreedy:
    """The cell heuristic ``name`` for ``scenario`` with the tuned parameters (default: the
    shipped file, :func:`~offload_rl.cell_heuristics.tuned.load_tuned_params`)."""
    canonical = name.strip().lower()
    if canonical not in CELL_HEURISTIC_NAMES:
        raise ConfigError(
            f"unknown cell heuristic {name!r}; valid names: {', '.join(CELL_HEURISTIC_NAMES)}"
        )
    if scenario.cell is None:
        raise ConfigError(
            f"heuristic {name!r} runs in the cell: scenario {scenario.name!r} has no 'cell:' "
            "section"
        )
    params = tuned if isinstance(tuned, TunedParams) else load_tuned_params(tuned)
    base, _, rule = canonical.partition("+")
    forecaster = CellForecaster(scenario, params.predictor)
    cache: KeepRule
    if (rule or DEFAULT_CELL_CACHE_RULE) == "gdsf":
        cache = GDSFKeep(forecaster, params.gdsf, params.return_model)
    else:
        cache = LRUKeep(forecaster.L)
    if base == "greedy-externality":
        return GreedyExternality(canonical, forecaster, cache, params.externality)
    if base == "thermal-mpc":
        return ThermalMPC(canonical, forecaster, cache, params.thermal_mpc)
    if base == "lyapunov":
        return LyapunovPolicy(canonical, forecaster, cache, params.lyapunov)
    if base == "lite-on-outage":
        return CellLiteOnOutage(canonical, forecaster, cache)
    return CellGreedy(canonical, forecaster, cache)
