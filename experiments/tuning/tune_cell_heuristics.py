"""Tune every free parameter of the cell heuristics on training episodes, and ship the values.

Usage::

    python experiments/tuning/tune_cell_heuristics.py [--scenario cell] [--episodes 1]
        [--loads 1,2] [--seed 2026] [--requests N] [--workers 1]
        [--out offload_rl/data/tuned/cell_heuristics.json]
        [--traces DIR ... --uplink-scale X --test-share 0.25 --split-seed 0]
        [--config experiments/configs/train_cell_split.yaml]

What "training" means here, so that no tuned value has seen an episode it is scored on:

* **links**: a synthetic source (``synthetic:<preset>``, the embedded ``cell`` scenario) is drawn
  with twice the scenario's ``synthetic_traces`` seeds and only the second half is used: traces
  ``0 .. n-1`` are the ones ``offload-rl evaluate`` runs on, ``n .. 2n-1`` are never evaluated.
  Recorded families (``--traces``) are split by the training configs' file rule
  (``agents.train_config.split_by_family``: crc32 of ``seed:file name``) and only the training
  part is used; ``--config`` takes a training config's own training files instead (its
  three-way split and per-family scaling: the files the results table's heuristics are chosen
  on, none of its validation or test files);
* **requests and offsets**: the episodes are drawn with ``--seed`` (default 2026), not the
  evaluation's 0 or the training runs' validation seed 12345;
* **every device of the cell** draws its link from the training traces only.

What it does, in order (each step prints its progress and its best value):

1. fits the return model of the ``gdsf`` cache rule (P(another turn | turn)) on the training
   episodes' sessions;
2. fits the forecast's device queue per OS thermal level (the share of requests that find the
   phone's compute queue busy, and the mean seconds it is still busy then, measured on the
   training episodes under ``greedy``; only requests with device work wait for it, token ids
   to the edge and the cloud do not), refitted after step 3 and kept only if ``greedy`` scores
   better with it than without it on the training episodes;
3. coordinate search over each heuristic's grid (below): every value of one parameter with the
   others fixed, the best kept (one pass). The objective is the
   mean reward per decision over the training episodes at every ``--loads`` level, with the
   cost of finishing each episode's requests counted (``finish_cost``, as evaluation scores).

The default run takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation.cell_rollout import run_cell_episode
from agents.evaluation.episodes import Episode, build_episodes
from agents.train_config import TraceSplit, load_train_config, split_by_family
from envs.edge_cell import EdgeCellEnv
from offload_rl.cell_heuristics.names import make_cell_heuristic
from offload_rl.cell_heuristics.return_model import fit_return_model
from offload_rl.cell_heuristics.tuned import (
    ExternalityParams,
    GDSFParams,
    LyapunovParams,
    PredictorParams,
    ReturnModelParams,
    ThermalMPCParams,
    TunedParams,
    default_tuned_path,
    write_tuned_params,
)
from offload_rl.errors import OffloadRLError
from offload_rl.heuristics import Policy, make_heuristic
from offload_rl.scenario import SYNTHETIC_PREFIX, Scenario, TraceSource, load_scenario
from offload_rl.scenario_facts import ResolvedScenario, resolve_scenario, scenario_facts

GRIDS: dict[str, dict[str, list[Any]]] = {
    "predictor": {
        "estimator": ["ewma", "hmean", "last"],
        "throughput_margin": [0.7, 1.0],
        "output_prev_weight": [0.0, 0.5, 0.8],
    },
    "externality": {"price": [0.0, 0.5, 1.0, 2.0, 4.0]},
    "thermal_mpc": {
        "horizon": [1, 2, 4],
        "heat_price": [0.0, 1.0, 2.0],
        "radio_price": [0.0, 1.0, 2.0],
    },
    "lyapunov": {
        "v": [0.5, 1.0, 2.0],
        "energy_budget_j": [10.0, 20.0, 40.0],
        "slo_budget": [0.1, 0.3],
    },
    "gdsf": {"threshold": [0.0, 1.0, 3.0, 10.0, 30.0]},
}
"""The values searched, per parameter group (see :mod:`offload_rl.cell_heuristics.tuned`)."""

REFERENCES: tuple[str, ...] = ("local", "edge", "cloud", "greedy-ewma-always")
"""Scored on the same training episodes for reference (``greedy-ewma-always``: the
single-device greedy, what ``greedy`` was in the cell before)."""

HEURISTIC_OF: dict[str, str] = {
    "predictor": "greedy",
    "externality": "greedy-externality",
    "thermal_mpc": "thermal-mpc",
    "lyapunov": "lyapunov",
    "gdsf": "greedy+gdsf",
}


# --------------------------------------------------------------------------------------------
# The training episodes
# --------------------------------------------------------------------------------------------


def training_scenario(
    scenario: Scenario, traces: Sequence[str] | None, uplink_scale: float | None, split: TraceSplit
) -> tuple[ResolvedScenario, list[str]]:
    """The scenario on its training links only, and a description of them (see the module)."""
    if traces:
        sources = [
            TraceSource(source=str(Path(t).resolve()), uplink_scale=uplink_scale or 1.0)
            for t in _trace_files(traces)
        ]
        train, _ = split_by_family(sources, split)
        net = scenario.network.model_copy(update={"traces": train})
        resolved = resolve_scenario(scenario.model_copy(update={"network": net}))
        return resolved, [s.source for s in train]
    n = scenario.network.synthetic_traces
    doubled = scenario.network.model_copy(update={"synthetic_traces": 2 * n})
    full = resolve_scenario(scenario.model_copy(update={"network": doubled}))
    keep: list[int] = []
    described: list[str] = []
    start = 0
    for entry in scenario.network.sources():
        if entry.source.startswith(SYNTHETIC_PREFIX):
            keep += range(start + n, start + 2 * n)
            described.append(f"{entry.source} seeds {n}..{2 * n - 1}")
            start += 2 * n
        else:
            raise SystemExit(
                f"{entry.source}: a recorded source in the scenario; pass its folder with "
                "--traces so that its files are split into train and test"
            )
    resolved = ResolvedScenario(
        facts=scenario_facts(scenario),
        uplinks=[full.uplinks[i] for i in keep],
        downlinks=[full.downlinks[i] for i in keep],
    )
    return resolved, described


def config_training_scenario(path: Path) -> tuple[Scenario, list[str]]:
    """The training scenario of a training config (its training files only: the config's own
    split, so no validation or test file is read), and a description of its links."""
    try:
        config = load_train_config(path)
        train, _ = config.scenarios()
    except OffloadRLError as err:
        raise SystemExit(f"--config: {err}") from None
    families: dict[str, int] = {}
    for source in train.network.sources():
        family = Path(source.source).parent.name
        families[family] = families.get(family, 0) + 1
    described = [f"{path}: training files of {f} ({n})" for f, n in sorted(families.items())]
    return train, described


def _trace_files(paths: Sequence[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += [str(f) for f in sorted(path.iterdir()) if f.is_file() and f.name[0] != "."]
        else:
            out.append(str(path))
    return out


def at_load(resolved: ResolvedScenario, load: float) -> tuple[ResolvedScenario, Scenario]:
    """The training links with the cell's arrival rate scaled by ``load``."""
    sc = resolved.scenario
    assert sc.cell is not None
    cell = sc.cell.model_copy(update={"arrival_rate_scale": sc.cell.arrival_rate_scale * load})
    scaled = sc.model_copy(update={"cell": cell})
    return (
        ResolvedScenario(scenario_facts(scaled), resolved.uplinks, resolved.downlinks),
        scaled,
    )


