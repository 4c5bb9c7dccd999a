"""A whole sweep: plan the trials, refuse or resume an existing output folder, run them on
Ray, write the summary. ``offload-rl sweep`` and ``experiments/analyses/results_table.py`` both
call :func:`run_sweep`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.sweep.config import SweepConfig, load_sweep_config
from agents.sweep.plan import TRIALS_DIR, TrialSpec, plan_trials, write_trial_configs
from agents.sweep.summary import write_summary
from agents.sweep.trial import FINISHED, read_record, trial_dir
from offload_rl.errors import ConfigError


@dataclass
class SweepOutcome:
    """What a sweep produced: its trials and their records, in plan order."""

    config: SweepConfig
    out: Path
    trials: list[TrialSpec]
    records: list[dict[str, Any]]
    report: dict[str, Any]

    @property
    def all_finished(self) -> bool:
        return all(r.get("status") == FINISHED for r in self.records)


def default_out(sweep_file: Path) -> Path:
    return Path("runs") / "sweeps" / sweep_file.stem


def run_sweep(
    sweep_file: str | Path,
    out: str | Path | None = None,
    address: str | None = None,
    resume: bool = False,
    say: Callable[[str], None] | None = None,
    command: str = "",
) -> SweepOutcome:
    """Run (or continue, with ``resume``) the sweep of ``sweep_file`` into ``out``."""
    say = say or _print
    started = time.perf_counter()
    sweep = load_sweep_config(sweep_file)
    folder = (Path(out) if out is not None else default_out(Path(sweep_file))).resolve()
    trials = plan_trials(sweep)
    if not resume and (folder / TRIALS_DIR).is_dir() and any((folder / TRIALS_DIR).iterdir()):
        raise ConfigError(f"{folder} already holds a sweep: continue it with --resume")
    write_trial_configs(sweep, trials, folder)
    finished = [
        t
        for t in trials
        if (read_record(trial_dir(folder, t.trial_id)) or {}).get("status") == FINISHED
    ]
    say(
        f"sweep {sweep_file}: {len(trials)} trials into {folder}"
        + (f" ({len(finished)} finished before, skipped)" if resume else "")
    )
    from agents.sweep.ray_runner import run_on_ray

    records_by_id = run_on_ray(sweep, trials, folder, address, say)
    records = [records_by_id[t.trial_id] for t in trials]
    meta = {
        "sweep": str(sweep_file),
        "out": str(folder),
        "command": command or " ".join(sys.argv),
        "ray": f"cluster at {address}" if address else "embedded local Ray",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": time.perf_counter() - started,
        "resumed": resume,
        "skipped_finished": [t.trial_id for t in finished],
    }
    report = write_summary(folder, meta, records)
    return SweepOutcome(sweep, folder, trials, records, report)


def _print(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)
