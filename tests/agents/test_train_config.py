"""Training configs that extend others: the shipped configs, merging, and the errors users see.

The shipped configs were nine full copies until they were made to extend
``train_default.yaml``; the expected values below are what each copy validated to then (read
once from ``git show main:experiments/<file>``), so a change to a base that moves any run shows
up here.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.train_config import load_train_config
from offload_rl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"
SHARED_TRACES = REPO.parent / "shared" / "traces"

# train_default.yaml, every field (defaults included) as it validated before the merge.
DEFAULT: dict[str, Any] = {
    "scenario": "default",
    "traces": None,
    "validation_traces": None,
    "trace_split": None,
    "synthetic_seeds": None,  # added later (EdgeCell-v0's synthetic split)
    "uplink_scale": None,
    "episode_requests": None,
    "total_timesteps": 1_000_000,
    "n_envs": 8,
    "vec_env": "dummy",
    "trace_sampling": "family",
    "keep_credit": True,
    "warm_start": {
        "policy": "greedy",
        "steps": 100_000,
        "epochs": 10,
        "batch_size": 512,
        "learning_rate": 0.001,
    },
    "seed": 0,
    "torch_threads": 1,
    "ppo": {
        "n_steps": 512,
        "batch_size": 512,
        "n_epochs": 10,
        "learning_rate": 0.0001,
        "lr_schedule": "linear",
        "gamma": 0.5,
        "gae_lambda": 0.95,
        "ent_coef": 0.0,
        "clip_range": 0.2,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "gamma_per_second": None,  # added later (EdgeCell-v0): unset on SplitCache-v0
        "half_life_s": None,
        "net_arch": [128, 128],
        "activation": "tanh",
        "init_keep_logit": 3.0,
    },
    "normalize": {"obs": True, "reward": False, "clip_obs": 10.0, "clip_reward": 10.0},
    "checkpoint_every": 100_000,
    "eval_every": 50_000,
    "eval_episodes": 4,
    "eval_seed": 12345,
    "eval_requests": None,
    "heuristics": ["local", "edge", "cloud", "greedy", "random", "oracle"],
}


def _downlink(family: str, uplink_scale: float) -> dict[str, Any]:
    source = str((SHARED_TRACES / family).resolve())
    return {
        "source": source,
        "direction": "downlink",
        "uplink_scale": uplink_scale,
        "downlink_scale": 1.0,
    }


MAHIMAHI_UP = {
    "source": str((SHARED_TRACES / "mahimahi-cellular").resolve() / "*.up"),
    "direction": "uplink",
    "uplink_scale": None,
    "downlink_scale": 2.7,
}
SPLIT = {
    "trace_split": {"test_share": 0.25, "seed": 0, "validation_share": None},
    "eval_episodes": 8,
}

# What each copied file changed against train_default.yaml.
DELTAS: dict[str, dict[str, Any]] = {
    "train_default.yaml": {},
    "train_demo.yaml": {
        "episode_requests": 128,
        "total_timesteps": 65536,
        "n_envs": 4,
        "warm_start": {**DEFAULT["warm_start"], "steps": 20000},
        "ppo": {**DEFAULT["ppo"], "n_epochs": 5, "lr_schedule": "constant"},
        "checkpoint_every": 32768,
        "eval_every": 32768,
        "eval_episodes": 1,
        "heuristics": ["greedy", "oracle"],
    },
    "train_fcc-broadband.yaml": {"traces": [_downlink("fcc-broadband", 0.46)], **SPLIT},
    "train_ghent-4g-lte.yaml": {"traces": [_downlink("ghent-4g-lte", 0.22)], **SPLIT},
    "train_mahimahi-cellular.yaml": {"traces": [MAHIMAHI_UP], **SPLIT},
    "train_norway-hsdpa-3g.yaml": {"traces": [_downlink("norway-hsdpa-3g", 0.46)], **SPLIT},
    "train_nyc-lte.yaml": {"traces": [_downlink("nyc-lte", 0.22)], **SPLIT},
    "train_wifi.yaml": {"traces": [_downlink("wifi", 0.5)], **SPLIT},
    "train_lofo_nyc-lte.yaml": {
        "traces": [
            _downlink("norway-hsdpa-3g", 0.46),
            _downlink("fcc-broadband", 0.46),
            _downlink("ghent-4g-lte", 0.22),
            _downlink("wifi", 0.5),
            MAHIMAHI_UP,
        ],
        "validation_traces": [_downlink("nyc-lte", 0.22)],
        "eval_episodes": 16,
    },
}


# EdgeCell-v0's configs extend train_cell.yaml, not train_default.yaml: checked in
# tests/agents/test_train_cell.py
CELL_CONFIGS = ("train_cell.yaml", "train_cell_demo.yaml")
# the cell on recorded links split three ways, the short probes of PPO settings beside it and
# the room probes of docs/CELL_RESULTS.md: checked in tests/agents/test_train_cell_split.py
CELL_SPLIT_CONFIGS = tuple(
    p.name
    for p in CONFIGS.glob("train_cell_*.yaml")
    if p.name.startswith(("train_cell_split", "train_cell_probe", "train_cell_ent"))
)


def test_every_shipped_training_config_is_checked() -> None:
    shipped = sorted(p.name for p in CONFIGS.glob("train_*.yaml"))
    assert shipped == sorted([*DELTAS, *CELL_CONFIGS, *CELL_SPLIT_CONFIGS])


@pytest.mark.parametrize("name", sorted(DELTAS))
def test_shipped_config_validates_to_what_its_full_copy_did(name: str) -> None:
    config = load_train_config(CONFIGS / name)
    assert config.resolved().model_dump(mode="json") == {**DEFAULT, **DELTAS[name]}


def test_results_table_reads_the_run_length_through_extends() -> None:
    # the family files no longer state total_timesteps: reading the raw YAML gave the
    # 200k default instead of the 1M the run uses
    script = runpy.run_path(str(REPO / "experiments" / "analyses" / "results_table.py"))
    assert script["config_timesteps"]("wifi") == 1_000_000
    assert script["config_timesteps"]("demo") == 65536


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
