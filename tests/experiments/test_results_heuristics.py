"""The no-training heuristic columns are the figures the results table's trials publish: the
sweep's episodes and seed, on each config's held-out files, the reward ``metrics.json`` holds."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from agents.evaluation.outputs import write_outputs
from agents.evaluation.runner import evaluate
from agents.train_config import load_train_config

REPO = Path(__file__).resolve().parents[2]
SCRIPT = runpy.run_path(str(REPO / "experiments" / "analyses" / "results_heuristics.py"))


def test_the_columns_are_what_a_trials_evaluation_writes(
    shared_traces: Path, tmp_path: Path
) -> None:
    config = REPO / "experiments" / "configs" / "train_wifi.yaml"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"configs: [{config}]\nseeds: [0]\n"
        "evaluate: {policies: [greedy, cloud], episodes: 1, seed: 7}\n"
    )
    out = tmp_path / "columns.json"
    assert SCRIPT["main"](["--sweep", str(sweep), "--out", str(out)]) == 0
    columns = json.loads(out.read_text())["wifi"]

    train, held_out = load_train_config(config).scenarios()
    published = {}
    for label, scenario in (("held-out", held_out), ("train", train)):
        result = evaluate(["greedy", "cloud"], scenario, episodes_per_family=1, seed=7)
        written = write_outputs(result, tmp_path / label)  # what results_table.py reads
        published[label] = {p: m["mean_reward"] for p, m in written["policies"].items()}
    assert columns == pytest.approx(published["held-out"], abs=1e-12)
    assert columns["greedy"] != pytest.approx(published["train"]["greedy"], abs=1e-6)
