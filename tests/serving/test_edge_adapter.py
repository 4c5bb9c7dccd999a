"""The service beside the edge runtime: pull from vLLM-format metrics, push, staleness, v1/v2.

The policy is a cell policy (``FeatureSpec(cell=True)``, :mod:`tests.serving.cell_policy`):
"edge, drop" while the edge's KV occupancy and queue are low, "cloud, drop" otherwise. Its
decisions must follow what the metrics endpoint reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from offload_rl.features import CellDecisionState, encode_observation
from serving.app import EXAMPLE_STATE, create_app
from serving.edge_state.observation import resolve_v2
from serving.edge_state.settings import EdgeSettings
from serving.edge_state.stand_in import MetricsServer, vllm_metrics_text
from serving.schemas_v2 import EDGE_REPORT_EXAMPLE, EXAMPLE_DEVICE_STATE, DeviceDecisionRequest
from tests.serving.cell_policy import cell_policy
from tests.serving.helpers import free_port

CALM = {"running": 2, "waiting": 0, "kv_usage": 0.1}
FULL_KV = {"running": 2, "waiting": 0, "kv_usage": 0.9}
QUEUED = {"running": 2, "waiting": 50, "kv_usage": 0.1}
DEVICE = {**EXAMPLE_DEVICE_STATE, "device_memory_layers": 28, "cached_split": None,
          "cached_tokens": 0}  # fmt: skip


@pytest.fixture(scope="module")
def cell_onnx(tmp_path_factory):
    return cell_policy(tmp_path_factory.mktemp("cell") / "cell.onnx")[0]


@pytest.fixture()
def metrics():
    with MetricsServer(vllm_metrics_text(**CALM)) as server:
        yield server


def pulled_app(policy, url, **settings):
    edge = EdgeSettings(metrics_url=url, poll_interval_s=3600.0, max_age_s=3600.0, **settings)
    return create_app(str(policy), None, watch_interval_s=None, edge=edge)


def answer(client, path, body, server=None, **report):
    """Set what the metrics endpoint says, poll it once, and decide."""
    if server is not None:
        server.text = vllm_metrics_text(**report)
        assert client.app.state.edge_poller.poll_once()
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("path,body", [("/v2/decide", DEVICE), ("/v1/decide", EXAMPLE_STATE)])
def test_decisions_follow_the_pulled_kv_usage_and_queue(cell_onnx, metrics, path, body):
    with TestClient(pulled_app(cell_onnx, metrics.url)) as c:
        calm = answer(c, path, body, metrics, **CALM)
        assert (calm["meaning"], calm["fallback"], calm["edge_state"]) == (
            "edge, drop", False, "fresh")  # fmt: skip
        assert answer(c, path, body, metrics, **FULL_KV)["meaning"] == "cloud, drop"
        assert answer(c, path, body, metrics, **QUEUED)["meaning"] == "cloud, drop"
        assert answer(c, path, body, metrics, **CALM)["meaning"] == "edge, drop"
        assert answer(c, path, body, metrics, names="old", **FULL_KV)["meaning"] == "cloud, drop"
        batch = c.post(f"{path}/batch", json={"states": [body] * 3}).json()["decisions"]
        assert {d["meaning"] for d in batch} == {"cloud, drop"}


def test_the_service_builds_the_cell_observation_with_the_one_encoder(cell_onnx, metrics):
    """The vector the policy sees is encode_observation of the CellDecisionState holding the
    request's device facts and the pulled edge fields, as the table says."""
    with TestClient(pulled_app(cell_onnx, metrics.url)) as c:
        metrics.text = vllm_metrics_text(running=5, waiting=3, kv_usage=0.4)
        c.app.state.edge_poller.poll_once()
        view, status = c.app.state.edge_store.current()
        rt = c.app.state.runtime
        body = {**DEVICE, "cached_split": 7, "cached_tokens": 900, "thermal_level": "serious"}
        got = resolve_v2(DeviceDecisionRequest.model_validate(body), view, status, True, 28,
                         c.app.state.edge_store.defaults)  # fmt: skip
        pool = 7722 * 16
        expected = CellDecisionState(
            throughput_mbps=body["throughput_mbps"], rtt_ms=20.0, new_tokens=180,
            context_tokens=950, turn=2, private=False, slo_ttft_s=1.0, slo_tpot_s=0.1,
            cached_split=7, cached_tokens=900, edge_kv_occupancy=0.4, edge_load=1.0,
            device_memory_layers=28, prev_output_tokens=210, since_last_turn_s=35.0,
            throughput_age_s=0.4, device_class=1, thermal_level=2, radio_state=2,
            edge_waiting=3, edge_waiting_tokens=round(3 * 14160 / 12), edge_running=5,
            edge_running_tokens=round(0.4 * pool), entry_bytes_share=900 * 21 / (28 * pool),
            entry_recency_rank=0,
        )  # fmt: skip
        assert got.policy and got.edge == "fresh"
        np.testing.assert_array_equal(
            encode_observation(got.state, rt.spec), encode_observation(expected, rt.spec)
        )