class Objective:
    """Mean reward per decision of a heuristic over the training episodes at every load.

    ``workers`` > 1 runs the (load, episode) pairs in spawned processes; the sums are taken
    in the pairs' order, so the score does not depend on the number of workers."""

    def __init__(
        self,
        resolved: ResolvedScenario,
        episodes: list[Episode],
        loads: Sequence[float],
        workers: int = 1,
    ) -> None:
        self.scenario = resolved.scenario
        self.episodes = episodes
        self.envs = [EdgeCellEnv(at_load(resolved, x)[0]) for x in loads]
        self.calls = 0
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1:
            self.pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(resolved, episodes, tuple(loads)),
            )

    def __call__(self, name: str, params: TunedParams | None) -> float:
        """``params`` None: ``name`` is a single-device heuristic (a reference)."""
        pairs = [(i, j) for i in range(len(self.envs)) for j in range(len(self.episodes))]
        if self.pool is None:
            parts = [_score(self, name, params, i, j) for i, j in pairs]
        else:
            parts = list(
                self.pool.map(
                    _worker_score, *zip(*[(name, params, i, j) for i, j in pairs], strict=True)
                )
            )
        self.calls += 1
        return sum(total for total, _ in parts) / sum(n for _, n in parts)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _score(
    objective: Objective, name: str, params: TunedParams | None, load: int, episode: int
) -> tuple[float, int]:
    """One training episode at one load: its settled reward sum (``finish_cost`` counted, as
    evaluation scores) and its number of decisions."""
    policy: Policy
    if params is None:
        policy = make_heuristic(name, objective.scenario)
    else:
        policy = make_cell_heuristic(name, objective.scenario, params)
    rec = run_cell_episode(policy, objective.envs[load], objective.episodes[episode])
    return float(rec["reward"].sum()) - float(rec["finish_cost"][0]), int(rec["reward"].size)


_WORKER: list[Objective] = []  # the worker process's own objective (its environments)


