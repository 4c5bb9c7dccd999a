"""A tiny MaskablePPO trained for a few hundred steps, saved in the trained-model layout.

``RUN/final/{model.zip, vecnormalize.pkl, meta.json}``; used by the export and serving tests.
Trained once per test session (memoised), on ``SplitCacheEnv("default", episode_requests=16)``
(and, for the cell's tests, on ``EdgeCellEnv("cell", episode_requests=16)``).
"""

from __future__ import annotations

import json
from pathlib import Path

from offload_rl.features import FEATURE_SCHEMA_VERSION
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import policy_feature_spec

_CACHE: dict[str, Path] = {}


def train_tiny_run(
    run_dir: Path, timesteps: int = 256, normalize: bool = True, scenario_name: str = "default"
) -> Path:
    """Train and save a tiny model under ``run_dir`` (on ``scenario_name``); returns it."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from envs.edge_cell import EdgeCellEnv
    from envs.split_cache import SplitCacheEnv

    # a scenario with a cell: section trains on EdgeCell-v0, as `offload-rl train` does
    env_class = EdgeCellEnv if load_scenario(scenario_name).cell is not None else SplitCacheEnv
    venv = DummyVecEnv([lambda: env_class(scenario_name, episode_requests=16)])
    env = VecNormalize(venv, norm_reward=False) if normalize else venv
    model = MaskablePPO(
        "MlpPolicy",
        env,
        n_steps=64,
        batch_size=64,
        n_epochs=2,
        policy_kwargs={"net_arch": [32, 32]},
        seed=0,
        device="cpu",
    )
    model.learn(timesteps)
    final = run_dir / "final"
    final.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    model.save(final / "model.zip")
    if isinstance(env, VecNormalize):
        env.save(str(final / "vecnormalize.pkl"))
    scenario = load_scenario(scenario_name)
    spec = policy_feature_spec(scenario)  # the cell observation on a cell scenario
    meta = {
        "scenario": scenario_name,
        **spec.to_dict(),
        "obs_dim": spec.obs_dim,
        "n_actions": spec.layout.n_actions,
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "num_timesteps": int(model.num_timesteps),
    }
    (final / "meta.json").write_text(json.dumps(meta, indent=2))
    return run_dir


def tiny_run(base: Path) -> Path:
    """The session's tiny run (trained on first use under ``base``)."""
    if "run" not in _CACHE:
        _CACHE["run"] = train_tiny_run(base / "tiny-run")
    return _CACHE["run"]


def tiny_cell_run(base: Path) -> Path:
    """The session's tiny run on the embedded ``cell`` scenario (EdgeCell-v0)."""
    if "cell" not in _CACHE:
        _CACHE["cell"] = train_tiny_run(base / "tiny-cell-run", scenario_name="cell")
    return _CACHE["cell"]


def tiny_policy(base: Path) -> Path:
    """The session's tiny run exported to ONNX (parity checked on 2,000 observations)."""
    if "onnx" not in _CACHE:
        from agents.export import export_policy

        out = base / "tiny.onnx"
        export_policy(tiny_run(base), out, parity=2000)
        _CACHE["onnx"] = out
    return _CACHE["onnx"]
