"""PPO in the cell: the training configs, their errors, and a tiny EdgeCell-v0 run end to end
(train -> checkpoint -> resume -> export -> ONNX parity -> evaluate).

The run is train_cell_demo.yaml (embedded ``cell`` scenario: nothing from ../shared), shortened
further; nothing here pins numbers of today's cell model or action-space size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from agents.train_config import load_train_config
from offload_rl.errors import ConfigError

pytest.importorskip("sb3_contrib")
pytest.importorskip("tensorboard")

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "experiments" / "configs"
DEMO = CONFIGS / "train_cell_demo.yaml"


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def test_the_cell_configs_validate_and_discount_by_elapsed_time() -> None:
    full = load_train_config(CONFIGS / "train_cell.yaml")
    demo = load_train_config(DEMO)
    for config in (full, demo):
        assert config.is_cell()
        assert config.ppo.half_life_s == 120
        per_s = config.ppo.discount_per_second()
        assert per_s is not None and per_s**120 == pytest.approx(0.5)
        assert not {"oracle"} & set(config.heuristics)
        config.scenarios()  # the environment checks pass
    assert demo.total_timesteps < full.total_timesteps
    assert demo.ppo.n_steps * demo.n_envs <= 1024  # the test's run stays tiny


def _cell_config(tmp_path: Path, **changes: Any) -> Path:
    data: dict[str, Any] = {"extends": str(DEMO)}
    data.update(changes)
    path = tmp_path / "cell.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"ppo": {"gamma_per_second": 0.99}}, r"ppo: give either gamma_per_second or half_life_s"),
        ({"ppo": {"half_life_s": 0}}, r"ppo\.half_life_s: Input should be greater than 0"),
        (
            {"ppo": {"half_life_s": None, "gamma_per_second": 1.5}},
            r"ppo\.gamma_per_second: Input should be less than or equal to 1",
        ),
    ],
)
def test_bad_time_discounts_name_the_key(
    tmp_path: Path, changes: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError, match=rf"cell\.yaml: {error}"):
        load_train_config(_cell_config(tmp_path, **changes))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"ppo": {"half_life_s": None}}, r"ppo\.half_life_s: scenario 'cell' is a cell"),
        ({"scenario": "default"}, r"ppo\.half_life_s: scenario 'default' has no 'cell:'"),
        (
            {"scenario": "default", "ppo": {"half_life_s": None, "gamma_per_second": 0.9}},
            r"ppo\.gamma_per_second: scenario 'default' has no 'cell:'",
        ),
        ({"heuristics": ["greedy", "oracle"]}, r"heuristics: oracle reads SplitCache-v0"),
        ({"keep_credit": True}, r"keep_credit: SplitCache-v0 only"),
        ({"warm_start": {"policy": "oracle"}}, r"warm_start\.policy: oracle has no cell"),
    ],
)
def test_keys_the_environment_cannot_honour_are_errors_naming_the_key(
    tmp_path: Path, changes: dict[str, Any], error: str
) -> None:
    config = load_train_config(_cell_config(tmp_path, **changes))
    with pytest.raises(ConfigError, match=rf"cell\.yaml: {error}"):
        config.scenarios()


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


def _scalar_tags(run: Path) -> set[str]:
    from tests.agents.test_train import scalars

    return set(scalars(run))


@pytest.fixture(scope="module")
def cell_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1024-step cell run with a checkpoint at 512, then resumed from its ``final/`` to 2048
    steps (its checkpoint: 1536)."""
    from agents.train import train

    out = tmp_path_factory.mktemp("cell") / "run"
    config = _tiny_config(out.parent)
    train(config, out, timesteps=1024, log=lambda _: None)
    train(None, None, timesteps=2048, resume=out / "final", log=lambda _: None)
    return out


