"""The batched profile: plan, fit, measurement of a tiny model, the file and ``for_profile``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell.batch_roofline import BatchRoofline, for_profile
from offload_rl.errors import ConfigError
from offload_rl.model_shapes import ArchSpec
from offload_rl.profiler.batch_calls import batch_plan
from offload_rl.profiler.batch_fitting import COEFFICIENTS, fit_batched, predict_s
from offload_rl.profiles import BatchedCoefficients, BatchedPoint, Profile, load_profile
from offload_rl.roofline import get_hardware
from tests.offload_rl.conftest import measure_tiny
from tests.offload_rl.profile_cli import needs_torch, run_cli, shown_text

# --- the fit ---------------------------------------------------------------------------------


def _synthetic_points(coefficients: BatchedCoefficients) -> list[BatchedPoint]:
    """Every part at the batches a default plan times, priced exactly by ``coefficients``."""
    points = []
    for batch in batch_plan((1, 2, 4, 8), (128, 512, 2048), 256):
        tokens = sum(n for n, _ in batch)
        for part, seqs in (("decoder", batch), ("head", [(tokens, 0)]), ("embedding", batch)):
            point = BatchedPoint(
                part=part, source="batched", sequences=seqs, samples=len(batch), seconds=1.0
            )
            points.append(point.model_copy(update={"seconds": predict_s(coefficients, point)}))
    return points


positive = st.floats(1e-9, 1e-2)


@settings(max_examples=25, deadline=None)
@given(st.lists(positive, min_size=9, max_size=9))
def test_fit_recovers_known_coefficients(values):
    names = [name for part in ("decoder", "head", "embedding") for name in COEFFICIENTS[part]]
    truth = BatchedCoefficients(**dict(zip(names, values, strict=True)))
    fitted, errors = fit_batched(_synthetic_points(truth))
    for name in names:
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=1e-5, abs=1e-15)
    assert all(e.max_abs_pct < 1e-3 for e in errors.values())
    assert set(errors) == {"decoder", "head", "embedding"}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(positive, min_size=9, max_size=9),
    st.lists(st.tuples(st.integers(1, 300), st.integers(0, 3000)), min_size=1, max_size=8),
)
def test_fitted_terms_are_what_the_roofline_prices(values, batch):
    """The fit's terms price a batch as BatchRoofline.iteration_s does (one layer, every
    sequence sampling, token ids): what the points measure is what the cell charges."""
    names = [name for part in ("decoder", "head", "embedding") for name in COEFFICIENTS[part]]
    coefficients = BatchedCoefficients(**dict(zip(names, values, strict=True)))
    cost = BatchRoofline(n_layers=1, kv_bytes_per_token_layer=1, **coefficients.model_dump())
    tokens = sum(n for n, _ in batch)
    parts = [
        BatchedPoint(part=part, source="batched", sequences=seqs, samples=len(batch), seconds=1)
        for part, seqs in (("decoder", batch), ("head", [(tokens, 0)]), ("embedding", batch))
    ]
    expected = cost.iteration_s([(0, n, c, True) for n, c in batch])
    assert sum(predict_s(coefficients, p) for p in parts) == pytest.approx(expected, rel=1e-9)


def test_fit_stays_non_negative_where_least_squares_would_not():
    # Times that fall as the KV grows: unconstrained least squares gives a negative KV term.
    truth = BatchedCoefficients(**{name: 1e-4 for part in COEFFICIENTS.values() for name in part})
    points = _synthetic_points(truth)
    skewed = [
        p.model_copy(update={"seconds": p.seconds / (1 + sum(c for _, c in p.sequences) / 500)})
        for p in points
    ]
    fitted, _ = fit_batched(skewed)
    assert all(v >= 0 for v in fitted.model_dump().values())
    features = np.array([[1.0, sum(c + n for n, c in p.sequences)] for p in skewed[::3]])
    unconstrained = np.linalg.lstsq(features, [p.seconds for p in skewed[::3]], rcond=None)[0]
    assert unconstrained[1] < 0  # the case this test is about


def test_fit_needs_every_part():
    with pytest.raises(ValueError, match="no timed head points"):
        fit_batched(
            [
                BatchedPoint(
                    part="decoder", source="batched", sequences=[(1, 5)], samples=1, seconds=1
                )
            ]
        )


def test_plan_times_decodes_chunks_and_mixed_batches_once_each():
    plan = batch_plan((1, 2, 4), (16, 64), 32)
    assert [(1, 16), (1, 16), (1, 16), (1, 16)] in plan
    assert [(1, 16), (1, 64), (1, 16), (1, 64)] in plan  # mixed contexts
    assert [(32, 0)] in plan and [(32, 64)] in plan  # a chunk on no / some context
    assert [(32, 16), (1, 16), (1, 64), (1, 16)] in plan  # a chunk with decodes
    assert len(plan) == len({json.dumps(b) for b in plan})


@needs_torch
def test_plan_clips_to_the_positions_and_rejects_bad_sizes():
    from offload_rl.model_shapes import get_arch
    from offload_rl.profiler.batch_measure import plan_batches

    plan = plan_batches(get_arch("gpt2"), (1, 2), (128, 4096), 256)
    assert plan.contexts == [128, 1024 - 256]
    assert max(n + c for batch in plan.decoder for n, c in batch) <= 1024
    with pytest.raises(ConfigError, match="batch sizes"):
        plan_batches(get_arch("gpt2"), (0, 2))


# --- the measurement -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_profile(tiny_arch: ArchSpec) -> Profile:
    return measure_tiny(
        tiny_arch,
        batch_sizes=(1, 2, 4),
        batch_contexts=(16, 64),
        batch_chunk=16,
    )


def test_measured_batched_profile_round_trips_and_prices_the_cell(tiny_profile, tmp_path):
    batched = tiny_profile.batched
    assert batched is not None
    parts = {p.part for p in batched.points}
    assert parts == {"decoder", "head", "embedding"}
    assert {p.source for p in batched.points} == {"batched", "single"}
    assert [(1, 16), (1, 64), (1, 16), (1, 64)] in [p.sequences for p in batched.points]
    assert set(batched.fit_error) == parts
    assert "attention per sequence" in batched.method
    path = tmp_path / "tiny.json"
    tiny_profile.save(path)
    loaded = load_profile(path)
    assert loaded == tiny_profile
    cost = for_profile(loaded)  # cpu-1core is no named hardware: only the measured fit prices it
    assert cost == BatchRoofline.from_measured(tiny_profile)
    assert cost.layer_fixed_s == batched.coefficients.layer_fixed_s
    assert cost.n_layers == 2 and cost.kv_bytes_per_token_layer == 2 * 2 * 16 * 4
    one = [(1, 16)]
    point = BatchedPoint(part="decoder", source="batched", sequences=one, samples=1, seconds=1)
    per_layer = predict_s(batched.coefficients, point)
    # split 1 of 2 layers: one decoder layer, and the final norm over the one token
    assert cost.iteration_s([(1, 1, 16, False)]) == pytest.approx(
        per_layer + batched.coefficients.head_s_per_token
    )


def test_packed_batch_computes_what_each_sequence_alone_computes(tiny_arch):
    """The timed call is the real computation: a packed batch of a decode, a chunk on a
    context and a fresh chunk gives each sequence what transformers gives it alone."""
    import torch
    from transformers.cache_utils import DynamicCache

    from offload_rl.profiler.batch_calls import BatchCalls, packed_attention_in
    from offload_rl.profiler.layers import build_parts

    arch = tiny_arch
    parts = build_parts(arch)
    calls = BatchCalls(torch, parts, arch, "float32", torch.Generator().manual_seed(1))
    batch = [(1, 7), (5, 9), (4, 0)]
    inputs = calls.decoder_inputs(batch)
    with torch.inference_mode(), packed_attention_in(parts.decoder):
        packed = parts.decoder(inputs.hidden, packed_kv=inputs.packed, **inputs.kwargs)
    start = 0
    with torch.inference_mode():
        for (n, c), seq in zip(batch, inputs.packed, strict=True):
            x = inputs.hidden[:, start : start + n]
            pos = torch.arange(c, c + n).unsqueeze(0)
            cache = DynamicCache()
            if c:
                cache.update(seq.keys, seq.values, 0)
            mask = None if n == 1 or c == 0 else seq.mask
            if mask is not None:  # query j (position c + j) sees positions 0 .. c + j
                sees = [[t <= c + j for t in range(c + n)] for j in range(n)]
                assert mask[0, 0].tolist() == sees
            alone = parts.decoder(
                x,
                attention_mask=mask,
                cache=cache,
                use_cache=True,
                position_ids=pos,
                position_embeddings=parts.rotary(x, pos),
            )
            torch.testing.assert_close(packed[:, start : start + n], alone, rtol=1e-4, atol=1e-5)
            start += n


def test_profile_show_prints_the_batched_section(tiny_profile, tmp_path):
    text = shown_text(tiny_profile, tmp_path)
    assert "batched (measured)" in text and "layer_fixed_s" in text and "median %" in text
    assert f"{len(tiny_profile.batched.points)} points" in text


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(1, 300), st.integers(0, 3000), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 11),
    st.integers(1, 64),
    st.integers(0, 512),
)
def test_measured_iteration_time_is_monotone_in_batch_tokens(tiny_profile, batch, i, dn, dc):
    cost = for_profile(tiny_profile)
    assert all(v >= 0 for v in tiny_profile.batched.coefficients.model_dump().values())
    i %= len(batch)
    k, n, c, smp = batch[i]
    more_tokens = [*batch[:i], (k, n + dn, c, smp), *batch[i + 1 :]]
    more_context = [*batch[:i], (k, n, c + dc, smp), *batch[i + 1 :]]
    base = cost.iteration_s(batch)
    assert cost.iteration_s(more_tokens) >= base
    assert cost.iteration_s(more_context) >= base
    assert cost.iteration_s([*batch, (k, n, c, smp)]) >= base


# --- older files -----------------------------------------------------------------------------


def test_profile_without_batched_section_is_unchanged():
    profile = load_profile("qwen2.5-0.5b@l4")
    assert profile.batched is None
    assert "batched" not in json.loads(profile.to_json())
    assert for_profile(profile) == BatchRoofline.from_profile(profile, get_hardware("l4"))
    shipped = Path(__file__).parents[2] / "offload_rl/data/profiles/qwen2.5-0.5b@l4.json"
    assert profile.to_json() == shipped.read_text(encoding="utf-8")


def test_cli_bad_batch_sizes_is_one_line_error(tmp_path):
    result = run_cli("--model", "gpt2", "--out", str(tmp_path / "p.json"), "--batch-sizes", "2,0")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--batch-sizes" in result.stderr


def test_cell_with_a_measured_edge_profile_runs_on_its_measured_costs(tmp_path):
    from offload_rl.cell.simulator import edge_batch_cost
    from offload_rl.profiles import BatchedProfile
    from offload_rl.scenario import load_scenario
    from offload_rl.scenario_facts import resolve_scenario

    truth = BatchedCoefficients(**{name: 1e-4 for part in COEFFICIENTS.values() for name in part})
    points = _synthetic_points(truth)
    coefficients, errors = fit_batched(points)
    measured = load_profile("qwen2.5-0.5b@cpu-2core")  # a measured CPU profile, no batches
    batched = BatchedProfile(
        method="synthetic", points=points, coefficients=coefficients, fit_error=errors
    )
    path = tmp_path / "qwen2.5-0.5b@cpu-2core-batched.json"
    measured.model_copy(update={"batched": batched}).save(path)
    sc = load_scenario("cell")
    profiles = sc.profiles.model_copy(
        update={
            "device": "qwen2.5-0.5b@sd8gen3-phone",
            "edge": str(path),
            "cloud": "qwen2.5-0.5b@h100",
        }
    )
    cost = edge_batch_cost(resolve_scenario(sc.model_copy(update={"profiles": profiles})))
    assert cost == BatchRoofline.from_measured(load_profile(path))
    assert cost.layer_fixed_s == pytest.approx(1e-4)
