"""Measurement: fitting, the missing-extra error, a tiny real gpt2 measurement, and the CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
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

HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs the 'profile' extra")

# Runs the real `offload_rl.cli.main` (its error handling, exit codes) with only this command
# registered, so the test does not depend on sibling commands being importable.
CLI = (
    "import sys, offload_rl.cli as c;"
    "c.COMMAND_MODULES = tuple(m for m in c.COMMAND_MODULES if m.rsplit('.', 1)[-1] == 'profile');"
    "sys.exit(c.main(sys.argv[1:]))"
)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "profile", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
    import offload_rl.profiler as profiler

    clock = [0.0]
    monkeypatch.setattr(profiler.time, "perf_counter", lambda: clock[0])
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