def _init_worker(
    resolved: ResolvedScenario, episodes: list[Episode], loads: tuple[float, ...]
) -> None:
    _WORKER.append(Objective(resolved, episodes, loads))


def _worker_score(
    name: str, params: TunedParams | None, load: int, episode: int
) -> tuple[float, int]:
    return _score(_WORKER[0], name, params, load, episode)


# --------------------------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------------------------


def fit_returns(objective: Objective) -> ReturnModelParams:
    """The return model from the training episodes' request streams."""
    env = objective.envs[0]
    streams = []
    for ep in objective.episodes:
        env.reset(seed=ep.workload_seed, options=ep.reset_options())
        streams.append(list(env.sim.requests[: env.n_requests]))
    p, sessions = fit_return_model(streams)
    return ReturnModelParams(p_return=p, sessions=sessions)


def fit_device_wait(objective: Objective, params: TunedParams) -> dict[str, list[float]]:
    """Per OS thermal level: the share of requests that find the requesting phone's compute
    queue busy (``device_busy_p``) and the mean seconds it is still busy then
    (``device_wait_s``), under ``greedy`` on the training episodes.

    Two numbers, not the mean wait alone: most requests find the queue free and a few wait
    minutes, so a forecast that adds the mean to every request predicts an SLO miss for
    requests that almost always meet it (the SLO penalty is a step in the wait)."""
    sums = np.zeros(4)
    busy = np.zeros(4)
    counts = np.zeros(4)
    for env in objective.envs:
        policy = make_cell_heuristic("greedy", objective.scenario, params)
        for ep in objective.episodes:
            env.reset(seed=ep.workload_seed, options=ep.reset_options())
            policy.reset()
            while True:
                sim = env.sim
                i = env.request_index
                device = sim.devices[sim.device_of[i]]
                level = int(env.state.thermal_level)
                wait = max(device.busy_until - sim.requests[i].arrival_s, 0.0)
                sums[level] += wait
                busy[level] += wait > 0.0
                counts[level] += 1
                _, _, _, truncated, _ = env.step(policy.act(env.state, env.action_masks()))
                if truncated:
                    break
    share = np.where(counts > 0, busy / np.maximum(counts, 1), 0.0)
    means = np.where(busy > 0, sums / np.maximum(busy, 1), 0.0)
    # a level never seen busy on the training episodes borrows the next lower one's figures
    for level in range(1, 4):
        if busy[level] == 0:
            share[level], means[level] = share[level - 1], means[level - 1]
    return {
        "device_wait_s": [round(float(x), 3) for x in means],
        "device_busy_p": [round(float(x), 4) for x in share],
    }


# --------------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------------


def with_group(params: TunedParams, group: str, values: dict[str, Any]) -> TunedParams:
    current = getattr(params, group)
    return params.model_copy(update={group: current.model_copy(update=values)})


def coordinate_search(
    group: str,
    params: TunedParams,
    objective: Objective,
    log: Callable[[str], None],
    passes: int = 1,
) -> tuple[TunedParams, float]:
    """Each parameter of ``group`` in turn over its grid, the others fixed; best kept."""
    name = HEURISTIC_OF[group]
    best_score = objective(name, params)
    log(f"  {name}: start {best_score:.4f}")
    for _ in range(passes):
        for key, grid in GRIDS[group].items():
            for value in grid:
                if getattr(getattr(params, group), key) == value:
                    continue
                trial = with_group(params, group, {key: value})
                score = objective(name, trial)
                mark = ""
                if score > best_score + 1e-9:
                    best_score, params, mark = score, trial, "  <- best"
                log(f"  {name}: {key}={value}: {score:.4f}{mark}")
    return params, best_score


def _parse_loads(text: str) -> list[float]:
    loads = [float(x) for x in text.replace(" ", ",").split(",") if x]
    if not loads or any(not (x > 0) for x in loads):
        raise SystemExit(f"--loads: positive numbers, got {text!r}")
    return loads


def add_training_arguments(
    parser: argparse.ArgumentParser, scenario: str = "cell", episodes: int = 1
) -> None:
    """The options that choose the training episodes (shared with the other cell tuners)."""
    parser.add_argument("--scenario", default=scenario)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a training config (train_cell_split.yaml): tune on its training files, with its "
        "per-family scaling (replaces --scenario, --traces and the split options)",
    )
    parser.add_argument("--traces", nargs="+", default=None, help="recorded families (folders)")
    parser.add_argument("--uplink-scale", type=float, default=None)
    parser.add_argument("--test-share", type=float, default=0.25)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=episodes, help="per trace family")
    parser.add_argument("--loads", default="1,2")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the training episodes")
    parser.add_argument("--requests", type=int, default=None, help="decisions per episode")
    parser.add_argument("--workers", type=int, default=1, help="processes for the episodes")


