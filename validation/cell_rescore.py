"""Replay a stored ``validate --cell`` run through today's simulator, without running it again.

A run folder (``--out`` of ``offload-rl validate --cell``) holds everything the simulator side
needs: each level's device records (decisions, start times, targets), each device's job (its
traces and offset: its link), the edge's log, the profile the run priced with and the run's
``validation.json`` (its setup and load figures). :func:`rescore_run` rebuilds the levels from
those files and summarises them as the run did, so a change to the replay (the closed loop, a
scheduler fix) can be measured on runs already taken, with the profile that was measured before
them (nothing is fitted to the run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from offload_rl.cell.batch_roofline import for_profile
from offload_rl.errors import OffloadRLError
from offload_rl.profiles import load_profile
from offload_rl.traces import Trace
from validation.cell_replay import DeviceLink
from validation.cell_run import cell_scenario, replay_level
from validation.decisions import validation_scenario
from validation.schedule_diff import level_folders


class RescoreError(OffloadRLError):
    """A run folder that cannot be replayed (a file missing)."""


def _trace(spec: dict[str, Any]) -> Trace:
    return Trace.from_steps(np.asarray(spec["mbps"], float), float(spec["step_s"]), spec["name"])


def load_run_level(folder: Path, stored: dict[str, Any]) -> dict[str, Any]:
    """One level folder as :func:`validation.cell_run._run_level` returned it (load figures
    from the stored ``validation.json`` level ``stored``)."""
    records: list[dict[str, Any]] = []
    links: list[DeviceLink] = []
    d = 0
    while (folder / f"device{d}-job.json").is_file():
        job = json.loads((folder / f"device{d}-job.json").read_text())
        links.append(DeviceLink(_trace(job["uplink"]), _trace(job["downlink"]), job["offset_s"]))
        records.extend(json.loads((folder / f"device{d}.json").read_text()))
        d += 1
    if not links:
        raise RescoreError(f"{folder}: no device0-job.json (not a validate --cell level folder)")
    return {
        "run": int(stored.get("run", 0)),
        "level": int(stored["level"]),
        "gap_s": float(stored["gap_s"]),
        "links": links,
        "records": records,
        "edge": json.loads((folder / "edge.json").read_text()),
        "load_average_before": stored.get("load_average_before"),
        "load_average_after": stored.get("load_average_after"),
        "cpus_used_by_other_processes": stored.get("cpus_used_by_other_processes"),
    }


def rescore_run(run: Path, profile: Path | None = None) -> dict[str, Any]:
    """The ``validation.json`` document today's replay gives for the stored run ``run``,
    priced with the run's own profile or ``profile`` (another invocation's: how much of the
    figure is the profile's, rather than the run's)."""
    from validation.cell_summary import summarise_cell

    stored_path = run / "validation.json"
    if not stored_path.is_file():
        raise RescoreError(f"{stored_path}: missing (not a validate --cell --out folder)")
    stored = json.loads(stored_path.read_text())
    setup = dict(stored["setup"])
    profile_path = run / Path(setup["profile"]).name if profile is None else profile
    if not profile_path.is_file():
        where = "the run's profile is not in its folder" if profile is None else "no such file"
        raise RescoreError(f"{profile_path}: {where}")
    if profile is not None:
        setup["rescored_with_profile"] = str(profile)
    batch_cost = for_profile(load_profile(str(profile_path)))
    scenario = cell_scenario(validation_scenario(profile_path, setup["traces"], setup["rtt_ms"]))
    budgets = (int(setup["pool_bytes"]), setup["max_num_batched_tokens"], setup["max_num_seqs"])
    levels = []
    for folder, level_stored in zip(level_folders(run), stored["by_load_level"], strict=True):
        level = load_run_level(folder, level_stored)
        replay_level(level, scenario, batch_cost, budgets)
        levels.append(level)
    setup["rescored_from"] = str(run)
    return summarise_cell(levels, batch_cost, setup)
