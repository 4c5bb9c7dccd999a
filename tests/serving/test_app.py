"""The decision service: endpoints, auth, validation, reload, fallback, encoder parity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from offload_rl.features import action_mask, encode_observation
from serving.app import EXAMPLE_STATE, MAX_BATCH, DecisionRequest, create_app
from serving.client import state_to_json
from serving.policy_runtime import DecisionRuntime, OnnxPolicy
from tests.serving.helpers import TOKEN, free_port, live_copy, policy_file, variant

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return policy_file(tmp_path_factory)


@pytest.fixture(scope="module")
def client(policy):
    with TestClient(create_app(str(policy), TOKEN, watch_interval_s=None)) as c:
        c.headers.update(AUTH)
        yield c


@pytest.fixture(scope="module")
def open_client():
    """No policy, no token: the heuristic fallback answers."""
    with TestClient(create_app(None, None)) as c:
        yield c


def test_decide_returns_a_valid_decision(client, policy):
    r = client.post("/v1/decide", json=EXAMPLE_STATE)
    assert r.status_code == 200
    body = r.json()
    version = OnnxPolicy.from_file(policy).version
    assert body["policy_version"] == version and body["fallback"] is False
    req = DecisionRequest.model_validate(EXAMPLE_STATE)
    spec = client.app.state.runtime.spec
    mask = action_mask(req.to_state(), spec)
    assert mask[body["action"]]
    assert body["tier_index"] == body["action"] // 2
    assert body["keep"] == bool(body["action"] % 2) and body["cache"] in ("keep", "drop")
    assert body["meaning"] == spec.layout.meaning(body["action"])
    assert body["tier"] in ("device", "edge", "split", "cloud")


def test_batch_matches_single_decisions(client):
    states = []
    for i in range(20):
        s = dict(EXAMPLE_STATE)
        s["throughput_mbps"] = [0.05 * (i + 1)] * 8
        s["private"] = i % 3 == 0
        s["device_memory_layers"] = i % 25
        states.append(s)
    batch = client.post("/v1/decide/batch", json={"states": states})
    assert batch.status_code == 200
    singles = [client.post("/v1/decide", json=s).json() for s in states]
    assert batch.json()["decisions"] == singles


def test_batch_bounds(client):
    too_many = {"states": [EXAMPLE_STATE] * (MAX_BATCH + 1)}
    r = client.post("/v1/decide/batch", json=too_many)
    assert r.status_code in (413, 422)
    r = client.post("/v1/decide/batch", json={"states": []})
    assert r.status_code == 422 and "states" in r.json()["message"]


def test_token_guards_everything_but_healthz(policy):
    app = create_app(str(policy), TOKEN, watch_interval_s=None)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        for method, path in [
            ("POST", "/v1/decide"),
            ("POST", "/v1/decide/batch"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
            ("GET", "/v1/policy"),
            ("POST", "/v1/policy/reload"),
            ("GET", "/openapi.json"),
            ("GET", "/nowhere"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                r = c.request(method, path, json=EXAMPLE_STATE, headers=headers)
                assert r.status_code == 401, (method, path, headers)
                assert r.headers["www-authenticate"] == "Bearer"
        r = c.post("/v1/decide", json=EXAMPLE_STATE, headers={"Authorization": f"bearer {TOKEN}"})
        assert r.status_code == 200
        schema = c.get("/openapi.json", headers=AUTH).json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_validation_errors_name_the_field(client):
    cases = {
        "rtt_ms": float("nan"),
        "edge_load": 1.5,
        "new_tokens": -1,
        "turn": 2.5,
        "private": "yes",
        "throughput_mbps": [1.0] * 65,
        "slo_ttft_s": float("inf"),
        "cached_split": 25,  # the model has 24 layers
    }
    for field, value in cases.items():
        body = json.dumps({**EXAMPLE_STATE, field: value})  # NaN/inf as JSON extensions
        r = client.post("/v1/decide", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, field
        assert r.json()["message"].startswith(f"body.{field}"), r.json()
        assert "nan" not in r.text.lower() or field != "rtt_ms" or "finite" in r.text
    r = client.post("/v1/decide", json={**EXAMPLE_STATE, "surprise": 1})
    assert r.status_code == 422 and "surprise" in r.json()["message"]
    missing = {k: v for k, v in EXAMPLE_STATE.items() if k != "rtt_ms"}
    r = client.post("/v1/decide", json=missing)
    assert r.status_code == 422 and "rtt_ms" in r.json()["message"]


def test_body_limits_and_content_types(client):
    big = b'{"throughput_mbps": [' + b"1.0," * 400_000 + b"1.0]}"
    r = client.post("/v1/decide", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post(
        "/v1/decide", content=json.dumps(EXAMPLE_STATE), headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415 and "application/json" in r.json()["message"]
    r = client.post(
        "/v1/decide", content=json.dumps(EXAMPLE_STATE).encode(), headers={"content-type": ""}
    )
    assert r.status_code == 415
    r = client.post(
        "/v1/decide",
        content=json.dumps(EXAMPLE_STATE),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200
    r = client.post(
        "/v1/decide", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_readyz_and_policy(client, policy):
    r = client.get("/readyz").json()
    assert r["status"] == "ready" and r["source"] == "onnx"
    p = client.get("/v1/policy").json()
    assert p["version"] == OnnxPolicy.from_file(policy).version
    assert p["metadata"]["feature_names"][0] == "throughput_0"
    assert p["metadata"]["action_meanings"][0] == "edge, drop"


def test_fallback_when_no_policy(open_client):
    r = open_client.get("/readyz").json()
    assert r["status"] == "degraded" and r["source"] == "fallback"
    d = open_client.post("/v1/decide", json=EXAMPLE_STATE).json()
    assert d["fallback"] is True and d["policy_version"] == "heuristic:greedy"
    assert open_client.get("/v1/policy").json()["metadata"] is None
    r = open_client.post("/v1/policy/reload")
    assert r.status_code == 409 and "no policy file" in r.json()["message"]


def test_metrics(client):
    client.post("/v1/decide", json=EXAMPLE_STATE)
    text = client.get("/metrics").text
    assert 'offload_rl_requests_total{endpoint="/v1/decide",status="200"}' in text
    assert "offload_rl_request_latency_seconds_bucket" in text
    assert 'offload_rl_decisions_total{action="' in text and 'source="policy"' in text
    assert "offload_rl_fallback_decisions_total" in text
    assert 'offload_rl_policy_info{source="onnx",version="' in text


def test_openapi_examples_are_valid_requests(client):
    schema = client.get("/openapi.json").json()
    with_body = [
        (path, op)
        for path, ops in schema["paths"].items()
        for op in ops.values()
        if "requestBody" in op
    ]
    assert {p for p, _ in with_body} == {
        "/v1/decide",
        "/v1/decide/batch",
        "/v2/decide",
        "/v2/decide/batch",
        "/v1/edge/state",
    }
    for path, op in with_body:
        examples = op["requestBody"]["content"]["application/json"]["examples"]
        assert examples
        for example in examples.values():
            r = client.post(path, json=example["value"])
            # this service has no edge adapter: a push is refused (409), after validation
            expected = 409 if path == "/v1/edge/state" else 200
            assert r.status_code == expected, (path, r.text)


def test_encoder_parity_env_and_api(client, policy):
    """The same states through the env and through the API: identical vectors, decisions."""
    from envs.split_cache import SplitCacheEnv

    env = SplitCacheEnv("default", episode_requests=64)
    spec = client.app.state.runtime.spec
    obs, _ = env.reset(seed=5)
    sess = OnnxPolicy.from_file(policy)
    rng = np.random.default_rng(0)
    bodies, expected = [], []
    for _ in range(120):
        body = state_to_json(env.state)
        body = json.loads(json.dumps(body))  # what goes over the wire
        served_state = DecisionRequest.model_validate(body).to_state()
        np.testing.assert_array_equal(encode_observation(served_state, spec), obs)
        np.testing.assert_array_equal(action_mask(served_state, spec), env.action_masks())
        bodies.append(body)
        expected.append(int(sess.run(obs[None], env.action_masks()[None])[0]))
        obs, _, _, trunc, _ = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        if trunc:
            obs, _ = env.reset()
    got = [
        d["action"]
        for d in client.post("/v1/decide/batch", json={"states": bodies}).json()["decisions"]
    ]
    assert got == expected
    assert [client.post("/v1/decide", json=b).json()["action"] for b in bodies[:20]] == expected[
        :20
    ]


def test_reload_swaps_and_corrupt_file_keeps_old(policy, tmp_path):
    live = live_copy(policy, tmp_path / "live.onnx")
    with TestClient(create_app(str(live), None, watch_interval_s=None)) as c:
        v1 = c.get("/v1/policy").json()["version"]
        variant(policy, live, source_model="retrained")
        r = c.post("/v1/policy/reload")
        assert r.status_code == 200 and r.json()["changed"] is True
        v2 = r.json()["version"]
        assert v2 != v1 and c.post("/v1/decide", json=EXAMPLE_STATE).json()["policy_version"] == v2
        live.write_bytes(b"this is not an onnx file")
        r = c.post("/v1/policy/reload")
        assert r.status_code == 409 and v2 in r.json()["message"]
        d = c.post("/v1/decide", json=EXAMPLE_STATE).json()
        assert d["policy_version"] == v2 and d["fallback"] is False
        ready = c.get("/readyz").json()
        assert ready["status"] == "ready" and "not an" in ready["last_error"]
        variant(policy, live, n_layers="12")  # incompatible with the service's features
        r = c.post("/v1/policy/reload")
        assert r.status_code == 409 and "trained for n_layers=12" in r.json()["message"]
        live.unlink()
        assert c.post("/v1/policy/reload").status_code == 409
        assert c.get("/v1/policy").json()["version"] == v2
        assert 'offload_rl_policy_reloads_total{result="rejected"} 3.0' in c.get("/metrics").text


def test_corrupt_file_at_start_serves_fallback(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with TestClient(create_app(str(bad), None, watch_interval_s=None)) as c:
        r = c.get("/readyz").json()
        assert r["status"] == "degraded" and r["last_error"]
        assert c.post("/v1/decide", json=EXAMPLE_STATE).json()["fallback"] is True


def test_file_watch_reloads(policy, tmp_path):
    live = live_copy(policy, tmp_path / "watched.onnx")
    with TestClient(create_app(str(live), None, watch_interval_s=0.05)) as c:
        v1 = c.get("/v1/policy").json()["version"]
        variant(policy, live, source_model="watched-v2")
        deadline = time.monotonic() + 20.0
        while c.get("/v1/policy").json()["version"] == v1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/v1/policy").json()["version"] != v1


def test_in_flight_request_finishes_on_the_old_policy(policy, tmp_path):
    live = live_copy(policy, tmp_path / "inflight.onnx")
    rt = DecisionRuntime("default", str(live))
    old = rt.live
    assert old is not None
    new_file = variant(policy, tmp_path / "new.onnx", source_model="new")
    real_run = old.run
    swapped = threading.Event()

    def slow_run(obs, mask):
        result = rt.reload(str(new_file))  # the swap happens while this request runs
        swapped.set()
        assert result.ok
        return real_run(obs, mask)

    old.run = slow_run  # type: ignore[method-assign]
    req = DecisionRequest.model_validate(EXAMPLE_STATE).to_state()
    d = rt.decide(req)
    assert swapped.is_set() and d.policy_version == old.version and not d.fallback
    assert rt.version != old.version
    assert rt.decide(req).policy_version == rt.version


def test_masked_action_from_a_policy_is_never_returned(policy, tmp_path):
    rt = DecisionRuntime("default", str(policy))
    assert rt.live is not None
    rt.live.run = lambda obs, mask: np.full(len(obs), 51, dtype=np.int64)  # type: ignore[method-assign]
    state = DecisionRequest.model_validate(EXAMPLE_STATE).to_state()
    d = rt.decide(state)
    assert d.fallback is True and d.action != 51
    assert all(x.fallback and x.action != 51 for x in rt.decide_many([state] * 3))

    def broken(obs, mask):
        raise RuntimeError("onnxruntime failed")

    rt.live.run = broken  # type: ignore[method-assign]
    assert rt.decide(state).fallback is True
    assert all(x.fallback for x in rt.decide_many([state] * 3))


@pytest.mark.slow
def test_serve_command_and_sighup_reload(policy, tmp_path):
    """The real server: uvicorn in a subprocess, bound to 127.0.0.1, SIGHUP reloads."""
    live = live_copy(policy, tmp_path / "served.onnx")
    port = free_port()
    env = {**os.environ, "OFFLOAD_RL_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "offload_rl",
            "serve",
            "--policy",
            str(live),
            "--port",
            str(port),
            "--watch-interval",
            "0",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60.0
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with httpx.Client(base_url=url, headers=AUTH, timeout=5.0) as c:
            assert c.post("/v1/decide", json=EXAMPLE_STATE).status_code == 200
            assert httpx.post(f"{url}/v1/decide", json=EXAMPLE_STATE).status_code == 401
            v1 = c.get("/v1/policy").json()["version"]
            variant(policy, live, source_model="hup")
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30.0
            while c.get("/v1/policy").json()["version"] == v1:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            assert c.post("/v1/decide", json=EXAMPLE_STATE).json()["fallback"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serving_entry_point_tunes_the_garbage_collector():
    # process-wide, so checked in a fresh interpreter: app_from_env (what `offload-rl serve`
    # runs) freezes the start-up objects and raises the young threshold at start-up
    code = (
        "import gc, os\n"
        "from fastapi.testclient import TestClient\n"
        "from serving.app import GC_GEN0_THRESHOLD, app_from_env, create_app\n"
        "os.environ['OFFLOAD_RL_WATCH_INTERVAL'] = '0'\n"
        "with TestClient(create_app(None, None, watch_interval_s=None)):\n"
        "    assert gc.get_freeze_count() == 0, 'a library app must not tune the process'\n"
        "with TestClient(app_from_env()):\n"
        "    assert gc.get_freeze_count() > 1000, gc.get_freeze_count()\n"
        "    assert gc.get_threshold()[0] >= GC_GEN0_THRESHOLD, gc.get_threshold()\n"
        "print('ok')\n"
    )
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
