"""The cell's results table: PPO over seeds against every tuned cell heuristic and the oracle.

(Over 500 lines: the table's text, the targets and the discussion are written here too.)

What it runs, for a training config with a three-way split by trace file
(``experiments/configs/train_cell_split.yaml``: train / validation / test files of four recorded
families; nyc-lte, the family ``train_lofo_nyc-lte.yaml`` leaves out, never trained on):

1. **training** (``--train``): ``offload-rl train --config C --seed k --out RUNS/seed<k>`` for
   every seed not finished yet (an interrupted run is resumed from its checkpoint);
   ``--train-jobs`` at a time. Without ``--train`` the runs in ``--runs`` are used as they are.
2. **the best heuristic, chosen on the training files**: every deployable heuristic over
   episodes of the *training* files (seed 2026, as the heuristics' tuning), at each load; the
   best mean reward per load is the one PPO is compared with (never chosen on the test files);
3. **evaluation** on the *test* files, one cell per family (all phones on that family's test
   files: device 0 pinned to the episode's file, the others drawn among them), and on the
   left-out family, at each load: PPO (each seed's ``best/`` checkpoint, chosen on the
   validation files, or ``final/``), every heuristic and, on the first ``--oracle-episodes``
   episodes of each family only (it plans ~0.1 s per decision), the hindsight oracle.

Reward: the mean per decision of an episode *with its finish cost*
(``(sum of rewards - finish_cost) / decisions``: what accrues after the last decision until
every request the episode decided has left the cell, which the truncated rewards leave out).
p95 latency and the SLO-violation rate are per finished request (pooled over episodes), device
energy per decision. PPO's reward is the mean over seeds of each seed's mean (95% t-interval
over seeds); its other columns are means over seeds. The paired difference is, per episode,
the seeds' mean reward minus the best heuristic's (95% t-interval over episodes), beside the
per-seed means of that difference.

Per (set, policy) results are cached under ``OUT/evals`` (a rerun evaluates only what is
missing, e.g. a new seed), the table goes to ``OUT/table.json`` and ``--markdown``.

    python experiments/analyses/cell_results_table.py --train --runs runs/cell_split \\
        --out runs/cell_table --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from agents.evaluation.confidence import mean_ci95
from agents.train_config import TrainConfig, load_train_config

if TYPE_CHECKING:
    from offload_rl.scenario import Scenario, TraceSource

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "experiments" / "configs" / "train_cell_split.yaml"
LEFT_OUT_CONFIG = REPO / "experiments" / "configs" / "train_lofo_nyc-lte.yaml"
TRIVIAL: tuple[str, ...] = ("local", "edge", "cloud")
TUNED: tuple[str, ...] = ("greedy", "greedy-externality", "thermal-mpc", "lyapunov")
HEURISTICS: tuple[str, ...] = (*TRIVIAL, *TUNED, *(f"{b}+gdsf" for b in TUNED))
ORACLE = "oracle"
SELECT_SEED = 2026  # the tuning script's episode seed: training episodes, never evaluated
EVAL_SEED = 0  # offload-rl evaluate's default
TARGET_GAIN = 0.05  # the issue: at least 5% of the best heuristic's |reward|


def _say(text: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {text}", flush=True)


# --------------------------------------------------------------------------------------------
# The episode sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSet:
    """A cell of one family's links: ``held-out`` (test files of a training family) or
    ``left-out`` (a family never trained on)."""

    name: str
    kind: str
    scenario: Scenario
    files: int


def _family(source: TraceSource) -> str:
    return Path(source.source).parent.name


def _cell_on(config: TrainConfig, sources: Sequence[TraceSource]) -> Scenario:
    base = config.base_scenario()
    network = base.network.model_copy(update={"traces": list(sources)})
    return base.model_copy(update={"network": network})


def eval_sets(config: TrainConfig) -> list[EvalSet]:
    """One cell per training family on its test files, and one on the left-out family."""
    test = config.test_sources()
    if test is None:
        raise SystemExit(
            f"{config.config_file}: trace_split.validation_share: the table needs a three-way "
            "split (test files that no part of training reads)"
        )
    sets = []
    for family in sorted({_family(s) for s in test}):
        files = [s for s in test if _family(s) == family]
        sets.append(EvalSet(family, "held-out", _cell_on(config, files), len(files)))
    _, left_out = load_train_config(LEFT_OUT_CONFIG).trace_sets()
    assert left_out is not None, f"{LEFT_OUT_CONFIG}: names no validation_traces"
    trained = {_family(s) for s in test}
    for family in sorted({_family(s) for s in left_out} - trained):
        files = [s for s in left_out if _family(s) == family]
        sets.append(EvalSet(family, "left-out", _cell_on(config, files), len(files)))
    return sets


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def run_dir(runs: Path, seed: int) -> Path:
    return runs / f"seed{seed}"


def train_seeds(
    config: Path, runs: Path, seeds: Sequence[int], jobs: int, steps: int | None
) -> None:
    """Train (or resume) every seed without a ``summary.json``, ``jobs`` at a time."""
    todo = [s for s in seeds if not (run_dir(runs, s) / "summary.json").is_file()]
    if not todo:
        _say(f"training: every seed in {runs} is finished")
        return
    runs.mkdir(parents=True, exist_ok=True)
    running: list[tuple[int, subprocess.Popen[bytes], float, IO[bytes]]] = []
    while todo or running:
        while todo and len(running) < jobs:
            seed = todo.pop(0)
            out = run_dir(runs, seed)
            cmd = [sys.executable, "-m", "offload_rl.cli", "train", "--no-progress"]
            if (out / "config.yaml").is_file():
                cmd += ["--resume", str(out)]
            else:
                cmd += ["--config", str(config), "--seed", str(seed), "--out", str(out)]
            if steps is not None:
                cmd += ["--timesteps", str(steps)]
            out.mkdir(parents=True, exist_ok=True)
            log: IO[bytes] = (out.parent / f"seed{seed}.log").open("ab")
            _say(f"training seed {seed}: {shlex.join(cmd)} (log {log.name})")
            running.append((seed, subprocess.Popen(cmd, stdout=log, stderr=log), time.time(), log))
        time.sleep(5)
        for item in list(running):
            seed, proc, started, done_log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            done_log.close()
            took = (time.time() - started) / 60
            if proc.returncode != 0:
                raise SystemExit(f"training seed {seed} failed (rc {proc.returncode}); see its log")
            _say(f"seed {seed} trained in {took:.1f} min")


def training_facts(runs: Path, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Each run's throughput, best validation step and reward (from its ``summary.json``)."""
    facts = []
    for seed in seeds:
        summary = json.loads((run_dir(runs, seed) / "summary.json").read_text())
        facts.append(
            {
                "seed": seed,
                "steps": summary["num_timesteps"],
                "learn_wall_s": summary["learn_wall_s"],
                "env_steps_per_s": summary["env_steps_per_s"],
                "warm_start_s": (summary.get("warm_start") or {}).get("wall_s"),
                "best_step": summary["best"]["step"],
                "best_validation": summary["best"]["mean_reward"],
                "final_validation": summary["curve"][-1]["mean_reward"],
            }
        )
    return facts


