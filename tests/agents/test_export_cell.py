"""Export of a policy trained in the cell: parity on EdgeCell-v0's observations and masks,
provenance in the metadata, and the file served behind the edge adapter."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient

from agents.export import ExportError, environment_samples, export_policy, parity_set
from envs.edge_cell import EdgeCellEnv
from offload_rl.features import FeatureSpec
from offload_rl.scenario import load_scenario
from serving.app import create_app
from serving.edge_state.settings import EdgeSettings
from serving.edge_state.stand_in import MetricsServer, vllm_metrics_text
from serving.policy_file import PolicyFileError, read_metadata, set_metadata
from serving.policy_runtime import OnnxPolicy
from serving.schemas_v2 import EXAMPLE_DEVICE_STATE
from tests.tiny_model import tiny_cell_run

pytest.importorskip("sb3_contrib")


@pytest.fixture(scope="module")
def cell_run(tmp_path_factory):
    return tiny_cell_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def exported(cell_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("cell-export") / "cell.onnx"
    report = export_policy(cell_run, out, parity=600, provenance={"commit": "abc123", "steps": 7})
    return out, report


def test_environment_samples_are_the_cells_observations_and_masks():
    """The parity set's environment part replays EdgeCell-v0 itself: same observations and
    masks as stepping the environment with the same seeded random valid actions."""
    scenario = load_scenario("cell")
    env = EdgeCellEnv(scenario, episode_requests=64)
    spec = env.feature_spec
    assert spec.cell
    obs, masks = environment_samples(scenario, spec, 40, seed=3)
    rng = np.random.default_rng(3)
    o, _ = env.reset(seed=3)
    for i in range(40):
        np.testing.assert_array_equal(obs[i], o)
        m = env.action_masks()
        np.testing.assert_array_equal(masks[i], m)
        o, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(m))))
        if terminated or truncated:
            o, _ = env.reset()
    names = spec.feature_names()
    waiting = obs[:, names.index("edge_waiting")]
    assert waiting.min() >= 0.0 and np.ptp(obs, axis=0).any()  # cell features, not constants


def test_parity_masks_are_valid_for_the_cell():
    scenario = load_scenario("cell")
    spec = EdgeCellEnv(scenario, episode_requests=8).feature_spec
    obs, masks, n_env = parity_set(scenario, spec, 200, seed=1)
    assert obs.shape == (200, spec.obs_dim) and n_env == 60
    assert masks.any(axis=1).all()
    assert not masks[:, spec.layout.encode(spec.layout.cloud_index, 1)].any()


def test_a_cell_model_exports_with_parity_and_provenance(exported):
    out, report = exported
    assert report.parity_checked == 600 and report.parity_env == 180
    meta = read_metadata(onnx.load(str(out)))
    assert FeatureSpec.from_dict(meta).cell
    assert meta["scenario"] == "cell"
    assert (meta["provenance_commit"], meta["provenance_steps"]) == ("abc123", "7")
    policy = OnnxPolicy.from_file(out, FeatureSpec.from_dict(meta))
    assert policy.version == report.version


def test_provenance_is_covered_by_the_version_hash(exported, tmp_path):
    out, _ = exported
    model = onnx.load(str(out))
    for p in model.metadata_props:
        if p.key == "provenance_commit":
            p.value = "forged"
    bad = tmp_path / "forged.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(PolicyFileError, match="version hash"):
        OnnxPolicy.from_file(bad)
    set_metadata(model, read_metadata(model))  # re-hashed: accepted again
    onnx.save(model, str(bad))
    OnnxPolicy.from_file(bad)


def test_a_cell_export_that_disagrees_with_predict_is_refused(cell_run, tmp_path, monkeypatch):
    """A graph without the run's normalisation decides otherwise on cell observations."""
    import agents.export as export

    build = export.build_export_module
    monkeypatch.setattr(export, "build_export_module", lambda model, _: build(model, None))
    with pytest.raises(ExportError, match="parity"):
        export_policy(cell_run, tmp_path / "bad.onnx", parity=600)
    assert not (tmp_path / "bad.onnx").exists()


def test_the_exported_cell_policy_answers_v2_behind_the_pull_adapter(exported):
    """``offload-rl serve --policy cell.onnx --edge-metrics-url ...``'s app: the policy itself
    answers (no fallback) once the edge's state is pulled."""
    out, report = exported
    device = {**EXAMPLE_DEVICE_STATE, "cached_split": None, "cached_tokens": 0}
    with MetricsServer(vllm_metrics_text(running=2, waiting=0, kv_usage=0.1)) as metrics:
        edge = EdgeSettings(metrics_url=metrics.url, poll_interval_s=3600.0, max_age_s=3600.0)
        app = create_app(str(out), None, watch_interval_s=None, edge=edge)
        with TestClient(app) as c:
            assert app.state.edge_poller.poll_once()
            got = c.post("/v2/decide", json=device).json()
            assert (got["fallback"], got["edge_state"]) == (False, "fresh")
            assert got["policy_version"] == report.version
            batch = c.post("/v2/decide/batch", json={"states": [device] * 3}).json()
            assert [d["action"] for d in batch["decisions"]] == [got["action"]] * 3
