"""ONNX export: one self-contained file, exact parity with model.predict, metadata, rejection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from agents.export import ExportError, export_policy, locate_saved_model
from agents.sb3_policy import load_obs_normalization, normalization_digest
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
    norm = load_obs_normalization(saved.vecnormalize)
    assert norm is not None
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
        return real(model, None)

    monkeypatch.setattr(export, "build_export_module", without_normalization)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"parity: ONNX and model.predict disagree"):
        export_policy(run_dir, out, parity=1000)
    assert list(tmp_path.iterdir()) == []


def test_export_without_vecnormalize(run_dir, tmp_path):
    """A model trained without normalisation: training recorded the digest of "none"."""
    plain = tmp_path / "plain"
    shutil.copytree(run_dir / "final", plain)
    (plain / "vecnormalize.pkl").unlink()
    meta = json.loads((plain / "meta.json").read_text())
    meta.update(obs_normalization=None, obs_normalization_sha256=normalization_digest(None))
    (plain / "meta.json").write_text(json.dumps(meta))
    report = export_policy(plain / "model.zip", tmp_path / "plain.onnx", parity=500)
    meta = read_metadata(onnx.load(str(report.path)))
    assert json.loads(meta["normalization"]) == {"kind": "none"}
    assert report.statistics == "the obs_normalization_sha256 in meta.json"


def _training_layout(run_dir, folder, pickle_file=True, digest=True):
    """``run_dir``'s model in the layout ``agents.train`` writes: meta.json from
    ``checkpoint_meta`` (nested spec, statistics, digest); ``digest=False`` is a run trained
    before the digest existed, ``pickle_file=False`` one whose vecnormalize.pkl is gone."""
    import pickle

    from agents.train import checkpoint_meta
    from agents.train_config import TrainConfig
    from offload_rl.scenario import load_scenario

    shutil.copytree(run_dir / "final", folder)
    flat = locate_saved_model(folder)
    with (folder / "vecnormalize.pkl").open("rb") as fh:
        vecnormalize = pickle.load(fh)
    scenario = load_scenario("default")
    steps = flat.meta["num_timesteps"]
    meta = checkpoint_meta(TrainConfig(), flat.spec, scenario, vecnormalize, steps)
    if not digest:
        del meta["obs_normalization_sha256"]
    (folder / "meta.json").write_text(json.dumps(meta))
    if not pickle_file:
        (folder / "vecnormalize.pkl").unlink()
    return folder


def _graph_and_metadata(path):
    """What must not change when only the source of the same statistics changes."""
    model = onnx.load(str(path))
    ignored = {HASH_KEY, "source_model"}
    meta = {k: v for k, v in read_metadata(model).items() if k not in ignored}
    return model.graph.SerializeToString(deterministic=True), meta


def test_export_reads_the_training_meta_layout(run_dir, tmp_path):
    """agents.train nests the spec under "feature_spec" and carries the statistics itself;
    from the pickle or from meta.json alone, the export is the same graph."""
    folder = _training_layout(run_dir, tmp_path / "checkpoints" / "step_256")
    reference = export_policy(run_dir, tmp_path / "ref.onnx", parity=300)
    report = export_policy(tmp_path, tmp_path / "nested.onnx", parity=300)  # the run folder
    assert report.metadata["num_timesteps"] == reference.metadata["num_timesteps"]
    assert report.metadata["source_model"] == "step_256"
    assert report.statistics == "vecnormalize.pkl and the obs_normalization_sha256"
    assert _graph_and_metadata(report.path) == _graph_and_metadata(reference.path)
    (folder / "vecnormalize.pkl").unlink()  # statistics from meta.json alone
    report = export_policy(folder, tmp_path / "meta-stats.onnx", parity=2000)
    assert report.statistics == "the obs_normalization_sha256 in meta.json"
    assert _graph_and_metadata(report.path) == _graph_and_metadata(reference.path)
    assert reference.version != report.version  # only the source name differs


def _corrupt_meta(folder):
    meta = json.loads((folder / "meta.json").read_text())
    stats = meta["obs_normalization"]
    stats["mean"] = [m + 5.0 for m in stats["mean"]]
    stats["var"] = [v * 9.0 for v in stats["var"]]
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder / "meta.json"


def _corrupt_pickle(folder):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from envs.split_cache import SplitCacheEnv

    path = folder / "vecnormalize.pkl"
    venv = DummyVecEnv([lambda: SplitCacheEnv("default", episode_requests=16)])
    vn = VecNormalize.load(str(path), venv)
    vn.obs_rms.mean = vn.obs_rms.mean + 5.0
    vn.obs_rms.var = vn.obs_rms.var * 9.0
    vn.save(str(path))
    return path


@pytest.mark.parametrize(
    ("pickle_file", "digest", "corrupt", "named"),
    [
        (False, True, _corrupt_meta, "meta.json"),  # only meta.json left: its digest
        (True, True, _corrupt_meta, "meta.json"),
        (True, True, _corrupt_pickle, "vecnormalize.pkl"),
        # trained before the digest: the two records disagree (the message names both)
        (True, False, _corrupt_meta, "vecnormalize.pkl"),
        (True, False, _corrupt_pickle, "vecnormalize.pkl"),
    ],
    ids=["meta-only", "meta-beside-pkl", "pkl-beside-digest", "old-meta", "old-pkl"],
)
def test_export_refuses_statistics_training_did_not_write(
    run_dir, tmp_path, pickle_file, digest, corrupt, named
):
    """Mean +5 and variance x9 pass the parity check (it applies them on both sides): the
    record written at training time must refuse them, naming the file."""
    folder = _training_layout(run_dir, tmp_path / "final", pickle_file, digest)
    assert corrupt(folder).parent == folder
    out = tmp_path / "policy.onnx"
    with pytest.raises(ExportError, match="nothing written") as refused:
        export_policy(folder, out, parity=300)
    assert str(refused.value).startswith(f"{folder / named}: ")
    assert str(folder / "meta.json") in str(refused.value)
    assert not out.exists()


def test_statistics_nothing_can_check_need_the_flag(run_dir, tmp_path, capsys):
    """Trained before the digest and the pickle gone: refused with a one-line hint, exported
    (and marked) with --accept-unverified-statistics."""
    folder = _training_layout(run_dir, tmp_path / "final", pickle_file=False, digest=False)
    out = tmp_path / "policy.onnx"
    assert main(["export", str(folder), "--out", str(out), "--parity", "300"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert f"{folder / 'meta.json'}: " in err and "--accept-unverified-statistics" in err
    assert not out.exists()
    flag = "--accept-unverified-statistics"
    assert main(["export", str(folder), "--out", str(out), "--parity", "300", flag]) == 0
    assert "statistics checked against nothing (accepted unverified)" in capsys.readouterr().out
    assert read_metadata(onnx.load(str(out)))["normalization_unverified"] == "true"


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