# --------------------------------------------------------------------------------------------
# Evaluation (cached per set and policy)
# --------------------------------------------------------------------------------------------


def episode_score(record: dict[str, np.ndarray]) -> float:
    """Mean reward per decision with the episode's finish cost counted (the cell's headline
    score, :func:`agents.evaluation.cell_rollout.settled_reward`)."""
    from agents.evaluation.cell_rollout import settled_reward

    return settled_reward(record)


def policy_entry(records: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """What the table needs of one policy's episodes at one load."""
    latency = np.concatenate([r["req_latency_s"] for r in records])
    slo = np.concatenate([r["req_slo_violated"] for r in records])
    energy = np.concatenate([r["energy_j"] for r in records])
    edge = np.concatenate([r["tier_index"] for r in records])
    return {
        "scores": [episode_score(r) for r in records],
        "p95_s": float(np.percentile(latency, 95)) if latency.size else math.nan,
        "slo": float(slo.mean()) if slo.size else math.nan,
        "j_per_decision": float(energy.mean()),
        "tier_share": [float((edge == t).mean()) for t in range(int(edge.max()) + 1)],
    }


def evaluate_set(
    eval_set: EvalSet,
    specs: dict[str, str],
    episodes: int,
    loads: Sequence[float],
    seed: int,
    workers: int,
    cache: Path,
) -> dict[str, dict[str, Any]]:
    """``label -> {load: entry}`` for every policy (``label -> spec``), evaluating the missing."""
    from agents.evaluation.cell_runner import evaluate_cell

    folder = cache / f"{eval_set.name}_seed{seed}_ep{episodes}"
    folder.mkdir(parents=True, exist_ok=True)
    key = {"loads": list(loads), "episodes": episodes, "seed": seed}
    out: dict[str, dict[str, Any]] = {}
    missing = []
    for label, spec in specs.items():
        path = folder / f"{label}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            if data["key"] == key and data["spec"] == spec:
                out[label] = data["loads"]
                continue
        missing.append(label)
    if missing:
        t0 = time.perf_counter()
        _say(f"{eval_set.name}: {len(missing)} policies x {episodes} episodes x {len(loads)} loads")
        result = evaluate_cell(
            [specs[m] for m in missing],
            eval_set.scenario,
            episodes,
            seed=seed,
            workers=workers,
            progress=sys.stderr.isatty(),
            loads=loads,
        )
        n = len(result.episodes)
        for label in missing:
            recs = result.records[specs[label]]
            by_load = {
                f"{x:g}": policy_entry(recs[i * n : (i + 1) * n]) for i, x in enumerate(loads)
            }
            data = {"key": key, "spec": specs[label], "loads": by_load}
            (folder / f"{label}.json").write_text(json.dumps(data) + "\n")
            out[label] = by_load
        _say(f"{eval_set.name}: done in {time.perf_counter() - t0:.0f} s")
    return out


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _ci(values: Sequence[float]) -> tuple[float, float]:
    return mean_ci95(np.asarray(values, dtype=np.float64))


def ppo_row(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """PPO over seeds: mean of per-seed means (t over seeds) and the other columns' means."""
    means = [float(np.mean(e["scores"])) for e in entries]
    mean, half = _ci(means)
    return {
        "reward": mean,
        "ci": half,
        "p95_s": float(np.mean([e["p95_s"] for e in entries])),
        "slo": float(np.mean([e["slo"] for e in entries])),
        "j_per_decision": float(np.mean([e["j_per_decision"] for e in entries])),
        "per_seed": means,
        "scores": np.mean([e["scores"] for e in entries], axis=0).tolist(),
    }


def heuristic_row(entry: dict[str, Any]) -> dict[str, Any]:
    mean, half = _ci(entry["scores"])
    return {**entry, "reward": mean, "ci": half}


def paired(ppo: dict[str, Any], seeds: Sequence[dict[str, Any]], best: dict[str, Any]) -> dict:
    """PPO (mean over seeds, per episode) minus the best heuristic, and the targets' checks."""
    diff = np.asarray(ppo["scores"]) - np.asarray(best["scores"])
    d, half = _ci(diff)
    per_seed = [float(np.mean(np.asarray(s["scores"]) - best["scores"])) for s in seeds]
    gain = d / abs(best["reward"]) if best["reward"] else math.nan
    return {
        "diff": d,
        "ci": half,
        "gain": gain,
        "better_episodes": int((diff > 0).sum()),
        "episodes": int(diff.size),
        "per_seed": per_seed,
        "ci_above_zero": bool(d - half > 0),
        "not_worse": bool(d + half >= 0),
        "p95_not_worse": bool(ppo["p95_s"] <= best["p95_s"]),
        "slo_not_worse": bool(ppo["slo"] <= best["slo"]),
    }


def target_met(kind: str, pair: dict[str, Any]) -> bool:
    """The issue's target for a paired comparison: held-out files: the CI above zero, a gain
    of at least 5%, p95 and SLO not worse; the left-out family: not worse."""
    if kind != "held-out":
        return bool(pair["not_worse"])
    return bool(
        pair["ci_above_zero"]
        and pair["gain"] >= TARGET_GAIN
        and pair["p95_not_worse"]
        and pair["slo_not_worse"]
    )


def build_table(
    sets: Sequence[EvalSet],
    results: dict[str, dict[str, dict[str, Any]]],
    oracle: dict[str, dict[str, Any]],
    best: dict[str, str],
    seeds: Sequence[int],
    loads: Sequence[float],
    oracle_episodes: int,
) -> list[dict[str, Any]]:
    """One block per (set, load): every policy's row, the paired difference, the targets."""
    blocks = []
    for s in sets:
        for load in loads:
            lv = f"{load:g}"
            res = results[s.name]
            seed_entries = [res[f"ppo-seed{k}"][lv] for k in seeds]
            rows = {"PPO": ppo_row(seed_entries)}
            rows.update({h: heuristic_row(res[h][lv]) for h in HEURISTICS})
            chosen = best[lv]
            pair = paired(rows["PPO"], seed_entries, rows[chosen])
            orc = oracle.get(s.name, {}).get(ORACLE, {}).get(lv)
            subset = None
            if orc is not None:
                k = len(orc["scores"])
                subset = {
                    "oracle": heuristic_row(orc),
                    "ppo": float(np.mean(rows["PPO"]["scores"][:k])),
                    "best": float(np.mean(rows[chosen]["scores"][:k])),
                    "episodes": k,
                }
            target = target_met(s.kind, pair)
            blocks.append(
                {
                    "set": s.name,
                    "kind": s.kind,
                    "files": s.files,
                    "load": load,
                    "best": chosen,
                    "rows": rows,
                    "paired": pair,
                    "oracle": subset,
                    "target_met": bool(target),
                    "oracle_episodes_per_family": oracle_episodes,
                }
            )
    return blocks


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def markdown(table: dict[str, Any]) -> str:
    """The generated part of docs/CELL_RESULTS.md (the discussion is kept by the caller)."""
    lines = _header_lines(table) + _busy_lines(table) + _training_lines(table)
    lines += _summary_lines(table)
    lines += ["", "**Results** (reward: mean per decision with the finish cost, 95% CI):", ""]
    for b in table["blocks"]:
        lines += _block_lines(b)
    return "\n".join(lines)


def _header_lines(table: dict[str, Any]) -> list[str]:
    """How the table was made (command, commit, settings) and the heuristic chosen per load:
    a reader must be able to rerun it and see that the choice used the training files only."""
    lines = [
        f"Generated by `{table['command']}` on {table['date']} (commit `{table['commit']}`, "
        f"{table['machine']}); evaluation {table['eval_wall_s']:.0f} s.",
        "",
        f"Config `{table['config']}`, seeds {table['seeds']}, checkpoint `{table['checkpoint']}/`;"
        f" loads {table['loads']}; {table['episodes']} episodes per family and load "
        f"({table['left_out_episodes']} on the left-out family), evaluation seed {EVAL_SEED}; "
        f"oracle on the first {table['oracle_episodes']} of them, on "
        f"{', '.join(table['oracle_sets'])}.",
        "",
        "**Best heuristic, chosen on the training files** (mean reward per decision with the "
        f"finish cost, {table['select_episodes']} episodes per family, seed {SELECT_SEED}):",
        "",
        "| load | " + " | ".join(HEURISTICS) + " | chosen |",
        "|------|" + "|".join("---" for _ in HEURISTICS) + "|--------|",
    ]
    for lv, scores in table["selection"].items():
        cells = " | ".join(_fmt(scores[h]) for h in HEURISTICS)
        lines.append(f"| {lv} | {cells} | {table['best'][lv]} |")
    return lines


def _busy_lines(table: dict[str, Any]) -> list[str]:
    """How loaded the edge GPU is per policy and load (empty when not measured): it says what
    the table's load levels mean for the shared edge."""
    if not table["busy"]:
        return []
    busy_loads = sorted({lv for v in table["busy"].values() for lv in v}, key=float)
    lines = [
        "",
        "**How loaded the edge GPU is**: mean running batch / KV-pool occupancy that the "
        "decisions find (same training episodes):",
        "",
        "| policy | " + " | ".join(f"load {lv}" for lv in busy_loads) + " |",
        "|--------|" + "|".join("---" for _ in busy_loads) + "|",
    ]
    for name, by_load in table["busy"].items():
        cells = " | ".join(
            f"{by_load[lv][0]:.2f} / {by_load[lv][1]:.2f}" if lv in by_load else "n/a"
            for lv in busy_loads
        )
        lines.append(f"| {name} | {cells} |")
    return lines


def _training_lines(table: dict[str, Any]) -> list[str]:
    """Each seed's training facts, so that a weak seed is visible beside the means."""
    lines = [
        "",
        "**Training** (each seed's `summary.json`):",
        "",
        "| seed | steps | learn s | env steps/s | best step | best validation | final validation |",
        "|------|-------|---------|-------------|-----------|-----------------|------------------|",
    ]
    for f in table["training"]:
        lines.append(
            f"| {f['seed']} | {f['steps']} | {f['learn_wall_s']:.0f} | {f['env_steps_per_s']:.0f}"
            f" | {f['best_step']} | {_fmt(f['best_validation'])} | "
            f"{_fmt(f['final_validation'])} |"
        )
    return lines


def _summary_lines(table: dict[str, Any]) -> list[str]:
    """One row per set and load: PPO against the chosen heuristic and whether the target is met
    (the headline that the per-block results below back up)."""
    lines = [
        "",
        "**Summary**: PPO (mean over seeds) against the heuristic chosen on the training files; "
        "paired difference per episode (95% CI over episodes), its share of the heuristic's "
        "|reward|, PPO's p95 latency and SLO-violation rate beside the heuristic's. Target "
        f"(held-out): CI above zero, gain >= {100 * TARGET_GAIN:.0f}%, p95 and SLO not worse; "
        "(left-out): the CI's upper end >= 0.",
        "",
        "| set | load | best heuristic | its reward | PPO reward | PPO - best | gain | "
        "p95 s PPO / best | SLO PPO / best | target |",
        "|-----|------|----------------|------------|------------|------------|------|"
        "------------------|----------------|--------|",
    ]
    for b in table["blocks"]:
        p, ppo, h = b["paired"], b["rows"]["PPO"], b["rows"][b["best"]]
        lines.append(
            f"| {b['set']} ({b['kind']}) | {b['load']:g} | {b['best']} | {_fmt(h['reward'])} | "
            f"{_fmt(ppo['reward'])} +- {_fmt(ppo['ci'])} | {p['diff']:+.3f} +- {_fmt(p['ci'])} | "
            f"{100 * p['gain']:+.1f}% | {_fmt(ppo['p95_s'], 1)} / {_fmt(h['p95_s'], 1)} | "
            f"{_fmt(ppo['slo'])} / {_fmt(h['slo'])} | {'met' if b['target_met'] else 'not met'} |"
        )
    return lines


def _block_lines(b: dict[str, Any]) -> list[str]:
    """One set and load in full: the paired comparison, every policy's row and the oracle's
    (on its own, smaller episode subset, with PPO's and the best's on the same episodes)."""
    p = b["paired"]
    lines = [
        f"*{b['set']}* ({b['kind']}, {b['files']} files), load {b['load']:g}: PPO minus "
        f"{b['best']} {p['diff']:+.3f} +- {_fmt(p['ci'])} ({100 * p['gain']:+.1f}% of "
        f"|{b['best']}|), PPO better on {p['better_episodes']}/{p['episodes']} episodes; "
        f"per seed {', '.join(f'{x:+.3f}' for x in p['per_seed'])}; target "
        f"{'met' if b['target_met'] else 'not met'}.",
        "",
        "| policy | reward | p95 s | SLO | J/decision |",
        "|--------|--------|-------|-----|------------|",
    ]
    for name, row in b["rows"].items():
        mark = " (best on training)" if name == b["best"] else ""
        lines.append(
            f"| {name}{mark} | {_fmt(row['reward'])} +- {_fmt(row['ci'])} | "
            f"{_fmt(row['p95_s'], 1)} | {_fmt(row['slo'])} | {_fmt(row['j_per_decision'], 1)} |"
        )
    o = b["oracle"]
    if o is not None:
        lines.append(
            f"| oracle (first {o['episodes']} episodes) | {_fmt(o['oracle']['reward'])} +- "
            f"{_fmt(o['oracle']['ci'])} | {_fmt(o['oracle']['p95_s'], 1)} | "
            f"{_fmt(o['oracle']['slo'])} | {_fmt(o['oracle']['j_per_decision'], 1)} |"
        )
        lines.append(
            f"| (same {o['episodes']} episodes: PPO {_fmt(o['ppo'])}, {b['best']} "
            f"{_fmt(o['best'])}) | | | | |"
        )
    lines.append("")
    return lines


BEGIN = "<!-- generated by experiments/analyses/cell_results_table.py: begin -->"
END = "<!-- generated by experiments/analyses/cell_results_table.py: end -->"


def write_generated(path: Path, text: str) -> None:
    """Replace the generated part of ``path`` (between the markers), keeping the prose around
    it; a file without the markers gets them at its end."""
    block = f"{BEGIN}\n{text}\n{END}"
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + block + rest.split(END, 1)[1]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    path.write_text(new)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def select_best(
    config: TrainConfig, loads: Sequence[float], episodes: int, workers: int, cache: Path
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Every heuristic's mean reward on the training files per load, and the best per load."""
    train_scenario, _ = config.scenarios()
    train_set = EvalSet("training-files", "train", train_scenario, 0)
    specs = {h: h for h in HEURISTICS}
    res = evaluate_set(train_set, specs, episodes, loads, SELECT_SEED, workers, cache)
    scores = {
        f"{x:g}": {h: float(np.mean(res[h][f"{x:g}"]["scores"])) for h in HEURISTICS} for x in loads
    }
    best = {lv: max(s, key=lambda h: s[h]) for lv, s in scores.items()}
    return scores, best


def edge_load(
    scenario: Scenario, policies: Sequence[str], loads: Sequence[float], episodes: int, cache: Path
) -> dict[str, dict[str, list[float]]]:
    """How loaded the edge GPU is, per policy and load, on the training files: the mean running
    batch and KV-pool occupancy that the decisions find (what the two loads are chosen by).

    Not ``busy_s / clock`` of the server: an episode's end settles every request it decided
    (``finish_cost``), and at high load the phones' compute queues stretch that settling far
    past the last decision while the edge idles, so that ratio *falls* as the load rises; and
    the share of decisions that find the GPU running is ~1 at every load measured (0.5-3)."""
    from agents.evaluation.cell_rollout import run_cell_episode
    from agents.evaluation.cell_runner import _at_load
    from agents.evaluation.episodes import build_episodes
    from agents.policies import resolve_policy
    from envs.edge_cell import EdgeCellEnv
    from offload_rl.scenario_facts import resolve_scenario

    path = cache / f"edge_load_seed{SELECT_SEED}_ep{episodes}.json"
    done: dict[str, dict[str, list[float]]] = json.loads(path.read_text()) if path.is_file() else {}
    eps = build_episodes(resolve_scenario(scenario), episodes, SELECT_SEED)
    for name in policies:
        for load in loads:
            if f"{load:g}" in done.get(name, {}):
                continue
            env = EdgeCellEnv(_at_load(scenario, load))
            policy = resolve_policy(name, scenario)
            recs = [run_cell_episode(policy, env, ep) for ep in eps]
            batch = float(np.concatenate([r["edge_batch"] for r in recs]).mean())
            kv = float(np.concatenate([r["edge_kv_occupancy"] for r in recs]).mean())
            done.setdefault(name, {})[f"{load:g}"] = [batch, kv]
            _say(f"edge under {name} at load {load:g}: batch {batch:.2f}, KV {kv:.2f}")
            cache.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(done) + "\n")
    return {name: done[name] for name in policies}


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True)
        return out.stdout.decode().strip() or "unknown"
    except OSError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    """The command line (kept apart from main so that main reads as the run's steps)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG), help="training config (three-way split)")
    parser.add_argument("--runs", required=True, help="folder of the runs: RUNS/seed<k>")
    parser.add_argument("--train", action="store_true", help="train the seeds not finished")
    parser.add_argument("--train-jobs", type=int, default=1, help="trainings at a time")
    parser.add_argument("--timesteps", type=int, default=None, help="override the config's")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--checkpoint", choices=["best", "final"], default="best")
    parser.add_argument("--loads", default="1,2")
    parser.add_argument("--episodes", type=int, default=4, help="per family and load")
    parser.add_argument("--left-out-episodes", type=int, default=8)
    parser.add_argument("--oracle-episodes", type=int, default=1, help="per family (0: none)")
    parser.add_argument(
        "--oracle-sets", default=None, help="sets to run the oracle on (default: every set)"
    )
    parser.add_argument("--select-episodes", type=int, default=2, help="per family, training")
    parser.add_argument(
        "--busy-loads", default="0.5,1,2,3,4", help="loads to measure the edge's load at"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--markdown", default=None, help="write the table (e.g. docs/CELL_RESULTS.md)"
    )
    return parser


def _start_training(
    args: argparse.Namespace, runs: Path, seeds: list[int]
) -> tuple[threading.Thread | None, list[BaseException]]:
    """With --train, train the unfinished seeds in a thread (subprocesses) while the heuristics
    are evaluated; the list receives the thread's failure, for the main thread to report.
    Without --train, every seed must already have a finished run."""
    trainer: threading.Thread | None = None
    failure: list[BaseException] = []
    if args.train:  # the heuristics are evaluated while the seeds train (subprocesses)

        def _train() -> None:
            try:
                train_seeds(Path(args.config), runs, seeds, args.train_jobs, args.timesteps)
            except BaseException as err:  # reported by the main thread
                failure.append(err)

        trainer = threading.Thread(target=_train, daemon=True)
        trainer.start()
    elif unfinished := [k for k in seeds if not (run_dir(runs, k) / "summary.json").is_file()]:
        raise SystemExit(f"{runs}: seeds {unfinished} have no finished run (train with --train)")
    return trainer, failure


def _evaluate_heuristics(
    args: argparse.Namespace,
    sets: Sequence[EvalSet],
    episodes: dict[str, int],
    oracle_sets: set[str] | None,
    loads: Sequence[float],
    cache: Path,
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Every heuristic on every set, and the oracle on the first episodes of the chosen sets
    (it is slow): what PPO is compared with, computed while the seeds may still train."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    oracle: dict[str, dict[str, Any]] = {}
    heuristics = {h: h for h in HEURISTICS}
    for s in sets:
        n = episodes[s.name]
        results[s.name] = evaluate_set(s, heuristics, n, loads, EVAL_SEED, args.workers, cache)
        if args.oracle_episodes > 0 and (oracle_sets is None or s.name in oracle_sets):
            k = min(args.oracle_episodes, n)
            oracle[s.name] = evaluate_set(
                s, {ORACLE: ORACLE}, k, loads, EVAL_SEED, args.workers, cache
            )
    return results, oracle


def _table_facts(
    argv: Sequence[str] | None,
    args: argparse.Namespace,
    sets: Sequence[EvalSet],
    seeds: list[int],
    loads: list[float],
    oracle_sets: set[str] | None,
) -> dict[str, Any]:
    """How the table was made (command, date, commit, machine, settings): the provenance that
    goes at the head of the table, so that it can be rerun."""
    return {
        "command": "python experiments/analyses/cell_results_table.py "
        + shlex.join(list(argv) if argv is not None else sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "config": str(Path(args.config).resolve().relative_to(REPO))
        if Path(args.config).resolve().is_relative_to(REPO)
        else args.config,
        "seeds": seeds,
        "checkpoint": args.checkpoint,
        "loads": loads,
        "episodes": args.episodes,
        "left_out_episodes": args.left_out_episodes,
        "oracle_episodes": args.oracle_episodes,
        "oracle_sets": sorted(oracle_sets) if oracle_sets is not None else [s.name for s in sets],
        "select_episodes": args.select_episodes,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Choose the best heuristic on the training files, evaluate it, the oracle and every PPO
    seed on the held-out and left-out sets, and write the table (json, markdown)."""
    args = _parser().parse_args(argv)

    t0 = time.perf_counter()
    out = Path(args.out)
    cache = out / "evals"
    runs = Path(args.runs)
    seeds = list(range(args.seeds))
    loads = [float(x) for x in args.loads.split(",")]
    config = load_train_config(args.config)
    sets = eval_sets(config)
    _say(
        "sets: "
        + ", ".join(f"{s.name} ({s.kind}, {s.files} files)" for s in sets)
        + f"; loads {loads}; seeds {seeds}"
    )
    trainer, failure = _start_training(args, runs, seeds)
    t_eval = time.perf_counter()
    selection, best = select_best(config, loads, args.select_episodes, args.workers, cache)
    _say("best on the training files: " + ", ".join(f"load {k}: {v}" for k, v in best.items()))
    busy_loads = [float(x) for x in args.busy_loads.split(",")] if args.busy_loads else []
    busy = edge_load(
        config.scenarios()[0],
        sorted({*best.values(), "edge"}),
        busy_loads,
        args.select_episodes,
        cache,
    )
    episodes = {
        s.name: args.episodes if s.kind == "held-out" else args.left_out_episodes for s in sets
    }
    oracle_sets = set(args.oracle_sets.split(",")) if args.oracle_sets else None
    results, oracle = _evaluate_heuristics(args, sets, episodes, oracle_sets, loads, cache)
    if trainer is not None:
        _say("heuristics done; waiting for the training")
        trainer.join()
        if failure:
            raise SystemExit(f"training failed: {failure[0]}")
    ppo = {
        f"ppo-seed{k}": f"sb3:{run_dir(runs, k).resolve() / args.checkpoint / 'model.zip'}"
        for k in seeds
    }
    for s in sets:
        results[s.name].update(
            evaluate_set(s, ppo, episodes[s.name], loads, EVAL_SEED, args.workers, cache)
        )
    blocks = build_table(sets, results, oracle, best, seeds, loads, args.oracle_episodes)
    table = _table_facts(argv, args, sets, seeds, loads, oracle_sets)
    table |= {
        "selection": selection,
        "best": best,
        "busy": busy,
        "training": training_facts(runs, seeds),
        "blocks": blocks,
        "eval_wall_s": time.perf_counter() - t_eval,
    }
    (out / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    text = markdown(table)
    (out / "table.md").write_text(text + "\n")
    if args.markdown:
        write_generated(Path(args.markdown), text)
    print(text)
    _say(f"done in {time.perf_counter() - t0:.0f} s; {out / 'table.json'}")


if __name__ == "__main__":
    main()