def _tiny_config(folder: Path) -> Path:
    data = {
        "extends": str(DEMO),
        "n_envs": 2,
        "episode_requests": 48,
        "eval_requests": 24,
        "checkpoint_every": 512,
        "eval_every": 512,
        "warm_start": {"steps": 128, "epochs": 1},
        "ppo": {"n_steps": 256, "batch_size": 256, "n_epochs": 1},
    }
    path = folder / "tiny_cell.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_cell_run_writes_checkpoints_meta_and_resumes(cell_run: Path) -> None:
    from agents.checkpoints import list_checkpoints
    from agents.training.time_discount import TimeDiscountedMaskablePPO
    from envs.edge_cell import EdgeCellEnv

    steps = [step for step, _ in list_checkpoints(cell_run)]
    assert steps == [512, 1536]
    meta = json.loads((cell_run / "final" / "meta.json").read_text())
    env = EdgeCellEnv("cell", episode_requests=8)
    assert meta["environment"] == "EdgeCell-v0"
    assert meta["num_timesteps"] == 2048
    assert meta["feature_spec"]["cell"] == 1
    assert (meta["feature_spec"]["obs_dim"],) == env.observation_space.shape
    assert meta["feature_spec"]["n_actions"] == env.layout.n_actions
    assert meta["gamma_per_second"] == pytest.approx(0.5 ** (1 / 120))
    summary = json.loads((cell_run / "summary.json").read_text())
    assert summary["resumed_from"] == 1024
    assert summary["env_steps_per_s"] > 0
    assert {"ppo", "greedy"} <= set(summary["final"])
    assert summary["final"]["ppo"]["mean_edge_kv_occupancy"] is not None
    model = TimeDiscountedMaskablePPO.load(cell_run / "final" / "model.zip", device="cpu")
    assert model.gamma_per_s == pytest.approx(0.5 ** (1 / 120))  # saved, so resumes discount alike


def test_a_cell_run_logs_the_cells_metrics_to_tensorboard(cell_run: Path) -> None:
    tags = _scalar_tags(cell_run / "tb" / "ppo")
    for tag in (
        "env/reward",
        "env/reward_per_s",
        "env/latency_s",
        "env/energy_j_per_decision",
        "env/edge_batch",
        "env/edge_kv_occupancy",
        "env/session_return_rate_in_episode",
        "env/session_return_rate_unbounded",
        "eval/mean_reward",
        "eval/latency_p95_s",
        "eval/edge_kv_occupancy",
        "perf/env_steps_per_s",
    ):
        assert tag in tags, tag
    greedy = _scalar_tags(cell_run / "tb" / "greedy")
    assert "eval/mean_reward" in greedy and "eval/edge_batch" in greedy


def test_a_cell_run_exports_to_onnx_with_the_cell_encoding_and_evaluates(
    cell_run: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    from agents.evaluate import evaluate
    from agents.export import export_policy
    from agents.sb3_policy import load_sb3_policy
    from envs.edge_cell import EdgeCellEnv
    from offload_rl.features import FeatureSpec
    from offload_rl.scenario import load_scenario
    from serving.policy_file import INPUT_MASK, INPUT_OBS, OUTPUT_ACTION

    out = tmp_path / "cell.onnx"
    report = export_policy(cell_run, out, parity=64, seed=1)
    assert FeatureSpec.from_dict(report.metadata).cell  # the service builds the cell observation
    cell = load_scenario("cell")
    scenario = cell.model_copy(update={"episode": cell.episode.model_copy(update={"requests": 24})})
    policy = load_sb3_policy(str(cell_run / "final" / "model.zip"), scenario)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    env = EdgeCellEnv(scenario)
    env.reset(seed=5)
    for _ in range(20):  # the ONNX file and the trained policy agree on cell observations
        obs, mask = env._obs, env.action_masks()
        (got,) = session.run([OUTPUT_ACTION], {INPUT_OBS: obs[None], INPUT_MASK: mask[None]})
        want = policy.act(env.state, mask)
        assert int(got[0]) == want
        env.step(want)
    ppo, exported = f"ppo:{cell_run}/final/model.zip", f"onnx:{out}"
    result = evaluate([ppo, exported, "greedy"], scenario, episodes_per_family=1, loads=[1.0])
    for spec in result.policies:
        rewards = np.concatenate([r["reward"] for r in result.records[spec]])
        assert rewards.size and np.isfinite(rewards).all()
    # the exported file decides as the trained model does, episode for episode
    for a, b in zip(result.records[ppo], result.records[exported], strict=True):
        np.testing.assert_array_equal(a["tier_index"], b["tier_index"])
        np.testing.assert_array_equal(a["reward"], b["reward"])
