"""Sweep files: validation errors name the key; planning gives fixed trials and their configs."""

from __future__ import annotations

import pytest
import yaml

from agents.sweep.config import load_sweep_config
from agents.sweep.plan import plan_trials, trial_config_text, write_trial_configs
from agents.train_config import load_train_config
from offload_rl.cli import main
from offload_rl.errors import ConfigError
from tests.agents.sweep.helpers import TINY_SWEEP, write_sweep


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("configs: [train_tiny.yaml]\nseeds: [0, 0]\n", "seeds: a seed is listed twice"),
        ("configs: [train_tiny.yaml]\nbogus: 1\n", "bogus: unknown key"),
        ("configs: [train_tiny.yaml]\ngrid: {seed: [1, 2]}\n", "seed: set by the sweep itself"),
        ("configs: [train_tiny.yaml]\ngrid: {ppo.n_epochs: []}\n", "give at least one value"),
        ("configs: [nothere.yaml]\n", "configs.0:"),
        ("configs: [train_tiny.yaml]\nresources: {cpu: 0}\n", "resources.cpu:"),
        (
            "configs: [train_tiny.yaml]\nsearch: {num_samples: 2, space: {ppo.gamma: "
            "{uniform: [0.9, 0.5]}}}\n",
            "low must be below high",
        ),
        (
            "configs: [train_tiny.yaml]\nsearch: {num_samples: 2, space: {ppo.gamma: "
            "{uniform: [0.5, 0.9], choice: [1]}}}\n",
            "exactly one of",
        ),
    ],
)
def test_bad_sweep_files_name_the_key(tmp_path, text, message):
    path = write_sweep(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_sweep_config(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_bad_grid_value_fails_before_training_naming_the_trial_and_key(tmp_path):
    path = write_sweep(tmp_path, "configs: [train_tiny.yaml]\ngrid: {ppo.learning_rate: [-1]}\n")
    sweep = load_sweep_config(path)
    with pytest.raises(ConfigError) as err:
        write_trial_configs(sweep, plan_trials(sweep), tmp_path / "out")
    text = str(err.value)
    assert "trial tiny/ppo.learning_rate=-1/seed0" in text and "ppo.learning_rate" in text


def test_the_cli_reports_a_bad_sweep_in_one_line(tmp_path, capsys):
    path = write_sweep(tmp_path, "configs: [train_tiny.yaml]\nbogus: 1\n")
    assert main(["sweep", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bogus: unknown key" in err


def test_trials_are_configs_x_grid_x_seeds_and_their_config_reproduces_them(tmp_path):
    text = "configs: [train_tiny.yaml]\nseeds: [3, 4]\ntimesteps: 512\n"
    text += "grid: {ppo.learning_rate: [0.001, 0.0001], n_envs: [1]}\n"
    sweep = load_sweep_config(write_sweep(tmp_path, text))
    trials = plan_trials(sweep)
    assert [t.trial_id for t in trials] == [
        "tiny/ppo.learning_rate=0.001,n_envs=1/seed3",
        "tiny/ppo.learning_rate=0.001,n_envs=1/seed4",
        "tiny/ppo.learning_rate=0.0001,n_envs=1/seed3",
        "tiny/ppo.learning_rate=0.0001,n_envs=1/seed4",
    ]
    write_trial_configs(sweep, trials, tmp_path / "out")
    cfg = load_train_config(tmp_path / "out" / "trials" / trials[3].trial_id / "config.yaml")
    base = load_train_config(tmp_path / "train_tiny.yaml")
    assert (cfg.seed, cfg.total_timesteps, cfg.ppo.learning_rate) == (4, 512, 0.0001)
    # everything else is the base config's, nested sections merged key by key
    assert cfg.ppo.net_arch == base.ppo.net_arch and cfg.ppo.n_steps == base.ppo.n_steps
    assert yaml.safe_load(trial_config_text(trials[0], "s"))["extends"] == str(
        tmp_path / "train_tiny.yaml"
    )


def test_random_search_is_seeded_and_samples_within_the_space(tmp_path):
    pytest.importorskip("ray", reason="the sweep extra (Ray) is not installed")
    text = TINY_SWEEP.replace("grid: {scenario: [default, missing-scenario.yaml]}\n", "")
    text += "search:\n  num_samples: 5\n  seed: 7\n  space:\n"
    text += "    ppo.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}\n"
    text += "    ppo.n_epochs: {randint: [1, 4]}\n"
    sweep = load_sweep_config(write_sweep(tmp_path, text))
    first, again = plan_trials(sweep), plan_trials(sweep)
    assert first == again and len(first) == 5 * 2
    rates = {t.params["ppo.learning_rate"] for t in first}
    assert len(rates) == 5 and all(1e-5 <= r <= 1e-3 for r in rates)
    assert all(t.params["ppo.n_epochs"] in (1, 2, 3) for t in first)