def test_stale_edge_state_says_so_and_the_heuristic_answers(cell_onnx):
    edge = EdgeSettings(push=True, max_age_s=0.3)
    with TestClient(create_app(str(cell_onnx), None, watch_interval_s=None, edge=edge)) as c:
        missing = c.post("/v2/decide", json=DEVICE).json()
        assert (missing["edge_state"], missing["fallback"]) == ("missing", True)
        assert c.post("/v1/edge/state", json=EDGE_REPORT_EXAMPLE).json()["accepted"]
        fresh = c.post("/v2/decide", json=DEVICE).json()
        assert (fresh["edge_state"], fresh["fallback"]) == ("fresh", False)
        time.sleep(0.4)
        stale = c.post("/v2/decide", json=DEVICE).json()
        assert (stale["edge_state"], stale["fallback"]) == ("stale", True)
        assert stale["policy_version"].startswith("heuristic:")
        assert c.get("/v1/edge/state").json()["status"] == "stale"


def test_pushed_state_reaches_the_decision(cell_onnx):
    edge = EdgeSettings(push=True, max_age_s=60.0)
    with TestClient(create_app(str(cell_onnx), None, watch_interval_s=None, edge=edge)) as c:
        for kv, waiting, meaning in ((0.1, 0, "edge, drop"), (0.95, 0, "cloud, drop"),
                                     (0.1, 80, "cloud, drop")):  # fmt: skip
            report = {"n_running": 1, "n_waiting": waiting, "kv_usage": kv}
            assert c.post("/v1/edge/state", json=report).status_code == 200
            assert c.post("/v2/decide", json=DEVICE).json()["meaning"] == meaning
        bad = c.post("/v1/edge/state", json={"n_running": 1, "n_waiting": 0, "kv_usage": 2.0})
        assert bad.status_code == 422 and "kv_usage" in bad.json()["message"]


def test_single_device_policy_reads_the_device_report_without_an_adapter(tmp_path_factory):
    from tests.serving.helpers import policy_file

    with TestClient(create_app(str(policy_file(tmp_path_factory)), None,
                               watch_interval_s=None)) as c:  # fmt: skip
        v1 = c.post("/v1/decide", json=EXAMPLE_STATE).json()
        assert "edge_state" not in v1  # no adapter: v1 answers exactly as before
        with_report = c.post("/v2/decide", json={**DEVICE, "edge_kv_occupancy": 0.4,
                                                  "edge_load": 0.3}).json()  # fmt: skip
        assert (with_report["edge_state"], with_report["fallback"]) == ("missing", False)
        assert c.post("/v2/decide", json=DEVICE).json()["fallback"] is True


def test_failed_polls_leave_the_last_view_to_age(cell_onnx, metrics):
    with TestClient(pulled_app(cell_onnx, metrics.url)) as c:
        poller = c.app.state.edge_poller
        assert poller.poll_once()
        metrics.status = 503
        assert not poller.poll_once()
        metrics.status, metrics.text = 200, "vllm:num_requests_running 1\n"
        assert not poller.poll_once()
        state = c.get("/v1/edge/state").json()
        assert "num_requests_waiting" in state["last_error"] and state["errors"] >= 2
        text = c.get("/metrics").text
        assert 'offload_rl_edge_reports_total{result="failed",source="pull"}' in text
        assert 'offload_rl_edge_reports_total{result="ok",source="pull"}' in text
        assert "offload_rl_edge_last_report_timestamp_seconds 1." in text