def training_setup(
    args: argparse.Namespace,
) -> tuple[Scenario, list[float], ResolvedScenario, list[str], list[Episode]]:
    """From :func:`add_training_arguments`' options: the scenario, the loads, the training
    links (and their description) and the training episodes."""
    if args.config is not None:
        scenario, described = config_training_scenario(args.config)
    else:
        scenario = load_scenario(args.scenario)
    if scenario.cell is None:
        raise SystemExit(f"scenario {args.scenario!r} has no 'cell:' section")
    if args.workers < 1:
        raise SystemExit(f"--workers: at least 1, got {args.workers}")
    if args.requests:
        episode = scenario.episode.model_copy(update={"requests": args.requests})
        scenario = scenario.model_copy(update={"episode": episode})
    loads = _parse_loads(args.loads)
    if args.config is not None:
        resolved = resolve_scenario(scenario)
    else:
        split = TraceSplit(test_share=args.test_share, seed=args.split_seed)
        resolved, described = training_scenario(scenario, args.traces, args.uplink_scale, split)
    episodes = build_episodes(resolved, args.episodes, args.seed)
    return scenario, loads, resolved, described, episodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_training_arguments(parser)
    parser.add_argument("--out", type=Path, default=default_tuned_path())
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {msg}", flush=True)

    scenario, loads, resolved, described, episodes = training_setup(args)
    log(f"training links: {'; '.join(described)}")
    log(f"{len(episodes)} training episodes x loads {loads}, {scenario.episode.requests} decisions")
    objective = Objective(resolved, episodes, loads, args.workers)
    try:
        return _tune(args, argv, scenario, loads, described, episodes, objective, log)
    finally:
        objective.close()


def _tune(
    args: argparse.Namespace,
    argv: list[str] | None,
    scenario: Scenario,
    loads: list[float],
    described: list[str],
    episodes: list[Episode],
    objective: Objective,
    log: Callable[[str], None],
) -> int:
    """Fits and searches (the module docstring's steps), then writes the tuned values."""

    params = TunedParams(
        command="",
        date="",
        training={},
        predictor=PredictorParams(),
        externality=ExternalityParams(),
        thermal_mpc=ThermalMPCParams(),
        lyapunov=LyapunovParams(),
        gdsf=GDSFParams(),
        return_model=ReturnModelParams(p_return=[0.5]),
    )
    params = params.model_copy(update={"return_model": fit_returns(objective)})
    log(f"return model: {params.return_model.p_return} ({params.return_model.sessions} sessions)")
    wait = fit_device_wait(objective, params)
    params = with_group(params, "predictor", wait)
    log(f"device queue per thermal level: busy share, seconds when busy: {wait}")
    scores: dict[str, float] = {}
    for name in REFERENCES:
        scores[name] = objective(name, None)
        log(f"reference {name}: {scores[name]:.4f}")
    log("forecast (greedy):")
    params, scores["greedy"] = coordinate_search("predictor", params, objective, log)
    wait = fit_device_wait(objective, params)  # again, under the tuned forecast
    params = with_group(params, "predictor", wait)
    scores["greedy"] = objective("greedy", params)
    log(f"device queue, refitted: {wait}; greedy {scores['greedy']:.4f}")
    no_wait = with_group(params, "predictor", {"device_wait_s": [0.0] * 4})
    without = objective("greedy", no_wait)
    log(f"greedy without the device queue wait: {without:.4f}")
    if without >= scores["greedy"] - 1e-9:  # the wait is kept only where training wants it
        params, scores["greedy"] = no_wait, without
    for group in ("externality", "thermal_mpc", "lyapunov", "gdsf"):
        log(f"{HEURISTIC_OF[group]}:")
        params, scores[HEURISTIC_OF[group]] = coordinate_search(group, params, objective, log)
    for name in ("greedy-externality+gdsf", "thermal-mpc+gdsf", "lyapunov+gdsf"):
        scores[name] = objective(name, params)
    command = "python experiments/tuning/tune_cell_heuristics.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    params = params.model_copy(
        update={
            "command": command.strip(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "training": {
                "scenario": args.scenario,
                "links": described,
                "loads": loads,
                "episode_seed": args.seed,
                "requests_per_episode": scenario.episode.requests,
                "episodes": [
                    {
                        "family": e.family,
                        "trace": e.trace_name,
                        "offset_s": e.offset_s,
                        "workload_seed": e.workload_seed,
                    }
                    for e in episodes
                ],
            },
            "scores": {k: round(v, 5) for k, v in scores.items()},
        }
    )
    write_tuned_params(params, args.out)
    log(f"{objective.calls} evaluations; wrote {args.out}")
    for name, score in scores.items():
        print(f"  {name:26s} {score:.4f} mean reward per decision (training episodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
