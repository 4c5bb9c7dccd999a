"""Command-line overrides of a scenario shared by ``evaluate`` and the analysis scripts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from offload_rl.errors import ConfigError
from offload_rl.scenario import Scenario


def add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    """``--scenario``, ``--traces``, ``--uplink-scale`` and ``--greedy``: what the analysis
    scripts in ``experiments/`` run on (see :func:`prepare_scenario`)."""
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--traces", nargs="+", default=None, help="trace files or folders")
    parser.add_argument("--uplink-scale", type=float, default=None)
    parser.add_argument("--greedy", default="greedy", help="the greedy variant (e.g. greedy-last)")


def prepare_scenario(
    scenario: Scenario,
    traces: Sequence[str] | None = None,
    uplink_scale: float | None = None,
    requests: int | None = None,
) -> Scenario:
    """Apply the command-line overrides: trace sources, uplink scaling, episode length."""
    if traces:
        scenario = scenario.with_traces([str(t) for t in traces])
    if uplink_scale is not None:
        if not (math.isfinite(uplink_scale) and uplink_scale > 0):
            raise ConfigError(f"--uplink-scale must be a positive number, got {uplink_scale}")
        sources = [
            s.model_copy(update={"uplink_scale": uplink_scale}) for s in scenario.network.sources()
        ]
        network = scenario.network.model_copy(update={"traces": sources})
        scenario = scenario.model_copy(update={"network": network})
    if requests is not None:
        if requests < 1:
            raise ConfigError(f"--requests must be >= 1, got {requests}")
        episode = scenario.episode.model_copy(update={"requests": requests})
        scenario = scenario.model_copy(update={"episode": episode})
    return scenario
