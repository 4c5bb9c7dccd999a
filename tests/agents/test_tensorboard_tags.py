"""Training's validation and ``evaluate`` write the same TensorBoard tags, by one rule."""

from __future__ import annotations

import numpy as np
import pytest

from agents.evaluate import (
    BOOL_COLUMNS,
    FAMILY_TAGS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    Episode,
    EvaluationResult,
    compute_metrics,
    run_dir_name,
    tensorboard_scalars,
)
from agents.train import ValidationResult

N_LAYERS = 4

# family name -> its tag component; the old training rule (char by char, unicode letters kept,
# one "_" per character) gives "5G___bus", "stra\u00dfe_\u00fc" and "a__b" here.
AWKWARD = {
    "5G / bus": "5G_bus",
    "wifi.home-2": "wifi.home-2",
    "stra\u00dfe \u00fc": "stra_e_",
    "a//b": "a_b",
    "tab\tend": "tab_end",
}


def _records(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rec: dict[str, np.ndarray] = {c: rng.normal(size=n) for c in FLOAT_COLUMNS}
    rec.update({c: rng.integers(0, N_LAYERS + 2, size=n) for c in INT_COLUMNS})
    rec.update({c: rng.random(n) < 0.5 for c in BOOL_COLUMNS})
    return rec


def _family_tags(tags: list[str]) -> set[str]:
    return {t for t in tags if t.startswith("family/")}


@pytest.fixture
def episodes() -> list[Episode]:
    return [
        Episode(index=i, family=family, trace=i, trace_name=f"t{i}", offset_s=0.0, workload_seed=i)
        for i, family in enumerate(AWKWARD)
    ]


def test_training_and_evaluation_write_the_same_family_tags(episodes: list[Episode]) -> None:
    records = [_records(12, ep.index) for ep in episodes]
    training = ValidationResult.from_records(records, episodes, N_LAYERS).scalars
    result = EvaluationResult(
        policies=["greedy"],
        deployable={"greedy": True},
        episodes=episodes,
        records={"greedy": records},
        n_layers=N_LAYERS,
        args={},
    )
    evaluation = tensorboard_scalars(result, compute_metrics(result), "greedy")
    expected = {f"family/{safe}/{name}" for safe in AWKWARD.values() for name in FAMILY_TAGS}
    assert _family_tags(list(training)) == expected
    assert _family_tags([tag for tag, _, _ in evaluation]) == expected
    # the same values under the same tags, too: both summarise the same records
    scalars = {tag: value for tag, value, _ in evaluation}
    for tag in expected:
        assert training[tag] == pytest.approx(scalars[tag], nan_ok=True)


def test_run_folders_follow_the_tag_rule() -> None:
    assert run_dir_name("onnx:a/b.onnx") == "onnx_a_b.onnx"
    assert run_dir_name("sb3:runs/caf\u00e9 run/") == "sb3_runs_caf_run"
    assert run_dir_name("///") == "policy"
