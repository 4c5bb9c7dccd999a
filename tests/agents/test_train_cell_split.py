"""Training links that the evaluation never draws: the three-way split by trace file (train /
validation / test) and, without ../shared, synthetic seeds disjoint from the evaluation's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.train_config import load_train_config
from offload_rl.errors import ConfigError
from offload_rl.scenario import TraceSource
from offload_rl.scenario_facts import resolve_scenario

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"
SHARED_TRACES = REPO.parent / "shared" / "traces"
needs_shared = pytest.mark.skipif(
    not SHARED_TRACES.is_dir(), reason="needs ../shared/traces (recorded trace families)"
)


def _families(tmp_path: Path, sizes: dict[str, int]) -> list[Path]:
    folders = []
    for fam, n in sizes.items():
        folder = tmp_path / fam
        folder.mkdir()
        for i in range(n):
            (folder / f"t{i}").write_text("1 1.0\n2 3.0\n")
        folders.append(folder)
    return folders


def _config(tmp_path: Path, **data: Any) -> Path:
    path = tmp_path / "c.yaml"
    base = {"extends": str(CONFIGS / "train_cell_demo.yaml"), "synthetic_seeds": None}
    path.write_text(yaml.safe_dump({**base, **data}))
    return path


def _names(sources: list[TraceSource] | None) -> set[str]:
    assert sources is not None
    return {s.source for s in sources}


def test_a_three_way_split_keeps_the_two_way_test_files_and_validates_on_the_rest(
    tmp_path: Path,
) -> None:
    folders = _families(tmp_path, {"a": 20, "b": 6, "c": 2})
    traces = [{"source": str(f), "uplink_scale": 0.5} for f in folders]
    split = {"test_share": 0.25, "seed": 3}
    config = load_train_config(
        _config(tmp_path, traces=traces, trace_split={**split, "validation_share": 0.2})
    )
    train, val = config.trace_sets()
    test = config.test_sources()
    two_way = load_train_config(_config(tmp_path, traces=traces, trace_split=split))
    assert two_way.test_sources() is None
    assert _names(test) == _names(two_way.trace_sets()[1])  # the same held-out files
    assert not _names(train) & _names(val) and not _names(val) & _names(test)
    assert not _names(train) & _names(test)
    assert len(_names(train) | _names(val) | _names(test)) == 28
    per_family = Counter(Path(s).parent.name for s in _names(val))
    # a fifth of the files left after the test share (at least one where two or more are left)
    assert per_family == {"a": 3, "b": 1}


def test_the_run_lists_the_test_files_in_its_split_file(tmp_path: Path) -> None:
    from agents.training.loop import prepare_run_folder

    folders = _families(tmp_path, {"a": 8})
    config = load_train_config(
        _config(
            tmp_path,
            traces=[{"source": str(folders[0])}],
            trace_split={"test_share": 0.25, "validation_share": 0.2},
        )
    ).resolved()
    train_sc, val_sc = config.scenarios()
    prepare_run_folder(tmp_path / "run", config, train_sc, val_sc)
    import json

    split = json.loads((tmp_path / "run" / "trace_split.json").read_text())
    assert [len(split[k]) for k in ("train", "validation", "test")] == [5, 1, 2]


def test_synthetic_seeds_draw_links_the_evaluation_never_sees(tmp_path: Path) -> None:
    config = load_train_config(CONFIGS / "train_cell.yaml")
    assert config.synthetic_seeds is not None
    train_sc, val_sc = config.scenarios()
    n = train_sc.network.synthetic_traces
    evaluated = {t.name for t in resolve_scenario(config.base_scenario()).uplinks}
    trained = {t.name for t in resolve_scenario(train_sc).uplinks}
    validated = {t.name for t in resolve_scenario(val_sc).uplinks}
    assert len(evaluated) == len(trained) == len(validated) == 4 * n
    assert not evaluated & trained and not evaluated & validated and not trained & validated


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"synthetic_seeds": {"train": 6, "validation": 12}, "traces": ["x"]},
            "synthetic_seeds draws the scenario's synthetic presets",
        ),
        ({"synthetic_seeds": {"train": 0, "validation": 12}}, r"synthetic_seeds\.train"),
        ({"trace_split": {"validation_share": 1.5}}, r"trace_split\.validation_share"),
    ],
)
def test_split_keys_name_the_key_on_error(tmp_path: Path, data: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_train_config(_config(tmp_path, **data))


def test_synthetic_seeds_refuse_a_scenario_with_recorded_links(tmp_path: Path) -> None:
    (tmp_path / "fam").mkdir()
    (tmp_path / "fam" / "t0").write_text("1 1.0\n2 3.0\n")
    scenario = yaml.safe_load((REPO / "offload_rl/data/scenarios/cell.yaml").read_text())
    scenario["network"]["traces"] = [str(tmp_path / "fam" / "t0")]
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump(scenario))
    path = _config(
        tmp_path, scenario=str(tmp_path / "sc.yaml"), synthetic_seeds={"train": 6, "validation": 12}
    )
    with pytest.raises(ConfigError, match="synthetic_seeds: scenario 'cell' names recorded"):
        load_train_config(path).scenarios()


def test_cell_heuristics_are_valid_warm_start_and_validation_references(tmp_path: Path) -> None:
    config = load_train_config(
        _config(tmp_path, warm_start={"policy": "lyapunov"}, heuristics=["greedy+gdsf"])
    )
    assert config.warm_start is not None and config.warm_start.policy == "lyapunov"
    with pytest.raises(ConfigError, match=r"warm_start\.policy: unknown policy 'nonsense'"):
        load_train_config(_config(tmp_path, warm_start={"policy": "nonsense"}))


@needs_shared
def test_the_cell_split_tests_on_the_single_device_tables_held_out_files() -> None:
    cell = load_train_config(CONFIGS / "train_cell_split.yaml")
    test = cell.test_sources()
    assert test is not None
    by_family: dict[str, set[str]] = {}
    for s in test:
        by_family.setdefault(Path(s.source).parent.name, set()).add(s.source)
    assert sorted(by_family) == ["ghent-4g-lte", "mahimahi-cellular", "norway-hsdpa-3g", "wifi"]
    for family, files in by_family.items():
        single = load_train_config(CONFIGS / f"train_{family}.yaml").trace_sets()[1]
        assert files == _names(single)
    train, val = cell.trace_sets()
    assert not (_names(train) | _names(val)) & _names(test)


@needs_shared
@pytest.mark.parametrize(
    "path",
    sorted([*CONFIGS.glob("train_cell_probe*.yaml"), *CONFIGS.glob("train_cell_ent*.yaml")]),
    ids=lambda p: p.name,
)
def test_the_probes_change_one_thing_of_the_split_config(path: Path) -> None:
    probe = load_train_config(path)
    base = load_train_config(CONFIGS / "train_cell_probe.yaml")
    assert probe.is_cell() and probe.test_sources() == base.test_sources()
    assert probe.trace_sets() == base.trace_sets()
