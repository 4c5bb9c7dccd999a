"""PPO training: config errors, trace splits, TensorBoard tags, checkpoints, kill -9 and resume.

The training runs here are tiny (two environments, short episodes, a few thousand steps) and
use the embedded ``default`` scenario, so nothing needs ``../shared``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from offload_rl.errors import ConfigError

pytest.importorskip("sb3_contrib")
pytest.importorskip("tensorboard")

from agents.checkpoints import (
    CHECKPOINT_FILES,
    find_model_dir,
    latest_checkpoint,
    list_checkpoints,
)
from agents.train_config import (
    TraceSplit,
    load_train_config,
    split_by_family,
)
from agents.training.checkpointing import resolve_resume
from offload_rl.scenario import TraceSource

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "scenario": "default",
    "episode_requests": 32,
    "n_envs": 2,
    "seed": 3,
    "ppo": {"n_steps": 128, "batch_size": 128, "n_epochs": 2, "net_arch": [32, 32]},
    "eval_episodes": 1,
    "eval_requests": 24,
    "heuristics": ["greedy", "oracle"],
}


def write_config(path: Path, **overrides: object) -> Path:
    data = {**TINY, **overrides}
    path.write_text(yaml.safe_dump(data))
    return path


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def histogram_tags(run: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"histograms": 0})
    acc.Reload()
    return list(acc.Tags()["histograms"])


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"ppo": {"batch_sise": 64}}, "ppo.batch_sise: unknown key"),
        ({"ppo": {"n_steps": 128, "batch_size": 1024}}, "batch_size"),
        ({"heuristics": ["greedy", "smart"]}, "heuristics: unknown heuristic 'smart'"),
        ({"n_envs": 0}, "n_envs"),
        ({"normalize": {"clip_obs": -1}}, "normalize.clip_obs"),
        ({"total_timesteps": "many"}, "total_timesteps"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, overrides: dict, key: str) -> None:
    path = write_config(tmp_path / "bad.yaml", **overrides)
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    assert str(path) in str(err.value)
    assert key in str(err.value)


def test_trace_errors_name_the_entry(tmp_path: Path) -> None:
    fam = tmp_path / "fam"
    fam.mkdir()
    (fam / "a").write_text("1 1.0\n2 2.0\n")
    downlink = write_config(
        tmp_path / "down.yaml", traces=[{"source": "fam", "direction": "downlink"}]
    )
    with pytest.raises(ConfigError, match=r"down\.yaml: traces\.0\.uplink_scale"):
        load_train_config(downlink).scenarios()
    missing = write_config(tmp_path / "missing.yaml", traces=["fam", "nowhere"])
    with pytest.raises(ConfigError, match=r"missing\.yaml: traces\.1\.source: .*does not exist"):
        load_train_config(missing).scenarios()


def test_cli_reports_config_errors_on_one_line(tmp_path: Path, capsys) -> None:
    from offload_rl.cli import main

    path = write_config(tmp_path / "bad.yaml", ppo={"gama": 0.9})
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "ppo.gama: unknown key" in err and "\n" not in err


def test_trace_split_is_deterministic_per_family(tmp_path: Path) -> None:
    sources = []
    for fam, n in (("a", 8), ("b", 3), ("c", 1)):
        (tmp_path / fam).mkdir()
        for i in range(n):
            f = tmp_path / fam / f"t{i}"
            f.write_text("1 1.0\n")
            sources.append(TraceSource(source=str(f), uplink_scale=0.5))
    train, test = split_by_family(sources, TraceSplit(test_share=0.25, seed=0))
    again = split_by_family(list(reversed(sources)), TraceSplit(test_share=0.25, seed=0))
    assert {s.source for s in again[1]} == {s.source for s in test}
    held = {Path(s.source).parent.name: 0 for s in sources}
    for s in test:
        held[Path(s.source).parent.name] += 1
    assert held == {"a": 2, "b": 1, "c": 0}  # round(0.25 n), at least one, never all
    assert not {s.source for s in train} & {s.source for s in test}
    assert all(s.uplink_scale == 0.5 for s in train + test)
    other = split_by_family(sources, TraceSplit(test_share=0.25, seed=1))[1]
    assert {s.source for s in other} != {s.source for s in test}


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    fam = tmp_path / "traces" / "famx"
    fam.mkdir(parents=True)
    for i in range(4):
        (fam / f"t{i}.up").write_text("1 1.0\n2 3.0\n")
    (fam / "t0.down").write_text("1 1.0\n")
    cfg_dir = tmp_path / "experiments"
    cfg_dir.mkdir()
    path = write_config(
        cfg_dir / "c.yaml",
        traces=[{"source": "../traces/famx/*.up", "downlink_scale": 2.0}],
        trace_split={"test_share": 0.25},
    )
    config = load_train_config(path)
    train, val = config.scenarios()
    train_files = [Path(s.source).name for s in train.network.sources()]
    val_files = [Path(s.source).name for s in val.network.sources()]
    assert len(train_files) == 3 and len(val_files) == 1
    assert all(f.endswith(".up") for f in train_files + val_files)
    assert val.episode.requests == 24  # eval_requests
    resolved = config.resolved()
    assert Path(resolved.traces[0].source).is_absolute()  # type: ignore[index,union-attr]


def test_training_episodes_draw_families_uniformly(tmp_path: Path) -> None:
    from agents.train import make_env
    from offload_rl.scenario_facts import resolve_scenario

    for fam, n in (("few", 1), ("many", 6)):
        (tmp_path / fam).mkdir()
        for i in range(n):
            (tmp_path / fam / f"t{i}").write_text("1 2.0\n2 4.0\n")
    path = write_config(tmp_path / "c.yaml", traces=["few", "many"], episode_requests=4)
    train_sc, _ = load_train_config(path).scenarios()
    env = make_env(resolve_scenario(train_sc))
    families = [env.reset(seed=0)[1]["family"]]
    families += [env.reset()[1]["family"] for _ in range(199)]
    assert 70 <= families.count("few") <= 130  # 1 of 7 traces, but half of the families
    pinned = env.reset(options={"trace": 3})[1]
    assert pinned["family"] == "many" and pinned["trace"] == "t2"


# --------------------------------------------------------------------------------------------
# A tiny training run
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agents.train import train

    tmp = tmp_path_factory.mktemp("train")
    config = write_config(
        tmp / "tiny.yaml",
        total_timesteps=1024,
        vec_env="subproc",
        eval_every=512,
        checkpoint_every=512,
    )
    return train(config, tmp / "run", log=lambda msg: None)


def test_tiny_run_writes_domain_tags_and_heuristic_siblings(tiny_run: Path) -> None:
    agent = scalars(tiny_run / "tb" / "ppo")
    for tag in (
        "env/latency_s",
        "env/ttft_s",
        "env/slo_violation_rate",
        "env/cache_hit_rate",
        "env/energy_j",
        "env/tier_share/edge",
        "env/tier_share/cloud",
        "eval/mean_reward",
        "eval/slo_violation_rate",
        "train/value_loss",
        "perf/env_steps_per_s",
    ):
        assert tag in agent, tag
    assert "env/split" in histogram_tags(tiny_run / "tb" / "ppo")
    eval_tags = {t for t in agent if t.startswith(("eval/", "family/"))}
    eval_steps = [s for s, _ in agent["eval/mean_reward"]]
    assert eval_steps[0] == 0 and eval_steps == sorted(set(eval_steps)) and len(eval_steps) >= 3
    for name in ("greedy", "oracle"):
        sibling = scalars(tiny_run / "tb" / name)
        assert set(sibling) == eval_tags
        assert [s for s, _ in sibling["eval/mean_reward"]] == eval_steps
        values = {v for _, v in sibling["eval/mean_reward"]}
        assert len(values) == 1  # heuristics do not learn: one value at every step
    greedy = scalars(tiny_run / "tb" / "greedy")["eval/mean_reward"][0][1]
    oracle = scalars(tiny_run / "tb" / "oracle")["eval/mean_reward"][0][1]
    assert oracle >= greedy - 1e-9


def test_tiny_run_writes_checkpoints_final_and_summary(tiny_run: Path) -> None:
    found = list_checkpoints(tiny_run)
    assert [step for step, _ in found] == [512]  # rollouts start at 0, 256, 512, 768
    for folder in [f for _, f in found] + [tiny_run / "final"]:
        assert sorted(p.name for p in folder.iterdir()) == sorted(CHECKPOINT_FILES)
    meta = json.loads((tiny_run / "final" / "meta.json").read_text())
    spec = meta["feature_spec"]
    assert meta["num_timesteps"] == 1024
    assert spec["n_actions"] == 2 * (spec["n_layers"] + 2)
    assert spec["obs_dim"] == len(spec["feature_names"]) == len(meta["obs_normalization"]["mean"])
    assert {"n_layers", "history", "k_priv", "outage_mbps", "feature_schema_version"} <= set(spec)
    assert meta["config"]["n_envs"] == 2 and meta["scenario"] == "default"
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["env_steps_per_s"] > 0
    assert set(summary["final"]) == {"ppo", "greedy", "oracle"}
    assert yaml.safe_load((tiny_run / "config.yaml").read_text())["total_timesteps"] == 1024
    assert find_model_dir(tiny_run) == tiny_run / "final"
    # a finished run continues from final/ (step 1024), not from its checkpoint at 512
    assert resolve_resume(tiny_run) == (tiny_run, tiny_run / "final")


def test_sb3_policy_matches_masked_predict(tiny_run: Path) -> None:
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    import agents.sb3_policy  # noqa: F401  (registers the sb3 prefix)
    from agents.policies import resolve_policy
    from envs.split_cache import SplitCacheEnv
    from offload_rl.features import encode_observation
    from offload_rl.scenario import load_scenario

    scenario = load_scenario("default")
    policy = resolve_policy(f"sb3:{tiny_run}", scenario)
    model = MaskablePPO.load(str(tiny_run / "final" / "model.zip"), device="cpu")
    env = SplitCacheEnv(scenario, episode_requests=40)
    vn = VecNormalize.load(str(tiny_run / "final" / "vecnormalize.pkl"), DummyVecEnv([lambda: env]))
    vn.training = False
    env.reset(seed=5)
    for _ in range(40):
        mask = env.action_masks()
        action = policy.act(env.state, mask)  # type: ignore[union-attr]
        obs = vn.normalize_obs(encode_observation(env.state, policy.spec)[None, :])  # type: ignore[union-attr]
        expected, _ = model.predict(obs, deterministic=True, action_masks=mask[None, :])
        assert mask[action] and action == int(expected[0])
        env.step(action)


# --------------------------------------------------------------------------------------------
# kill -9, then --resume
# --------------------------------------------------------------------------------------------


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO

    from agents.sb3_policy import load_obs_normalization
    from agents.train import train

    config = write_config(
        tmp_path / "long.yaml",
        total_timesteps=10**7,
        vec_env="dummy",
        eval_every=10**6,
        checkpoint_every=256,
    )
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "offload_rl.cli", "train", "--config", str(config)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(run), "--no-progress"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while latest_checkpoint(run) is None:
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 60 s")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    step = int(json.loads((ckpt / "meta.json").read_text())["num_timesteps"])
    assert step >= 256
    ckpt_model = MaskablePPO.load(str(ckpt / "model.zip"), device="cpu")
    ckpt_adam = ckpt_model.policy.optimizer.state_dict()["state"][0]["step"]
    ckpt_rms = load_obs_normalization(ckpt / "vecnormalize.pkl")
    with (ckpt / "vecnormalize.pkl").open("rb") as fh:
        import pickle

        ckpt_count = pickle.load(fh).obs_rms.count

    target = step + 512
    train(None, None, timesteps=target, resume=run, log=lambda msg: None)

    final = run / "final"
    meta = json.loads((final / "meta.json").read_text())
    assert meta["num_timesteps"] == target  # the step counter continued from the checkpoint
    model = MaskablePPO.load(str(final / "model.zip"), device="cpu")
    # optimiser state continued: Adam's step grew by exactly the updates done after resuming
    updates_per_rollout = TINY["ppo"]["n_epochs"] * (128 * 2 // 128)  # type: ignore[index]
    adam = model.policy.optimizer.state_dict()["state"][0]["step"]
    assert float(adam) == float(ckpt_adam) + updates_per_rollout * (512 // 256)
    # normalisation statistics continued: the count grew by the observations seen since
    with (final / "vecnormalize.pkl").open("rb") as fh:
        import pickle

        final_count = pickle.load(fh).obs_rms.count
    assert final_count == pytest.approx(ckpt_count + 2 + (target - step))
    assert ckpt_rms is not None
    # one TensorBoard run, continued: no step twice, evaluation at the resume point and the end
    # (the order in which the accumulator reads the two event files is not a contract: sort)
    agent = scalars(run / "tb" / "ppo")
    evals = sorted(s for s, _ in agent["eval/mean_reward"])
    assert evals == sorted(set(evals)) and evals[-2:] == [step, target]
    greedy = sorted(s for s, _ in scalars(run / "tb" / "greedy")["eval/mean_reward"])
    assert greedy == evals
    # the updates after resuming logged a real loss (the last one by step, not the step)
    last_step, last_loss = max(agent["train/value_loss"])
    assert last_step > step
    assert np.isfinite(last_loss) and last_loss > 0
