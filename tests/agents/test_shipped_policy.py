"""``--policies shipped``: the package's policy for the scenario (cell.onnx in a cell, else
default.onnx), and ``evaluate --trace-dir`` on a folder of trace families."""

from __future__ import annotations

from pathlib import Path

import pytest

import agents.policies as policies
from agents.commands.evaluate import expand_trace_folders
from agents.policies import resolve_policy, valid_policy_names
from offload_rl.errors import ConfigError
from offload_rl.scenario import load_scenario
from serving.commands import shipped_policy
from serving.policy_runtime import OnnxPolicy
from serving.shipped import SHIPPED_POLICY_NAME, shipped_policy_path


def test_shipped_names_the_single_device_policy_on_a_single_device_scenario():
    path = shipped_policy_path(cell=False)
    assert path is not None and path.name == "default.onnx"
    policy = resolve_policy("shipped", load_scenario("default"))
    assert isinstance(policy, OnnxPolicy)
    assert policy.version == OnnxPolicy.from_file(path).version
    assert not policy.spec.cell
    assert SHIPPED_POLICY_NAME in valid_policy_names()


def test_shipped_names_the_cell_policy_in_a_cell():
    path = shipped_policy_path(cell=True)
    if path is None:
        pytest.skip("this checkout ships no cell.onnx")
    assert path.name == "cell.onnx"
    policy = resolve_policy("Shipped", load_scenario("cell"))
    assert isinstance(policy, OnnxPolicy)
    assert policy.spec.cell
    assert policy.version == OnnxPolicy.from_file(path).version
    assert shipped_policy("cell") == str(path)  # offload-rl serve --scenario cell
    assert shipped_policy(None) == str(shipped_policy_path(cell=False))


def test_a_missing_shipped_file_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(policies, "shipped_policy_path", lambda cell=False: None)
    with pytest.raises(ConfigError, match="ships no cell policy"):
        resolve_policy("shipped", load_scenario("cell"))
    with pytest.raises(ConfigError, match="ships no single-device policy"):
        resolve_policy("shipped", load_scenario("default"))


def _trace(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("1.0\n2.0\n")


def test_a_folder_of_families_expands_to_its_families(tmp_path):
    _trace(tmp_path / "col" / "b-fam" / "t1")
    _trace(tmp_path / "col" / "a-fam" / "t1")
    (tmp_path / "col" / ".hidden").write_text("")
    _trace(tmp_path / "flat" / "t1")
    _trace(tmp_path / "one.txt")
    got = expand_trace_folders(
        [str(tmp_path / "col"), str(tmp_path / "flat"), str(tmp_path / "one.txt")]
    )
    assert got == [
        str(tmp_path / "col" / "a-fam"),
        str(tmp_path / "col" / "b-fam"),
        str(tmp_path / "flat"),
        str(tmp_path / "one.txt"),
    ]


def test_evaluate_in_the_cell_on_a_folder_of_recorded_families(tmp_path, capsys):
    """What an outside check runs: recorded traces of new families, the cell, the tuned
    heuristics by name (and the shipped policy when the checkout has one)."""
    from offload_rl.cli import main

    for family in ("fam-a", "fam-b"):
        for i in range(2):
            rows = "\n".join(f"{t * 0.5:.1f} {3.0 + (t * (i + 1)) % 5:.1f}" for t in range(400))
            (tmp_path / "rec" / family).mkdir(parents=True, exist_ok=True)
            (tmp_path / "rec" / family / f"trace{i}.log").write_text(rows + "\n")
    names = "greedy,lyapunov" + (",shipped" if shipped_policy_path(cell=True) else "")
    args = ["evaluate", "--scenario", "cell", "--trace-dir", str(tmp_path / "rec"), "--loads",
            "1", "--episodes", "1", "--requests", "12", "--policies", names, "--no-progress",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    import json

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert sorted({e["family"] for e in metrics["episodes"]}) == ["fam-a", "fam-b"]
    assert set(metrics["policies"]) == set(names.split(","))