def test_serve_with_the_pull_adapter_follows_the_metrics(cell_onnx, metrics):
    """``offload-rl serve --edge-metrics-url``: the real server polls on its own."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "offload_rl", "serve", "--policy", str(cell_onnx), "--port",
         str(port), "--watch-interval", "0", "--log-level", "warning", "--edge-metrics-url",
         metrics.url, "--edge-poll-interval", "0.1", "--edge-max-age", "5"],
        env={**os.environ, "OFFLOAD_RL_TOKEN": ""},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def decide_when(report: dict[str, float], meaning: str) -> None:
        metrics.text = vllm_metrics_text(**report)
        deadline = time.monotonic() + 30.0
        while True:
            try:
                got = httpx.post(f"{url}/v2/decide", json=DEVICE, timeout=2.0).json()
                if got["meaning"] == meaning and got["edge_state"] == "fresh":
                    return
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, f"still not {meaning!r} with {report}"
            time.sleep(0.1)

    try:
        decide_when(CALM, "edge, drop")
        decide_when(FULL_KV, "cloud, drop")
        decide_when(CALM, "edge, drop")
        decide_when(QUEUED, "cloud, drop")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_bad_adapter_settings_are_one_line(capsys):
    from offload_rl.cli import main

    assert main(["serve", "--edge-metrics-url", "localhost:8001"]) == 2
    assert "--edge-metrics-url must be an http(s) URL" in capsys.readouterr().err
    assert main(["serve", "--edge-metrics-url", "http://x/metrics", "--edge-max-age", "0.5"]) == 2
    assert "below --edge-poll-interval" in capsys.readouterr().err


def test_push_with_several_workers_is_refused(capsys):
    from offload_rl.cli import main

    assert main(["serve", "--workers", "2", "--edge-push"]) == 2
    assert "--edge-push needs --workers 1" in capsys.readouterr().err


def test_single_device_v1_batch_takes_the_pulled_edge_for_every_state(tmp_path_factory, metrics):
    """``/v1/decide/batch`` with the adapter on and a single-device policy: each state decided
    as its body with the view's occupancy and load in place of the device's report, exactly as
    the plain service decides that body (the batch path's fast lane), and as ``/v1/decide``."""
    from tests.serving.helpers import policy_file

    policy = str(policy_file(tmp_path_factory))
    rng = np.random.default_rng(4)
    states = [
        {**EXAMPLE_STATE, "edge_kv_occupancy": float(rng.random()),
         "edge_load": float(rng.random()), "rtt_ms": float(rng.uniform(5, 200)),
         "throughput_mbps": [float(x) for x in rng.uniform(0.05, 60, 8)]}
        for _ in range(40)
    ]  # fmt: skip
    with (
        TestClient(pulled_app(policy, metrics.url)) as pulled,
        TestClient(create_app(policy, None, watch_interval_s=None)) as plain,
    ):
        for report in (CALM, FULL_KV, QUEUED):
            metrics.text = vllm_metrics_text(**report)
            assert pulled.app.state.edge_poller.poll_once()
            view = pulled.get("/v1/edge/state").json()["view"]
            kv, load = view["edge_kv_occupancy"], view["edge_load"]
            batch = pulled.post("/v1/decide/batch", json={"states": states}).json()["decisions"]
            rewritten = [{**s, "edge_kv_occupancy": kv, "edge_load": load} for s in states]
            want = plain.post("/v1/decide/batch", json={"states": rewritten}).json()["decisions"]
            assert [d["action"] for d in batch] == [d["action"] for d in want]
            assert {(d["edge_state"], d["fallback"]) for d in batch} == {("fresh", False)}
            singles = [pulled.post("/v1/decide", json=s).json()["action"] for s in states[:8]]
            assert singles == [d["action"] for d in batch[:8]]
