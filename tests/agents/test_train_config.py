"""Training configs that extend others: merging, relative paths, and the errors users see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.train_config import load_train_config
from offload_rl.errors import ConfigError


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_extends_merges_mappings_and_replaces_other_values(tmp_path: Path) -> None:
    _write(
        tmp_path / "base.yaml",
        {
            "n_envs": 4,
            "heuristics": ["greedy", "oracle", "local"],
            "ppo": {"n_steps": 128, "batch_size": 64, "gamma": 0.5},
            "warm_start": {"policy": "greedy", "steps": 500},
        },
    )
    child = _write(
        tmp_path / "child.yaml",
        {
            "extends": "base.yaml",
            "heuristics": ["greedy"],
            "ppo": {"gamma": 0.9},
            "warm_start": None,
        },
    )
    config = load_train_config(child)
    assert config.n_envs == 4  # inherited
    assert config.heuristics == ["greedy"]  # a list replaces the inherited one
    assert (config.ppo.n_steps, config.ppo.batch_size, config.ppo.gamma) == (128, 64, 0.9)
    assert config.warm_start is None  # null resets
    assert config.config_file == str(child)


def test_extends_is_relative_to_the_file_that_says_it(tmp_path: Path) -> None:
    _write(tmp_path / "bases" / "root.yaml", {"n_envs": 3})
    _write(tmp_path / "bases" / "mid.yaml", {"extends": "root.yaml", "seed": 7})
    child = _write(tmp_path / "runs" / "child.yaml", {"extends": "../bases/mid.yaml"})
    config = load_train_config(child)
    assert (config.n_envs, config.seed) == (3, 7)


def test_relative_paths_in_an_inherited_file_stay_relative_to_it(tmp_path: Path) -> None:
    fam = tmp_path / "traces" / "famx"
    fam.mkdir(parents=True)
    (fam / "t0.up").write_text("1 1.0\n2 3.0\n")
    _write(tmp_path / "bases" / "base.yaml", {"traces": ["../traces/famx/t0.up"]})
    child = _write(tmp_path / "deep" / "runs" / "child.yaml", {"extends": "../../bases/base.yaml"})
    train, _ = load_train_config(child).scenarios()
    assert [Path(s.source) for s in train.network.sources()] == [(fam / "t0.up").resolve()]


def test_an_extends_cycle_is_one_line_naming_the_file_and_key(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", {"extends": "b.yaml", "seed": 1})
    _write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError) as info:
        load_train_config(a)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'b.yaml'}: extends: a.yaml makes a cycle")
    assert "a.yaml -> b.yaml -> a.yaml" in msg


def test_a_config_extending_itself_is_a_cycle(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match=r"a\.yaml: extends: a\.yaml makes a cycle"):
        load_train_config(a)


def test_an_unknown_key_in_a_base_names_the_base_file(tmp_path: Path) -> None:
    base = _write(tmp_path / "base.yaml", {"ppo": {"n_steps": 256, "batch_sizee": 64}})
    child = _write(tmp_path / "child.yaml", {"extends": "base.yaml", "ppo": {"gamma": 0.5}})
    with pytest.raises(ConfigError) as info:
        load_train_config(child)
    assert str(info.value) == f"{base}: ppo.batch_sizee: unknown key"


def test_an_unknown_key_in_the_child_names_the_child(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", {"ppo": {"n_steps": 256}})
    child = _write(tmp_path / "child.yaml", {"extends": "base.yaml", "n_env": 2})
    with pytest.raises(ConfigError) as info:
        load_train_config(child)
    assert str(info.value) == f"{child}: n_env: unknown key"


def test_a_bad_value_names_the_file_that_wrote_it(tmp_path: Path) -> None:
    # the base writes ppo.gamma, the child overrides it with a bad value: the child is named
    _write(tmp_path / "base.yaml", {"ppo": {"gamma": 0.5}})
    child = _write(tmp_path / "child.yaml", {"extends": "base.yaml", "ppo": {"gamma": 2.0}})
    with pytest.raises(ConfigError, match=rf"^{child}: ppo\.gamma: "):
        load_train_config(child)


def test_a_missing_base_names_the_file_and_key(tmp_path: Path) -> None:
    child = _write(tmp_path / "child.yaml", {"extends": "nope.yaml"})
    with pytest.raises(ConfigError) as info:
        load_train_config(child)
    assert str(info.value) == f"{child}: extends: {tmp_path / 'nope.yaml'} not found"


def test_extends_must_name_a_file(tmp_path: Path) -> None:
    child = _write(tmp_path / "child.yaml", {"extends": ["a.yaml", "b.yaml"]})
    with pytest.raises(ConfigError, match=r"child\.yaml: extends: expected a file name"):
        load_train_config(child)
