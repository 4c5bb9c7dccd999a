"""Benchmark: a 4-trial sweep through Ray against the same trials through a local process pool.

The trials are the same (:func:`agents.sweep.plan.plan_trials` of one sweep file: PPO on the
embedded default scenario, then the evaluation); only the scheduler differs:

* ``ray``: ``offload-rl sweep``'s own path (:func:`agents.sweep.driver.run_sweep`): an embedded
  local Ray started and stopped inside the timed region, Tune, one fresh worker process per
  trial;
* ``pool``: what ``results_table.py`` did before the sweep: a thread pool that starts one
  ``python`` process per trial and waits for it (:func:`agents.sweep.trial.run_trial` in it).

Both at the same concurrency (2 trials at a time on the 2 cores), then Ray with 1 at a time for
the scaling. Target (issue 16): Ray's wall time at most 1.10x the pool's. Figures are wall
times of whole sweeps on a shared machine: run it when the machine is quiet, and compare only
figures from the same run.

    nice .venv/bin/python experiments/benchmarks/bench_sweep.py [--timesteps 12288] [--skip-serial]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agents.sweep.config import load_sweep_config
from agents.sweep.driver import run_sweep
from agents.sweep.plan import TrialSpec, plan_trials, write_trial_configs

TARGET = 1.10
TABLE_TRIAL_CORE_S = 31.4 * 60 * 2 / 35  # docs/RESULTS.md: 35 runs of 200k steps, 31.4 min, 2 cores

TRAIN = """\
scenario: default
total_timesteps: {timesteps}
n_envs: 4
vec_env: dummy
episode_requests: 128
checkpoint_every: 4096
eval_every: 100000000
eval_episodes: 1
heuristics: [greedy, oracle]
torch_threads: 1
ppo: {{n_steps: 256, batch_size: 256, n_epochs: 4, net_arch: [64, 64]}}
"""

SWEEP = """\
configs: [train_bench.yaml]
seeds: [0, 1, 2, 3]
evaluate: {{policies: [greedy, oracle], episodes: 2}}
resources: {{cpu: 1}}
max_concurrent: {concurrent}
"""

POOL_TRIAL = """\
import json, sys
from pathlib import Path
from agents.sweep.config import EvaluationConfig
from agents.sweep.plan import TrialSpec
from agents.sweep.trial import run_trial
spec, out, evaluation = json.loads(sys.argv[1])
evaluation = EvaluationConfig.model_validate(evaluation)
record = run_trial(TrialSpec.from_dict(spec), Path(out), evaluation)
sys.exit(0 if record["status"] == "finished" else 1)
"""


def write_sweep(folder: Path, timesteps: int, concurrent: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_bench.yaml").write_text(TRAIN.format(timesteps=timesteps))
    path = folder / f"bench_{concurrent}.yaml"
    path.write_text(SWEEP.format(concurrent=concurrent))
    return path


Records = list[dict[str, float]]


def run_ray(sweep: Path, out: Path) -> tuple[float, Records]:
    start = time.perf_counter()
    outcome = run_sweep(sweep, out, say=lambda _m: None)
    wall = time.perf_counter() - start
    if not outcome.all_finished:
        raise SystemExit(f"ray: a trial did not finish: {out}/results.md")
    return wall, [{"wall_s": r["wall_s"], "cpu_s": r["cpu_s"]} for r in outcome.records]


def run_pool(sweep_path: Path, out: Path, concurrent: int) -> tuple[float, Records]:
    start = time.perf_counter()
    sweep = load_sweep_config(sweep_path)
    trials = plan_trials(sweep)
    write_trial_configs(sweep, trials, out)
    assert sweep.evaluate is not None
    evaluation = sweep.evaluate.model_dump()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the old pool set, one core per process

    def one(trial: TrialSpec) -> int:
        arg = json.dumps([trial.to_dict(), str(out), evaluation])
        return subprocess.run(
            [sys.executable, "-c", POOL_TRIAL, arg], env=env, check=False
        ).returncode

    with ThreadPoolExecutor(max_workers=concurrent) as pool:
        codes = list(pool.map(one, trials))
    wall = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"pool: a trial failed: {codes}")
    records = [json.loads((out / "trials" / t.trial_id / "trial.json").read_text()) for t in trials]
    return wall, [{"wall_s": r["wall_s"], "cpu_s": r["cpu_s"]} for r in records]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timesteps", type=int, default=12288, help="per trial")
    p.add_argument("--skip-serial", action="store_true", help="no 1-at-a-time Ray run")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    two = write_sweep(root, args.timesteps, 2)
    one = write_sweep(root, args.timesteps, 1)
    print(f"4 trials of {args.timesteps} steps + evaluation; folders under {root}", flush=True)

    pool_wall, pool_trials = run_pool(two, root / "pool2", 2)
    print(f"pool, 2 at a time: {pool_wall:.1f} s (trials {_fmt(pool_trials)}){_load()}", flush=True)
    ray_wall, ray_trials = run_ray(two, root / "ray2")
    print(f"ray,  2 at a time: {ray_wall:.1f} s (trials {_fmt(ray_trials)}){_load()}", flush=True)
    ratio = ray_wall / pool_wall
    verdict = "meets" if ratio <= TARGET else "MISSES"
    print(f"ray / pool = {ratio:.3f} ({verdict} the target <= {TARGET:.2f})")

    serial = None
    if not args.skip_serial:
        serial, serial_trials = run_ray(one, root / "ray1")
        print(f"ray,  1 at a time: {serial:.1f} s (trials {_fmt(serial_trials)}){_load()}")
        print(f"scaling 1 -> 2 concurrent trials: {serial / ray_wall:.2f}x faster (ideal 2.00x)")

    overhead = ray_wall - sum(t["wall_s"] for t in ray_trials) / 2
    pool_overhead = pool_wall - sum(t["wall_s"] for t in pool_trials) / 2
    print(
        f"\nbeyond the trials' own time (sweep wall - trial time / 2 slots): Ray {overhead:.1f} s, "
        f"pool {pool_overhead:.1f} s (start-up, worker processes, scheduling, a slot idle at "
        "the end)"
    )
    cpu = [t["cpu_s"] for t in ray_trials]
    share = sum(cpu) / sum(t["wall_s"] for t in ray_trials)
    print(
        f"CPU per trial (Ray, 2 at a time): {_fmt(cpu)}; each trial had {share:.2f} of a core "
        "on average (1.00 = a core of its own; less = other users' jobs)"
    )
    print(cluster_arithmetic(TABLE_TRIAL_CORE_S, max(overhead, 0.0)))
    return 0


def cluster_arithmetic(trial_s: float, overhead_s: float, runs: int = 100) -> str:
    """A ``runs``-trial table on N machines of c cores, one core per trial: waves of N*c."""
    lines = [
        f"A {runs}-run table of the docs/RESULTS.md kind (200k steps; {trial_s:.0f} s per trial "
        f"on one core, from its 35 runs in 31.4 min on 2 cores): wall = ceil({runs} / (N*c)) x "
        f"{trial_s:.0f} s + ~{overhead_s:.0f} s (Ray), one trial per core:"
    ]
    for machines, cores in ((1, 2), (1, 16), (4, 16), (7, 16), (25, 4), (50, 2)):
        waves = math.ceil(runs / (machines * cores))
        wall = waves * trial_s + overhead_s
        lines.append(
            f"  N={machines:>2} x {cores:>2} cores: {waves:>2} wave(s) -> {wall / 60:5.1f} min"
        )
    return "\n".join(lines)


def _load() -> str:
    """The machine's 1-minute load average: other users' jobs change the figures."""
    return f"; load average {os.getloadavg()[0]:.1f}"


def _fmt(values: Records | list[float]) -> str:
    nums = [v["wall_s"] if isinstance(v, dict) else v for v in values]
    return ", ".join(f"{v:.0f}" for v in nums) + " s"


if __name__ == "__main__":
    sys.exit(main())
