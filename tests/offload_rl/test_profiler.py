"""Measurement: fitting, the missing-extra error, a tiny real gpt2 measurement, and the CLI."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.errors import ConfigError, OffloadRLError
from offload_rl.model_shapes import decoder_params, get_arch
from offload_rl.profiler import (
    fit_decode,
    fit_prefill,
    max_relative_error,
    nnls,
    require_torch,
    time_call,
)
from offload_rl.profiles import Profile, shipped_profiles
from tests.offload_rl.profile_cli import needs_torch, run_cli

# --- fitting ---------------------------------------------------------------------------------


def test_nnls_matches_unconstrained_solution_when_positive():
    rng = np.random.default_rng(0)
    A = rng.uniform(0.1, 1.0, size=(20, 3))
    x_true = np.array([0.5, 2.0, 1.0])
    assert np.allclose(nnls(A, A @ x_true), x_true)


def test_nnls_clips_to_zero_and_refits():
    A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([2.0, -1.0, 1.0])
    x = nnls(A, b)
    assert x[1] == 0.0
    assert x[0] == pytest.approx(1.5)  # least squares of [1, 1] against [2, 1]


@settings(max_examples=50, deadline=None)
@given(
    c0=st.floats(1e-5, 1e-2),
    c1=st.floats(1e-7, 1e-3),
    c2=st.floats(0, 1e-6),
)
def test_fit_prefill_recovers_exact_polynomials(c0, c1, c2):
    points = [(t, c0 + c1 * t + c2 * t * t) for t in (16, 64, 256, 1024)]
    fit = fit_prefill(points)
    assert max_relative_error(fit, points) < 1e-6
    assert min(fit.c0, fit.c1, fit.c2) >= 0


def test_fit_never_goes_negative_on_decreasing_data():
    # noisy data that an unconstrained fit would give a negative slope
    fit = fit_decode([(16, 5e-3), (128, 4.9e-3), (512, 4.8e-3)])
    assert fit.c1 == 0.0
    assert fit.c0 == pytest.approx(4.9e-3, rel=0.02)
    prefill = fit_prefill([(8, 2e-3), (32, 1e-3)])
    assert min(prefill.c0, prefill.c1, prefill.c2) >= 0


def test_time_call_repeats_cheap_calls_and_runs_after(monkeypatch: pytest.MonkeyPatch):
    """On a fake clock: the median of the timed runs only (not warm-up, not ``after``)."""
    import offload_rl.profiler.timing as timing

    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    calls = {"fn": 0, "after": 0}
    costs = iter([100.0, 100.0, 2.0, 1.0, 6.0])  # two warm-up runs, then three timed ones

    def fn() -> None:
        calls["fn"] += 1
        clock[0] += next(costs)

    def after() -> None:
        calls["after"] += 1
        clock[0] += 1000.0  # outside the timed region

    seconds = time_call(fn, warmup=2, repeats=3, after=after, min_total_s=0.0)
    assert seconds == 2.0  # the median (the mean is 3)
    assert calls == {"fn": 5, "after": 5}
    # cheap calls repeat until min_total_s of timed work: ten runs of 1 s for 10 s
    calls["fn"] = 0
    costs = iter([1.0] * 50)
    assert time_call(fn, warmup=0, repeats=3, min_total_s=10.0) == 1.0
    assert calls["fn"] == 10


# --- the missing extra -----------------------------------------------------------------------


def test_missing_torch_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(OffloadRLError, match="install the 'profile' extra"):
        require_torch()


# --- a real (tiny) measurement ---------------------------------------------------------------


@needs_torch
def test_layer_parameter_counts_match_transformers():
    torch, transformers = require_torch()
    from offload_rl.profiler import hf_config

    classes = {
        "gpt2": "transformers.models.gpt2.modeling_gpt2.GPT2Block",
        "qwen2.5-0.5b": "transformers.models.qwen2.modeling_qwen2.Qwen2DecoderLayer",
        "llama-3.2-1b": "transformers.models.llama.modeling_llama.LlamaDecoderLayer",
    }
    for model, path in classes.items():
        module_name, class_name = path.rsplit(".", 1)
        layer_class = getattr(importlib.import_module(module_name), class_name)
        arch = get_arch(model)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            layer = layer_class(hf_config(arch, transformers), layer_idx=0)
        assert sum(p.numel() for p in layer.parameters()) == decoder_params(arch), model


@needs_torch
def test_tiny_gpt2_measurement():
    from offload_rl.profiler import LoadReport, measure_profile

    steps = []
    report = LoadReport(threshold=0.3)
    # 8 vs 512 tokens (~60x the FLOPs) and a median of 3: robust to another process stalling
    # a run now and then, while the whole measurement stays a few seconds.
    profile = measure_profile(
        "gpt2",
        threads=2,
        lengths=(8, 512),
        contexts=(8, 64),
        repeats=3,
        warmup=1,
        measure_peaks=False,
        retries=0,
        min_point_s=0.0,
        load_report=report,
        on_progress=lambda d, i, n: steps.append((d, i, n)),
    )
    assert profile.n_layers == 12 and len(profile.layers) == 12
    assert profile.provenance.kind == "measured"
    assert profile.provenance.threads == 2
    assert profile.provenance.library_versions["transformers"]
    assert "reused for all 12 identical layers" in profile.provenance.method
    assert profile.hardware == "cpu-2core"
    layer = profile.layers[0]
    assert layer.weight_bytes == decoder_params(get_arch("gpt2")) * 4
    assert layer.kv_bytes_per_token == 2 * 12 * 64 * 4
    assert 0 < layer.prefill_s(8) < layer.prefill_s(512)
    assert profile.prefill_s(0, 12, 512) == pytest.approx(12 * layer.prefill_s(512))
    assert layer.decode_s(8) > 0
    assert layer.samples is not None and [x for x, _ in layer.samples["prefill"]] == [8, 512]
    assert profile.head.prefill_s(8) > 0 and profile.embedding.prefill_s(8) > 0
    assert steps[-1][1] == steps[-1][2]  # progress reached its total
    assert len(report.loads) == 12  # 3 kinds x (2 lengths + 2 contexts)
    Profile.from_json(profile.to_json(), "memory")  # valid after a JSON round trip


@needs_torch
def test_measurement_rejects_bad_lengths():
    from offload_rl.profiler import measure_profile

    with pytest.raises(ConfigError, match=r"outside 1\.\.1024"):
        measure_profile("gpt2", lengths=(2048,), measure_peaks=False)
    with pytest.raises(ConfigError, match="unknown dtype"):
        measure_profile("gpt2", dtype="float8", measure_peaks=False)


# --- CLI -------------------------------------------------------------------------------------


def test_cli_list():
    result = run_cli("--list")
    assert result.returncode == 0, result.stderr
    for word in ("gpt2", "qwen2.5-0.5b", "llama-3.2-1b", "sd8gen3-phone", "h100"):
        assert word in result.stdout
    for name in shipped_profiles():
        assert name in result.stdout


def test_cli_unknown_model_is_one_line_error(tmp_path):
    result = run_cli("--model", "gpt5", "--out", str(tmp_path / "p.json"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'gpt5'" in lines[0]


def test_cli_bad_lengths_is_one_line_error(tmp_path):
    result = run_cli("--model", "gpt2", "--out", str(tmp_path / "p.json"), "--lengths", "8,x")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--lengths" in result.stderr


def test_cli_analytical_profile_and_show(tmp_path):
    out = tmp_path / "gpt2-l4.json"
    result = run_cli("--model", "gpt2", "--hardware", "l4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    profile = Profile.load(out)
    assert profile.provenance.kind == "analytical" and profile.hardware == "l4"
    assert json.loads(out.read_text())["schema_version"] == 1
    shown = run_cli("show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "whole model" in shown.stdout
    missing = run_cli("show", "gpt2@toaster")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


# --- the driver's parts: re-timing under contention, assembly, the calls, the point order ----


class _ScriptedLoad:
    """Stands in for BackgroundLoad: each attempt 'sees' the next load of a script."""

    def __init__(self, loads: list[float]) -> None:
        self._loads = iter(loads)

    def restart(self) -> None:
        pass

    def cpus_used_by_others(self) -> float:
        return next(self._loads)


def _scripted_timer(monkeypatch, loads, seconds, *, retries=3, budget_s=60.0):
    from offload_rl.profiler import LoadReport, timing

    times = iter(seconds)
    monkeypatch.setattr(timing, "time_call", lambda fn, **kw: next(times))
    monkeypatch.setattr(timing, "wait_for_quiet", lambda **kw: 0.0)
    report = LoadReport(threshold=0.1)
    timer = timing.RetryingTimer(
        warmup=0,
        repeats=1,
        min_point_s=0.0,
        retries=retries,
        retry_wait_s=0.0,
        retry_budget_s=budget_s,
        threshold=0.1,
        report=report,
        monitor=_ScriptedLoad(loads),  # type: ignore[arg-type]
    )
    return timer, report


def test_retrying_timer_keeps_the_quiet_attempt_even_if_slower(monkeypatch):
    timer, report = _scripted_timer(monkeypatch, [0.5, 0.05, 0.0], [1.0, 2.0, 9.0])
    assert timer.time(lambda: None) == 2.0
    assert report.loads == [0.05] and report.retried == 1 and report.contended == 0


def test_retrying_timer_keeps_the_fastest_when_never_quiet(monkeypatch):
    timer, report = _scripted_timer(monkeypatch, [0.5, 0.4, 0.6], [3.0, 1.0, 2.0], retries=2)
    assert timer.time(lambda: None) == 1.0
    assert report.loads == [0.4] and report.retried == 2 and report.contended == 1


def test_retrying_timer_stops_retrying_when_the_budget_is_spent(monkeypatch):
    timer, report = _scripted_timer(monkeypatch, [0.5, 0.0], [3.0, 1.0], budget_s=0.0)
    assert timer.time(lambda: None) == 3.0
    assert report.loads == [0.5] and report.retried == 0


def _exact_timed(arch):
    """Points on known polynomials, as the driver records them (kind -> phase -> [(x, s)])."""
    prefill = {"embedding": (1e-5, 1e-7, 0.0), "decoder": (1e-4, 2e-6, 1e-9), "head": (2e-4, 0, 0)}
    decode = {"embedding": (1e-5, 0.0), "decoder": (1e-3, 1e-6), "head": (2e-4, 0.0)}
    return {
        kind: {
            "prefill": [(float(t), a + b * t + c * t * t) for t in (8, 64, 512)],
            "decode": [(float(x), decode[kind][0] + decode[kind][1] * x) for x in (8, 64)],
        }
        for kind, (a, b, c) in prefill.items()
    }


def test_assemble_profile_fits_and_reports_peaks():
    from offload_rl.model_shapes import decoder_prefill_flops
    from offload_rl.profiler import HostPeaks, LoadReport
    from offload_rl.profiler.assemble import assemble_profile
    from offload_rl.profiles import kv_bytes_per_token

    arch = get_arch("gpt2")
    timed = _exact_timed(arch)
    peaks = HostPeaks(flops=1e11, mem_bw_bytes_s=2e10, method="scripted")
    load = LoadReport(threshold=0.1, loads=[0.0, 0.2], retried=3)
    profile = assemble_profile(
        arch,
        "GPT2Block",
        timed,
        threads=2,
        dtype="float32",
        dtype_bytes=4,
        repeats=5,
        warmup=3,
        min_point_s=0.3,
        hardware="box",
        peaks=peaks,
        versions={"transformers": "9.9"},
        load=load,
    )
    p = profile.provenance
    assert profile.hardware == "box" and p.hardware == "box" and len(profile.layers) == 12
    assert [layer.name for layer in profile.layers[:2]] == ["decoder.0", "decoder.1"]
    assert profile.layers[3].prefill_s(512) == pytest.approx(timed["decoder"]["prefill"][2][1])
    assert profile.embedding.decode_s(64) == pytest.approx(timed["embedding"]["decode"][1][1])
    assert profile.head.samples == timed["head"]
    assert "T=[8, 64, 512]" in p.method and "ctx=[8, 64]" in p.method
    assert "transformers 9.9" in p.method and "off by 0% prefill, 0% decode" in p.method
    assert "; other processes used 0.10 CPUs on average (max 0.20)" in p.description
    assert "3 re-measurements" in p.description and "1 of 2 points" in p.description
    assert p.peak_flops == 1e11 and p.mem_bw_bytes_s == 2e10
    assert "(scripted)" in p.calibration and "T=512" in p.calibration
    assert p.eff_prefill == pytest.approx(
        decoder_prefill_flops(arch, 512) / 1e11 / timed["decoder"]["prefill"][2][1]
    )
    weights = decoder_params(arch) * 4
    kv = kv_bytes_per_token(arch.shape, 4)
    per_ctx = [(weights + kv * (x + 1)) / 2e10 / t for x, t in timed["decoder"]["decode"]]
    assert p.eff_decode == pytest.approx(float(np.median(per_ctx)))


@needs_torch
def test_layer_calls_shapes_and_decode_cache_trimmed_back():
    torch, _ = require_torch()
    from offload_rl.profiler import build_parts
    from offload_rl.profiler.layer_calls import LayerCalls

    arch = get_arch("gpt2")
    with torch.inference_mode():
        calls = LayerCalls(torch, build_parts(arch), arch, "float32")
        for kind, phase, tokens in (
            ("embedding", "prefill", 6),
            ("embedding", "decode", 1),
            ("decoder", "prefill", 6),
            ("decoder", "decode", 1),
            ("head", "prefill", 1),
            ("head", "decode", 1),
        ):
            fn, _ = calls.point(kind, phase, 6)
            width = arch.shape.vocab_size if kind == "head" else arch.shape.d_model
            assert tuple(fn().shape) == (1, tokens, width), (kind, phase)
        fn, after = calls.point("decoder", "decode", 6)
        assert after is not None
        first = fn()
        after()
        # with the cache trimmed back, the second run attends to the same 6 + 1 positions
        assert torch.equal(fn(), first)


@needs_torch
def test_measure_profile_records_each_point_under_its_kind_and_measures_peaks(monkeypatch):
    from offload_rl.profiler import HostPeaks, measure_profile, timing
    from offload_rl.profiler import measure as driver

    calls: list[str] = []

    def scripted_time_call(fn, **kw):  # runs the call once; the n-th point took n ms
        fn()
        if kw.get("after") is not None:
            kw["after"]()
        calls.append("t")
        return 1e-3 * len(calls)

    peak_calls = []

    def scripted_peaks(threads, dtype, **kw):
        peak_calls.append((threads, dtype, kw))
        return HostPeaks(flops=1e11, mem_bw_bytes_s=2e10, method="scripted")

    monkeypatch.setattr(timing, "time_call", scripted_time_call)
    monkeypatch.setattr(driver, "measure_host_peaks", scripted_peaks)
    steps = []
    profile = measure_profile(
        "gpt2",
        lengths=(8, 4, 8),
        contexts=(4,),
        repeats=1,
        warmup=0,
        retries=2,
        retry_budget_s=0.0,  # spent from the start: no re-timing, and none for the peaks
        on_progress=lambda d, i, n: steps.append((d, i, n)),
    )
    ms = [
        (x, round(t * 1e3))
        for layer in (profile.embedding, profile.layers[0], profile.head)
        for phase in ("prefill", "decode")
        for x, t in (layer.samples or {})[phase]
    ]
    assert ms == [(4, 1), (8, 2), (4, 3), (4, 4), (8, 5), (4, 6), (4, 7), (8, 8), (4, 9)]
    assert peak_calls == [(2, "float32", {"retries": 0})]
    assert profile.provenance.peak_flops == 1e11
    total = 1 + 9 + 1  # building, 3 kinds x (2 lengths + 1 context), host peaks
    assert [(i, n) for _, i, n in steps] == [(i, total) for i in range(total)] + [(total, total)]
    assert steps[-2][0].startswith("host peaks") and steps[0][0] == "gpt2: building layers"
    assert (
        steps[1][0] == "gpt2: embedding prefill T=4"
        and steps[3][0] == "gpt2: embedding decode ctx=4"
    )
    given = HostPeaks(flops=5e10, mem_bw_bytes_s=1e10, method="given")
    again = measure_profile(
        "gpt2", lengths=(4,), contexts=(4,), repeats=1, warmup=0, retries=0, peaks=given
    )
    assert len(peak_calls) == 1 and again.provenance.peak_flops == 5e10
    off = measure_profile(
        "gpt2",
        lengths=(4,),
        contexts=(4,),
        repeats=1,
        warmup=0,
        retries=0,
        peaks=given,
        measure_peaks=False,
    )
    assert off.provenance.peak_flops is None and off.provenance.calibration is None
    measure_profile("gpt2", lengths=(4,), contexts=(4,), repeats=1, warmup=0, retries=1)
    assert peak_calls[-1] == (2, "float32", {"retries": 1})  # budget left: the peaks may retry
