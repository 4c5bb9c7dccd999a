"""The fast paths of the service give the answers of the plain ones: micro-batched single
decisions, bound onnxruntime buffers, batch encoding, pre-serialised responses."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from offload_rl.features import DecisionState
from serving.app import EXAMPLE_STATE, DecisionRequest, create_app
from serving.batcher import DecisionBatcher
from serving.policy_runtime import MAX_BOUND_BATCH, Decision, DecisionRuntime, OnnxPolicy
from tests.serving.helpers import policy_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return policy_file(tmp_path_factory)


def varied_states(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = dict(EXAMPLE_STATE)
        s["throughput_mbps"] = [
            round(float(x), 3) for x in rng.gamma(2.0, 3.0, rng.integers(0, 10))
        ]
        s["private"] = bool(rng.random() < 0.3)
        s["device_memory_layers"] = int(rng.integers(0, 30))
        s["cached_split"] = None if rng.random() < 0.3 else int(rng.integers(0, 25))
        s["edge_load"] = float(rng.random())
        s["new_tokens"] = int(rng.integers(0, 5000))
        out.append(s)
    return out


def test_to_state_carries_every_field():
    req = DecisionRequest.model_validate(EXAMPLE_STATE)
    fields = {f.name for f in dataclasses.fields(DecisionState)}
    assert set(DecisionRequest.model_fields) == fields
    state = req.to_state()
    assert {name: getattr(state, name) for name in fields} == req.model_dump()


def test_bound_runs_match_plain_runs(policy):
    p = OnnxPolicy.from_file(policy)
    assert p._bound
    rng = np.random.default_rng(3)
    for n in [1, 2, 3, MAX_BOUND_BATCH, MAX_BOUND_BATCH + 1, 40]:
        for _ in range(5):
            obs = rng.random((n, p.spec.obs_dim), dtype=np.float32)
            mask = rng.random((n, p.layout.n_actions)) < 0.5
            mask[:, 2 * p.spec.n_layers] = True  # device, drop
            plain = p.session.run(["action"], {"obs": obs, "mask": mask})[0]
            np.testing.assert_array_equal(p.run(obs, mask), plain)


def test_bound_runs_from_several_threads(policy):
    p = OnnxPolicy.from_file(policy)
    rng = np.random.default_rng(4)
    cases = []
    for _ in range(64):
        obs = rng.random((1, p.spec.obs_dim), dtype=np.float32)
        mask = rng.random((1, p.layout.n_actions)) < 0.5
        mask[0, 2 * p.spec.n_layers] = True
        cases.append((obs, mask, p.session.run(["action"], {"obs": obs, "mask": mask})[0]))
    errors: list[str] = []

    def work() -> None:
        for _ in range(20):
            for obs, mask, expected in cases:
                got = p.run(obs, mask)
                if not np.array_equal(got, expected):
                    errors.append(f"{got} != {expected}")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("n", [1, 5, 40])
def test_decide_many_matches_decide(policy, n):
    rt = DecisionRuntime("default", str(policy))
    states = [DecisionRequest.model_validate(s).to_state() for s in varied_states(n, seed=n)]
    assert rt.decide_many(states) == [rt.decide(s) for s in states]


@pytest.mark.parametrize("with_policy", [True, False])
def test_decide_many_reads_request_bodies_directly(policy, with_policy):
    rt = DecisionRuntime("default", str(policy) if with_policy else None)
    reqs = [DecisionRequest.model_validate(s) for s in varied_states(40, seed=5)]
    for n in (3, 40):
        assert rt.decide_many(reqs[:n]) == rt.decide_many([r.to_state() for r in reqs[:n]])


def test_decide_many_with_a_policy_that_answers_the_wrong_shape(policy):
    rt = DecisionRuntime("default", str(policy))
    assert rt.live is not None
    rt.live.run = lambda obs, mask: np.zeros(len(obs) + 1, dtype=np.int64)  # type: ignore[method-assign]
    states = [DecisionRequest.model_validate(s).to_state() for s in varied_states(3)]
    assert all(d.fallback for d in rt.decide_many(states))


def test_decision_body_is_its_json(policy):
    rt = DecisionRuntime("default", str(policy))
    d = rt.decide(DecisionRequest.model_validate(EXAMPLE_STATE).to_state())
    assert json.loads(d.body) == d.as_dict()


def test_batcher_gives_the_single_decisions_and_batches(policy):
    rt = DecisionRuntime("default", str(policy))
    states = [DecisionRequest.model_validate(s).to_state() for s in varied_states(50, seed=7)]
    sizes: list[int] = []
    batcher = DecisionBatcher(rt, max_batch=16, on_batch=sizes.append)

    async def main() -> list:
        return await asyncio.gather(*(batcher.decide(s) for s in states))

    got = asyncio.run(main())
    assert got == [rt.decide(s) for s in states]
    assert batcher.decisions == 50 and batcher.batches == 4
    assert sizes == [16, 16, 16, 2]  # what the batch-size histogram sees


def test_batcher_keeps_one_failure_to_its_request(policy):
    rt = DecisionRuntime("default", str(policy))
    good = DecisionRequest.model_validate(EXAMPLE_STATE).to_state()
    bad = dataclasses.replace(good, device_memory_layers=float("nan"))  # int(nan) raises
    sizes: list[int] = []
    batcher = DecisionBatcher(rt, on_batch=sizes.append)

    async def main() -> list:
        return await asyncio.gather(
            *(batcher.decide(s) for s in [good, bad, good]), return_exceptions=True
        )

    a, b, c = asyncio.run(main())
    assert a == c == rt.decide(good)
    assert isinstance(b, ValueError)
    assert sizes == [3]  # one batch of three, decided again one by one: still one batch


def test_batcher_parses_in_the_flush_and_keeps_parse_errors_to_their_request(policy):
    rt = DecisionRuntime("default", str(policy))

    def parse(body: object) -> DecisionRequest:
        if body == "not json":
            raise ValueError("cannot parse")
        return DecisionRequest.model_validate(body)

    batcher = DecisionBatcher(rt, parse=parse)

    async def main() -> list:
        bodies = [EXAMPLE_STATE, "not json", EXAMPLE_STATE]
        return await asyncio.gather(*(batcher.decide(b) for b in bodies), return_exceptions=True)

    a, b, c = asyncio.run(main())
    assert a == c == rt.decide(DecisionRequest.model_validate(EXAMPLE_STATE))
    assert isinstance(b, ValueError)
    assert batcher.batches == 1 and batcher.decisions == 2


def test_batcher_waits_a_second_turn_for_requests_read_in_between(policy):
    rt = DecisionRuntime("default", str(policy))
    state = DecisionRequest.model_validate(EXAMPLE_STATE).to_state()
    batcher = DecisionBatcher(rt)

    async def main() -> list[Decision]:
        first = asyncio.ensure_future(batcher.decide(state))
        await asyncio.sleep(0)  # `first` parks; a request arriving now still joins its batch
        second = asyncio.ensure_future(batcher.decide(state))
        return list(await asyncio.gather(first, second))

    assert asyncio.run(main()) == [rt.decide(state)] * 2
    assert batcher.batches == 1 and batcher.decisions == 2


def test_batcher_skips_cancelled_requests(policy):
    rt = DecisionRuntime("default", str(policy))
    state = DecisionRequest.model_validate(EXAMPLE_STATE).to_state()
    batcher = DecisionBatcher(rt)

    async def main() -> Decision:
        waiting = asyncio.ensure_future(batcher.decide(state))
        other = asyncio.ensure_future(batcher.decide(state))
        await asyncio.sleep(0)  # both parked
        waiting.cancel()
        return await other

    assert asyncio.run(main()) == rt.decide(state)
    assert batcher.decisions == 1


@pytest.mark.parametrize("micro_batching", [True, False])
def test_concurrent_requests_get_the_answers_of_sequential_ones(policy, micro_batching):
    app = create_app(str(policy), None, watch_interval_s=None, micro_batching=micro_batching)
    bodies = varied_states(40, seed=11)
    rt = app.state.runtime
    expected = [
        json.loads(rt.decide(DecisionRequest.model_validate(b).to_state()).body) for b in bodies
    ]

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return await asyncio.gather(*(client.post("/v1/decide", json=b) for b in bodies))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * len(bodies)
    assert [r.json() for r in responses] == expected
    if micro_batching:
        assert app.state.batcher.batches < len(bodies)  # several shared a run
    text = app.state.metrics.render()[0].decode()
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("offload_rl_decisions_total{")
    ]
    assert sum(counted) == len(bodies)  # every decision counted once, batched or not
    # the batch-size histogram: one observation per micro-batch, its decisions in the sum
    histogram = {
        line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("offload_rl_micro_batch_size_")
    }
    batches = app.state.batcher.batches if micro_batching else 0
    assert histogram["offload_rl_micro_batch_size_count"] == batches
    assert histogram["offload_rl_micro_batch_size_sum"] == (len(bodies) if micro_batching else 0)
    assert histogram['offload_rl_micro_batch_size_bucket{le="+Inf"}'] == batches


def test_the_benchmark_mounts_its_no_op_and_reads_the_batch_sizes(policy, monkeypatch):
    """``experiments/benchmarks/bench_serving.py``: the no-op route lives on the benchmark's app
    only, and the batch sizes it prints are the histogram the service keeps."""
    spec = importlib.util.spec_from_file_location(
        "bench_serving", REPO / "experiments" / "benchmarks" / "bench_serving.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv("OFFLOAD_RL_POLICY", str(policy))
    monkeypatch.setenv("OFFLOAD_RL_WATCH_INTERVAL", "0")
    monkeypatch.setenv("OFFLOAD_RL_GC_FREEZE", "0")  # the switch; this process keeps its GC
    app = bench.bench_app()
    production = create_app(str(policy), None, watch_interval_s=None)

    async def main() -> tuple[list[httpx.Response], httpx.Response, str]:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=production), base_url="http://p"
            ) as p,
        ):
            decided = await asyncio.gather(
                *(c.post("/v1/decide", json=b) for b in varied_states(24, seed=3))
            )
            noop = await c.post(bench.NOOP_PATH, json=EXAMPLE_STATE)
            assert (await p.post(bench.NOOP_PATH, json=EXAMPLE_STATE)).status_code == 404
            return decided, noop, (await c.get("/metrics")).text

    decided, noop, metrics = asyncio.run(main())
    assert [r.status_code for r in decided] == [200] * 24
    assert noop.status_code == 200 and noop.json() == {"ok": True}
    batches = app.state.batcher.batches
    assert 1 <= batches < 24  # the concurrent requests shared runs
    got = bench.micro_batches(metrics)
    assert got["batches"] == batches and got["mean"] == pytest.approx(24 / batches)
    assert 0.0 <= got["le1"] <= got["le4"] <= got["le8"] <= 1.0
