"""ONNX export: one self-contained file, exact parity with model.predict, metadata, rejection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from agents.export import ExportError, export_policy, locate_saved_model, read_normalization
from offload_rl.cli import main
from offload_rl.features import FEATURE_SCHEMA_VERSION, FeatureSpec
from serving.policy_file import (
    HASH_KEY,
    PolicyFileError,
    compute_version_hash,
    read_metadata,
    set_metadata,
)
from serving.policy_runtime import OnnxPolicy
from tests.tiny_model import tiny_policy, tiny_run


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def run_dir(base):
    return tiny_run(base)


@pytest.fixture(scope="module")
def policy_path(base):
    return tiny_policy(base)


def test_cli_export_checks_parity_on_10000_and_writes_one_file(run_dir, tmp_path, capsys):
    out = tmp_path / "policy.onnx"
    assert main(["export", str(run_dir), "--out", str(out), "--parity", "10000"]) == 0
    printed = capsys.readouterr().out
    assert "10000 observations (3000 from the environment)" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.onnx"]  # no .onnx.data
    model = onnx.load(str(out))
    assert all(i.data_location != onnx.TensorProto.EXTERNAL for i in model.graph.initializer)


def test_metadata_describes_features_mask_and_actions(policy_path):
    model = onnx.load(str(policy_path))
    meta = read_metadata(model)
    spec = FeatureSpec(n_layers=24, history=8, k_priv=2, outage_mbps=0.1)
    assert json.loads(meta["feature_names"]) == spec.feature_names()
    assert json.loads(meta["action_meanings"]) == spec.layout.meanings()
    assert meta["feature_schema_version"] == str(FEATURE_SCHEMA_VERSION)
    assert json.loads(meta["mask_layout"])["always_masked"] == [spec.layout.encode(25, 1)]
    assert (meta["n_layers"], meta["history"], meta["k_priv"]) == ("24", "8", "2")
    assert float(meta["outage_mbps"]) == 0.1
    assert meta["scenario"] == "default"
    assert json.loads(meta["profiles"])["edge"] == "qwen2.5-0.5b@l4"
    assert json.loads(meta["normalization"])["baked_into_graph"] is True
    assert meta[HASH_KEY] == compute_version_hash(model, meta)


def test_graph_has_dynamic_batch_and_named_io(policy_path):
    sess = ort.InferenceSession(str(policy_path), providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in sess.get_inputs()}
    outs = {o.name: o for o in sess.get_outputs()}
    assert ins["obs"].type == "tensor(float)" and ins["obs"].shape[1] == 25
    assert ins["mask"].type == "tensor(bool)" and ins["mask"].shape[1] == 52
    assert not isinstance(ins["obs"].shape[0], int)
    assert outs["action"].type == "tensor(int64)"
    for batch in (1, 7, 300):
        obs = np.random.default_rng(batch).random((batch, 25), dtype=np.float32)
        mask = np.ones((batch, 52), dtype=bool)
        mask[:, 51] = False
        action, logits = sess.run(["action", "logits"], {"obs": obs, "mask": mask})
        assert action.shape == (batch,) and logits.shape == (batch, 52)
        assert np.all(logits[:, 51] == np.float32(-1e8))


def test_onnx_equals_predict_on_environment_observations(run_dir, policy_path):
    """Independent of the exporter's own check: fresh episodes, the env's masks."""
    from sb3_contrib import MaskablePPO

    from envs.split_cache import SplitCacheEnv

    saved = locate_saved_model(run_dir)
    model = MaskablePPO.load(saved.model_zip, device="cpu")
    norm = read_normalization(saved.vecnormalize)
    env = SplitCacheEnv("default", episode_requests=32)
    rng = np.random.default_rng(7)
    obs, _ = env.reset(seed=123)
    xs, ms = [], []
    for _ in range(400):
        xs.append(obs)
        ms.append(env.action_masks())
        obs, _, _, trunc, _ = env.step(int(rng.choice(np.flatnonzero(ms[-1]))))
        if trunc:
            obs, _ = env.reset()
    x, m = np.asarray(xs), np.asarray(ms)
    want, _ = model.predict(norm.apply(x), action_masks=m, deterministic=True)
    sess = ort.InferenceSession(str(policy_path), providers=["CPUExecutionProvider"])
    got = sess.run(["action"], {"obs": x, "mask": m})[0]
    np.testing.assert_array_equal(got, want)
    assert m[np.arange(len(got)), got].all()


def test_parity_failure_raises_and_writes_nothing(run_dir, tmp_path, monkeypatch):
    """A graph that differs from the model (normalisation left out) is caught."""
    import agents.export as export

    real = export.build_export_module

    def without_normalization(model, norm):
        return real(model, export.Normalization())

    monkeypatch.setattr(export, "build_export_module", without_normalization)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"parity: ONNX and model.predict disagree"):
        export_policy(run_dir, out, parity=1000)
    assert list(tmp_path.iterdir()) == []


def test_export_without_vecnormalize(run_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(run_dir / "final", plain)
    (plain / "vecnormalize.pkl").unlink()
    report = export_policy(plain / "model.zip", tmp_path / "plain.onnx", parity=500)
    meta = read_metadata(onnx.load(str(report.path)))
    assert json.loads(meta["normalization"]) == {"kind": "none"}


def test_export_reads_the_training_meta_layout(run_dir, tmp_path):
    """agents.train nests the spec under "feature_spec" and carries the statistics itself."""
    folder = tmp_path / "checkpoints" / "step_256"
    shutil.copytree(run_dir / "final", folder)
    flat = json.loads((folder / "meta.json").read_text())
    norm = read_normalization(folder / "vecnormalize.pkl")
    assert norm.mean is not None and norm.std is not None
    keys = (
        "n_layers",
        "history",
        "k_priv",
        "outage_mbps",
        "obs_dim",
        "n_actions",
        "feature_schema_version",
    )
    nested = {
        "format": "offload-rl/sb3-checkpoint",
        "scenario": flat["scenario"],
        "num_timesteps": flat["num_timesteps"],
        "feature_spec": {k: flat[k] for k in keys},
        "obs_normalization": {
            "mean": norm.mean.tolist(),
            "var": (norm.std**2 - norm.epsilon).tolist(),
            "clip_obs": norm.clip,
            "epsilon": norm.epsilon,
        },
    }
    (folder / "meta.json").write_text(json.dumps(nested))
    reference = export_policy(run_dir, tmp_path / "ref.onnx", parity=300)
    report = export_policy(tmp_path, tmp_path / "nested.onnx", parity=2000)  # the run folder
    assert report.metadata["num_timesteps"] == str(flat["num_timesteps"])
    assert report.metadata["source_model"] == "step_256"
    (folder / "vecnormalize.pkl").unlink()  # statistics from meta.json alone
    report = export_policy(folder, tmp_path / "meta-stats.onnx", parity=2000)
    assert reference.version != report.version  # another source name, same graph otherwise


def test_bad_sources_are_user_errors(run_dir, tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.onnx")]) == 2
    broken = tmp_path / "broken"
    shutil.copytree(run_dir / "final", broken)
    meta = json.loads((broken / "meta.json").read_text())
    meta["feature_schema_version"] = FEATURE_SCHEMA_VERSION + 1
    (broken / "meta.json").write_text(json.dumps(meta))
    assert main(["export", str(broken), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "feature schema" in err and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def _rewrite(src, dst, edit):
    model = onnx.load(str(src))
    edit(model)
    onnx.save(model, str(dst))
    return dst


def test_tampered_weights_are_rejected(policy_path, tmp_path):
    def flip_a_weight(model):
        init = max(model.graph.initializer, key=lambda i: len(i.raw_data))
        raw = bytearray(init.raw_data)
        raw[0] ^= 0x40
        init.raw_data = bytes(raw)

    bad = _rewrite(policy_path, tmp_path / "tampered.onnx", flip_a_weight)
    with pytest.raises(PolicyFileError, match="version hash"):
        OnnxPolicy.from_file(bad)


def test_incompatible_metadata_is_rejected(policy_path, tmp_path):
    def other_schema(model):
        set_metadata(model, {**read_metadata(model), "feature_schema_version": "999"})

    bad = _rewrite(policy_path, tmp_path / "schema.onnx", other_schema)
    with pytest.raises(PolicyFileError, match="feature schema version 999"):
        OnnxPolicy.from_file(bad)
    with pytest.raises(PolicyFileError, match="trained for n_layers=24"):
        OnnxPolicy.from_file(policy_path, FeatureSpec(n_layers=12))
    with pytest.raises(PolicyFileError, match=r"not an ONNX model|not an offload-rl policy"):
        OnnxPolicy(b"\x00garbage" * 10, "garbage.onnx")


def test_onnx_loader_is_registered_for_evaluation(policy_path):
    from agents.policies import resolve_policy
    from envs.split_cache import SplitCacheEnv

    env = SplitCacheEnv("default", episode_requests=8)
    env.reset(seed=0)
    policy = resolve_policy(f"onnx:{policy_path}", env.scenario)
    assert isinstance(policy, OnnxPolicy)
    for _ in range(8):
        a = policy.act(env.state, env.action_masks())
        assert env.action_masks()[a]
        env.step(a)
