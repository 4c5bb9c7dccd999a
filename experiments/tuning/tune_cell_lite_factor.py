"""Tune the cell ``lite-on-outage``'s SLO factor on the cell's training episodes only.

Usage::

    python experiments/tuning/tune_cell_lite_factor.py [--scenario cell_lite] [--episodes 2]
        [--loads 1,2] [--seed 2026] [--requests N] [--workers 1]
        [--traces DIR ... --uplink-scale X --test-share 0.25 --split-seed 0]

``lite-on-outage`` (:mod:`offload_rl.cell_heuristics.lite_on_outage`) answers with the phone's
lite model when the link is down or when the cell greedy's forecast latency exceeds ``factor``
x the request's SLO. The factor is a heuristic's free parameter, so it is tuned on the episodes
``experiments/tuning/tune_cell_heuristics.py`` tunes on, built by that script's own functions
(the synthetic presets' second half of seeds, which ``offload-rl evaluate`` never draws, or the
training part of recorded families; episodes drawn from ``--seed``, not the evaluation's 0).
The objective is the same: the settled mean reward per decision (``finish_cost`` counted) over
the training episodes at every ``--loads`` level. The best factor wins; ties (within 1e-6) go to
the larger factor, the rule that leaves the main model in charge more often. The cell greedy is
scored beside it for reference.

The chosen value is committed as
``offload_rl.cell_heuristics.lite_on_outage.CELL_LITE_SLO_FACTOR``, with this script's command
and output in ``TUNING`` beside it.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from agents.evaluation.cell_rollout import run_cell_episode
from agents.evaluation.episodes import Episode
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell_heuristics.lite_on_outage import CellLiteOnOutage
from offload_rl.cell_heuristics.names import make_cell_heuristic
from offload_rl.scenario import Scenario
from offload_rl.scenario_facts import ResolvedScenario

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, reused
from tune_cell_heuristics import add_training_arguments, at_load, training_setup

FACTORS: tuple[float, ...] = (
    0.1, 0.2, 0.3, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 8.0, math.inf,
)  # fmt: skip
"""The factors searched (``inf``: the lite model on outages only)."""

GREEDY = "greedy"  # the reference, scored on the same episodes


class TrainingEpisodes:
    """The training episodes at every load, each scored by a policy with a given factor."""

    def __init__(
        self, resolved: ResolvedScenario, episodes: list[Episode], loads: Sequence[float]
    ) -> None:
        self.scenario: Scenario = resolved.scenario
        self.episodes = episodes
        self.envs = [EdgeCellEnv(at_load(resolved, x)[0]) for x in loads]

    def score(self, factor: float | None, load: int, episode: int) -> tuple[float, int]:
        """Settled reward sum and decisions of one episode (``factor`` None: the greedy)."""
        if factor is None:
            policy = make_cell_heuristic(GREEDY, self.scenario)
        else:
            policy = make_cell_heuristic("lite-on-outage", self.scenario)
            assert isinstance(policy, CellLiteOnOutage)
            policy.factor = factor
        rec = run_cell_episode(policy, self.envs[load], self.episodes[episode])
        return float(rec["reward"].sum()) - float(rec["finish_cost"][0]), int(rec["reward"].size)


_WORKER: list[TrainingEpisodes] = []  # a worker process's own environments


def _init_worker(
    resolved: ResolvedScenario, episodes: list[Episode], loads: tuple[float, ...]
) -> None:
    _WORKER.append(TrainingEpisodes(resolved, episodes, loads))


def _worker_score(factor: float | None, load: int, episode: int) -> tuple[float, int]:
    return _WORKER[0].score(factor, load, episode)


def tune(
    resolved: ResolvedScenario,
    episodes: list[Episode],
    loads: Sequence[float],
    workers: int,
    factors: Sequence[float] = FACTORS,
) -> dict[str, float]:
    """Settled mean reward per decision of the greedy and of every factor, in that order."""
    candidates: list[float | None] = [None, *factors]
    jobs = [(f, i, j) for f in candidates for i in range(len(loads)) for j in range(len(episodes))]
    if workers > 1:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(resolved, episodes, tuple(loads)),
        ) as pool:
            parts = list(pool.map(_worker_score, *zip(*jobs, strict=True)))
    else:
        local = TrainingEpisodes(resolved, episodes, loads)
        parts = [local.score(*job) for job in jobs]
    per = len(loads) * len(episodes)
    scores: dict[str, float] = {}
    for k, f in enumerate(candidates):
        chunk = parts[k * per : (k + 1) * per]  # summed in the jobs' order: workers-independent
        label = GREEDY if f is None else f"{f:g}"
        scores[label] = sum(t for t, _ in chunk) / sum(n for _, n in chunk)
    return scores


def best_factor(scores: dict[str, float]) -> float:
    """The best factor; ties within 1e-6 go to the larger one."""
    factors = {float(k): v for k, v in scores.items() if k != GREEDY}
    return max(factors, key=lambda f: (round(factors[f], 6), f))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_training_arguments(parser, scenario="cell_lite", episodes=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    scenario, loads, resolved, described, episodes = training_setup(args)
    if scenario.lite is None:
        raise SystemExit(f"scenario {args.scenario!r} has no device-lite model ('lite:')")
    print(f"training links: {'; '.join(described)}")
    print(
        f"{len(episodes)} training episodes (seed {args.seed}) x loads {loads}, "
        f"{scenario.episode.requests} decisions each"
    )
    scores = tune(resolved, episodes, loads, args.workers)
    for label, score in scores.items():
        name = GREEDY if label == GREEDY else f"lite-on-outage factor {label}"
        print(f"  {name:28s} {score:.4f} settled mean reward per decision")
    command = "python experiments/tuning/tune_cell_lite_factor.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"({time.perf_counter() - started:.0f} s) {command.strip()}")
    print(f"CELL_LITE_SLO_FACTOR = {best_factor(scores):g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
