"""``offload-rl validate``: the report's contract, the replayed requests, the error figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offload_rl.cli import main
from offload_rl.errors import ConfigError
from validation.config import ValidationConfig, default_middle_splits, parse_traces
from validation.cpu_load import CONTENTION_CPUS
from validation.request_stream import ReplayRequest, replay_requests
from validation.rows import Row, split_class
from validation.summary import summarise

CONTRACT = ("median_abs_pct_error_total", "p90_abs_pct_error_total")


def test_validate_command_writes_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "val"
    argv = ["validate", "--out", str(out), "--small", "--quick", "--requests", "6"]
    argv += ["--repeats", "1", "--traces", "constant:20", "--quiet"]
    assert main(argv) == 0
    result = json.loads((out / "validation.json").read_text())
    for key in CONTRACT:
        assert isinstance(result["overall"][key], float)
    classes = result["by_split_class"]
    assert {"local", "full_offload", "split_k1"} <= set(classes)
    for group in classes.values():
        for key in CONTRACT:
            assert key in group
    assert result["overall"]["n"] == 6 == len(result["requests"])
    assert "profiler" in result["other_profiles"]
    assert (out / "validation.md").read_text().startswith("# Simulator vs reference runtime")
    assert (out / "scatter.png").stat().st_size > 0
    # the profiles are cached: a rerun measures nothing (the profiler must not be called, the
    # in-stack re-timing must not rewrite its file) and reports them as reused
    profiles = sorted(out.glob("profile-*.json"))
    assert out / "profile-gpt2-small-t1.json" in profiles
    before = {path: path.read_bytes() for path in profiles}
    assert result["setup"]["profile_reused"] is False

    def no_profiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("the rerun measured the profile again")

    monkeypatch.setattr("offload_rl.profiler.measure_profile", no_profiling)
    assert main(argv) == 0
    again = json.loads((out / "validation.json").read_text())
    assert again["setup"]["profile_reused"] is True
    assert again["setup"]["profiles"] == result["setup"]["profiles"]
    assert {path: path.read_bytes() for path in out.glob("profile-*.json")} == before


def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", "--out", str(tmp_path), "--traces", "constant:x"]) == 2
    assert "constant:x" in capsys.readouterr().err
    assert main(["validate", "--out", str(tmp_path), "--splits", "a,b"]) == 2


def test_parse_traces() -> None:
    specs = parse_traces(["constant:10*0.5", "synthetic:wifi*0.5"], seed=0)
    assert specs[0].uplink.mean_mbps(0, 1) == pytest.approx(5.0)
    assert specs[0].downlink.mean_mbps(0, 1) == pytest.approx(10.0)
    assert specs[1].uplink.family == "wifi"
    with pytest.raises(ConfigError):
        parse_traces(["/no/such/trace"], seed=0)
    with pytest.raises(ConfigError):
        parse_traces(["constant:5*-1"], seed=0)


def test_replayed_requests_keep_the_kv_invariant(tmp_path: Path) -> None:
    cfg = ValidationConfig(out=tmp_path, requests=80, max_new=300, max_out=40)
    reqs = replay_requests(cfg, max_positions=512, seed=3)
    assert len(reqs) == 80
    totals: dict[int, int] = {}
    for r in reqs:
        assert cfg.min_new <= r.new_tokens <= 300 and cfg.min_out <= r.output_tokens <= 40
        assert r.context_tokens + r.new_tokens + r.output_tokens <= 512
        # a turn's context is its session's history, or empty when it had to restart
        assert r.context_tokens in (0, totals.get(r.session, 0))
        totals[r.session] = r.context_tokens + r.new_tokens + r.output_tokens
    assert any(r.context_tokens > 0 for r in reqs)  # follow-up turns are replayed


def test_split_classes() -> None:
    assert split_class(12, 12) == "local" and split_class(0, 12) == "full_offload"
    assert split_class(4, 12) == "split_k4"
    assert default_middle_splits(12) == [4, 8]
    assert default_middle_splits(2) == [1]


def _row(k: int, measured: list[float], predicted: float, loads: list[float]) -> Row:
    req = ReplayRequest(0, 0.0, 0, 0, 10, 0, 4)
    row = Row("t", req, k, True, split_class(k, 4), "forced", 0.0)
    for latency, load in zip(measured, loads, strict=True):
        row.measured.append(
            {
                "ttft_s": latency / 2,
                "latency_s": latency,
                "device_compute_s": latency / 2,
                "edge_compute_s": 0.0,
                "prefill_upload_s": 0.0,
                "upload_payload_bytes": 0,
                "upload_wire_bytes": 0,
                "cached_positions": 0,
                "edge_miss": False,
                "others_cpus": load,
            }
        )
    p = {"ttft_s": predicted / 2, "latency_s": predicted, "device_busy_s": predicted / 2}
    row.predictions = {"stack": {**p, "edge_s": 0.0}, "profiler": {**p, "edge_s": 0.0}}
    return row


def test_summary_uses_quiet_repeats_and_reports_percentiles() -> None:
    busy = CONTENTION_CPUS + 1.0
    rows = [
        _row(4, [1.0, 3.0, 1.2], 1.1, [0.0, busy, 0.0]),  # quiet median 1.1: 0% error
        _row(0, [2.0, 2.0], 1.0, [busy, busy]),  # nothing quiet: all repeats, -50%
        _row(2, [1.0], 1.2, [0.0]),  # +20%
    ]
    result = summarise(rows, {"model": "m"}, "stack")
    overall = result["overall"]
    assert overall["median_abs_pct_error_total"] == pytest.approx(20.0)
    assert overall["p90_abs_pct_error_total"] == pytest.approx(44.0)
    assert overall["contended"] == 1
    assert result["by_split_class"]["full_offload"]["median_pct_error_total"] == pytest.approx(-50)
    assert list(result["by_split_class"]) == ["local", "full_offload", "split_k2"]
    assert result["quiet_only"]["n"] == 2
    assert not result["targets"]["met"]
    assert result["other_profiles"]["profiler"]["overall"]["n"] == 3


def test_an_unreachable_service_falls_back_to_the_local_heuristic(tmp_path: Path) -> None:
    from offload_rl.device_view import SessionMemory
    from offload_rl.scenario_facts import scenario_facts
    from offload_rl.traces import Trace
    from validation.decisions import decider as _decider
    from validation.decisions import device_state
    from validation.decisions import validation_scenario as _validation_scenario

    shipped = Path(__file__).resolve().parents[2] / "offload_rl/data/profiles/gpt2@cpu-2core.json"
    scenario = _validation_scenario(shipped, ["constant:20"], rtt_ms=20.0)
    cfg = ValidationConfig(out=tmp_path, policy="http://127.0.0.1:9", service_timeout_s=0.2)
    decide, text = _decider(cfg, scenario)
    assert "decision service" in text
    req = ReplayRequest(0, 5.0, 0, 0, 100, 0, 20)
    facts = scenario_facts(scenario)
    state = device_state(req, Trace.constant(20.0), 12.0, (None, 0), facts, SessionMemory())
    action, source = decide(state)
    assert source == "fallback" and 0 <= action < 2 * 14
    local, text = _decider(ValidationConfig(out=tmp_path, policy="greedy"), scenario)
    assert local(state)[1].startswith("local:")


def _gpt2_tiers():
    from offload_rl.compiled_profile import CompiledProfile
    from offload_rl.cost_model import Tiers
    from offload_rl.profiles import load_profile

    compiled = CompiledProfile.from_profile(load_profile("gpt2@cpu-2core"))
    return Tiers(compiled, compiled, compiled)


def _link(up, down=None):
    from offload_rl.cost_model import LinkModel

    return LinkModel(
        up, down or up, rtt_edge_s=0.02, rtt_cloud_extra_s=0.0, backhaul_bytes_per_s=1e9
    )


@pytest.mark.parametrize("k", [0, 4, 8])
@pytest.mark.parametrize("cached", [0, 99])
def test_the_per_message_walk_is_request_cost_on_a_constant_link(k: int, cached: int) -> None:
    from offload_rl.traces import Trace
    from validation.prediction import per_message_latency
    from validation.prediction import predict as _predict

    tiers, link = _gpt2_tiers(), _link(Trace.constant(5.0))
    req = ReplayRequest(0, 0.0, 0, 1, 60, 100, 30)
    cost = _predict(k, 12.3, req, cached, tiers, link)
    walked = per_message_latency(k, 12.3, req, cached, tiers, link, downlink=False)
    assert walked is not None
    assert walked == pytest.approx((cost.ttft_s, cost.latency_s), rel=1e-9)
    with_down = per_message_latency(k, 12.3, req, cached, tiers, link, downlink=True)
    assert with_down is not None and with_down[1] >= walked[1]
    assert per_message_latency(12, 12.3, req, cached, tiers, link, downlink=True) is None


def test_an_outage_during_split_decoding_is_missed_by_one_transfer_pricing() -> None:
    from offload_rl.traces import Trace
    from validation.prediction import per_message_latency
    from validation.prediction import predict as _predict

    # 5 Mbps, then a 2 s outage from t = 1.5 s, then 5 Mbps again
    up = Trace.from_steps([5.0] * 15 + [0.0] * 20 + [5.0] * 100, step_s=0.1, name="outage")
    tiers, link = _gpt2_tiers(), _link(up, Trace.constant(50.0))
    req = ReplayRequest(0, 0.0, 0, 0, 16, 0, 64)
    cost = _predict(6, 0.0, req, 0, tiers, link)
    walked = per_message_latency(6, 0.0, req, 0, tiers, link, downlink=False)
    assert walked is not None and cost.ttft_s < 1.5  # decoding spans the outage
    assert walked[1] > cost.latency_s + 1.0
