"""In-stack batched steps: the plan, the fit, the timed computation, the file and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell.batch_roofline import for_profile
from offload_rl.cell.batch_steps import PiecewiseLinear, StepCost, tail_slope
from offload_rl.errors import ConfigError
from offload_rl.model_shapes import ArchSpec
from offload_rl.profiler.stack_fitting import fit_steps
from offload_rl.profiles import (
    BatchedCoefficients,
    BatchedFitError,
    BatchedProfile,
    BatchedStepPoint,
    Profile,
    load_profile,
)
from tests.offload_rl.conftest import measure_tiny
from tests.offload_rl.profile_cli import needs_torch, run_cli, shown_text

# --- the plan --------------------------------------------------------------------------------


@needs_torch
def test_plan_times_every_row_count_chunks_and_budget_filling_mixes():
    from offload_rl.model_shapes import get_arch
    from offload_rl.profiler.stack_measure import plan_stack

    plan = plan_stack(get_arch("gpt2"), 8, (64, 256, 4096), 256)
    assert plan.contexts == [64, 256, 1024 - 256]
    for r in range(1, 9):  # every count, 3 and 5-7 included
        for c in plan.contexts:
            assert [(1, c)] * r in plan.layers
    chunks = [b[0][0] for b in plan.layers if len(b) == 1 and b[0][0] > 1]
    assert {16, 32, 64, 128, 256} <= set(chunks)
    assert [(256, 1024 - 256)] in plan.layers
    mixed = [b for b in plan.layers if len(b) > 1 and any(n > 1 for n, _ in b)]
    assert {sum(n == 1 for n, _ in b) for b in mixed} == {1, 2, 4, 7}
    assert all(sum(n for n, _ in b) == 256 for b in mixed)  # the scheduler fills the budget
    assert plan.head == list(range(1, 9))
    assert len(plan.layers) == len({json.dumps(b) for b in plan.layers})
    assert max(n + c for b in plan.layers for n, c in b) <= 1024
    with pytest.raises(ConfigError, match="largest batch size"):
        plan_stack(get_arch("gpt2"), 0, None, 256)
    with pytest.raises(ConfigError, match="contexts"):
        plan_stack(get_arch("gpt2"), 2, (0,), 256)


@dataclass(frozen=True)
class _ScriptedTimer:
    """Returns the scripted seconds in call order instead of timing (``replace`` keeps them)."""

    seconds: Iterator[float]
    warmup: int = 0

    def time(self, fn: Callable[[], object], after: Callable[[], object] | None = None) -> float:
        return next(self.seconds)


class _NoCalls:
    """Calls that do nothing over two stand-in layers: the timer supplies the seconds."""

    def __init__(self) -> None:
        import torch

        self.decoders = [torch.nn.Identity(), torch.nn.Identity()]

    def layers(self, batch: object) -> tuple[Callable[[], object], None]:
        return (lambda: None), None

    def head(self, samples: int) -> tuple[Callable[[], object], None]:
        return (lambda: None), None


@needs_torch
def test_every_point_keeps_the_median_of_its_passes():
    """Three passes over the plan (pass-major); a point keeps the median of its three timings,
    not the first, the fastest or the mean."""
    import torch

    from offload_rl.profiler.stack_measure import STACK_PASSES, StackPlan, measure_stack

    assert STACK_PASSES == 3
    layers = [[(1, 64)], [(1, 64), (1, 64)], [(1, 256)], [(1, 256), (1, 256)], [(16, 0)]]
    plan = StackPlan(layers, [1, 2], 2, [64, 256], 16)
    scale = (1.0, 5.0, 2.0)  # per pass: the median is the third pass's
    base = [0.010, 0.018, 0.012, 0.021, 0.030, 0.004, 0.006]  # the 5 batches, then 2 heads
    timer = _ScriptedTimer(iter([f * b for f in scale for b in base]))
    steps = measure_stack(torch, _NoCalls(), plan, timer, lambda _: None, "scripted")  # type: ignore[arg-type]
    assert [p.seconds for p in steps.points] == pytest.approx([2.0 * b for b in base])
    assert "median of 3 passes" in steps.method


# --- the fit ---------------------------------------------------------------------------------

BATCHES = [
    *([(1, c)] * r for r in range(1, 6) for c in (16, 64, 200)),
    [(16, 0)],
    [(32, 0)],
    [(32, 200)],
    [(1, 16), (31, 0)],
    [(1, 16), (1, 64), (1, 200), (29, 0)],
]


def _synthetic(cost: StepCost) -> list[BatchedStepPoint]:
    """Layers points priced by ``cost``'s layers and context terms, head points by its head."""
    points = []
    L = cost.n_layers
    for batch in BATCHES:
        tokens = sum(n for n, _ in batch)
        seconds = L * (cost.layer.at(tokens) + sum(cost.context_s(n, c) for n, c in batch))
        points.append(
            BatchedStepPoint(part="layers", sequences=batch, samples=len(batch), seconds=seconds)
        )
    for s in range(1, 6):
        points.append(
            BatchedStepPoint(part="head", sequences=[(s, 0)], samples=s, seconds=cost.head.at(s))
        )
    return points


@st.composite
def true_costs(draw: st.DrawFn) -> StepCost:
    counts = sorted({sum(n for n, _ in b) for b in BATCHES})
    layer = draw(st.lists(st.floats(1e-4, 1e-1), min_size=len(counts), max_size=len(counts)))
    head = draw(st.lists(st.floats(1e-4, 1e-1), min_size=5, max_size=5))
    return StepCost(
        n_layers=draw(st.integers(1, 12)),
        layer=PiecewiseLinear(tuple(counts), tuple(layer), tail_slope(counts, layer)),
        head=PiecewiseLinear((1, 2, 3, 4, 5), tuple(head), tail_slope(range(1, 6), head)),
        kv_s_per_token=draw(st.floats(1e-9, 1e-5)),
        attn_s_unit=draw(st.floats(1e-12, 1e-8)),
        embed_fixed_s=0.0,
        embed_s_per_token=0.0,
    )


@settings(max_examples=30, deadline=None)
@given(true_costs())
def test_fit_prices_every_measured_iteration_as_measured(truth):
    """Whatever the row counts cost, however irregular: the fitted table prices each timed
    iteration (layers + head) at its measured time."""
    points = _synthetic(truth)
    steps = fit_steps(points, truth.n_layers, "synthetic")
    fitted = StepCost.from_steps(steps, truth.n_layers, 0.0, 0.0)
    assert steps.fit_error.max_abs_pct < 1e-3
    assert steps.layer.x == sorted({sum(n for n, _ in b) for b in BATCHES})
    head = {p.samples: p.seconds for p in points if p.part == "head"}
    for p in points:
        if p.part != "layers":
            continue
        decodes = sum(n == 1 for n, _ in p.sequences)
        batch = [(0, n, c, n == 1) for n, c in p.sequences]
        measured = p.seconds + head.get(decodes, 0.0)
        assert fitted.iteration_s(batch) == pytest.approx(measured, rel=1e-4)


def test_fit_needs_layers_and_head_points():
    head = BatchedStepPoint(part="head", sequences=[(1, 0)], samples=1, seconds=1e-3)
    with pytest.raises(ValueError, match="layers and head"):
        fit_steps([head], 2, "x")


# --- the file --------------------------------------------------------------------------------


def _batched(steps_points: list[BatchedStepPoint] | None) -> BatchedProfile:
    names = BatchedCoefficients.model_fields
    error = BatchedFitError(median_abs_pct=1, p90_abs_pct=1, max_abs_pct=1, points=1)
    steps = None if steps_points is None else fit_steps(steps_points, 2, "synthetic")
    return BatchedProfile(
        method="synthetic",
        points=[],
        coefficients=BatchedCoefficients(**dict.fromkeys(names, 1e-4)),
        fit_error={"decoder": error},
        steps=steps,
    )


def test_steps_are_written_only_when_measured_and_round_trip():
    profile = load_profile("qwen2.5-0.5b@cpu-2core")
    without = profile.model_copy(update={"batched": _batched(None)})
    assert "steps" not in json.loads(without.to_json())["batched"]
    truth = StepCost(
        2,
        PiecewiseLinear((1, 2, 3, 4, 5, 16, 32), (1e-3,) * 7, 0.0),
        PiecewiseLinear((1, 2, 3, 4, 5), (1e-3,) * 5, 0.0),
        1e-7,
        1e-10,
        0.0,
        0.0,
    )
    with_steps = profile.model_copy(update={"batched": _batched(_synthetic(truth))})
    again = Profile.model_validate_json(with_steps.to_json())
    assert again == with_steps and again.to_json() == with_steps.to_json()
    cost = for_profile(again)
    assert cost.steps is not None and cost.steps.layer.x == (1, 2, 3, 4, 5, 16, 32)
    assert for_profile(without).steps is None


# --- the measurement -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_stack_profile(tiny_arch: ArchSpec) -> Profile:
    return measure_tiny(
        tiny_arch,
        batch_sizes=(1, 2, 3),
        batch_contexts=(16, 64),
        batch_chunk=16,
        in_stack=True,
        stack_contexts=(16, 64),
    )


def test_in_stack_profile_tables_every_row_count(tiny_stack_profile):
    batched = tiny_stack_profile.batched
    assert batched is not None and batched.steps is not None
    steps = batched.steps
    assert {1, 2, 3, 16} <= set(steps.layer.x)
    assert steps.head.x == [1, 2, 3]
    layers = [p.sequences for p in steps.points if p.part == "layers"]
    assert [(1, 64)] * 3 in layers and [(1, 16), (15, 0)] in layers
    assert "in-stack: all 2 distinct decoder layers" in steps.method
    cost = for_profile(tiny_stack_profile)
    assert cost.steps is not None
    assert cost.iteration_s([(0, 1, 64, True)] * 3) > 0


def test_in_stack_needs_batch_sizes(tiny_arch):
    from offload_rl.profiler import measure_profile

    with pytest.raises(ConfigError, match="in-stack steps need batch sizes"):
        measure_profile(tiny_arch, threads=1, lengths=(8,), in_stack=True, measure_peaks=False)


def test_the_stack_computes_what_each_sequence_alone_computes(tiny_arch):
    """The timed call is the real forward: every distinct layer in turn over a packed decode, a
    chunk on a context and a fresh chunk gives each sequence what transformers gives it alone
    through the same layers with its own cache."""
    import torch
    from transformers.cache_utils import DynamicCache

    from offload_rl.profiler.layers import build_parts
    from offload_rl.profiler.stack_calls import (
        StackCalls,
        build_stack,
        kv_capacity,
        stack_attention_in,
    )

    parts = build_parts(tiny_arch)
    decoders = build_stack(tiny_arch, "float32", parts.decoder)
    assert len(decoders) == 2 and decoders[0] is parts.decoder
    assert not torch.equal(decoders[0].mlp.up_proj.weight, decoders[1].mlp.up_proj.weight)
    calls = StackCalls(torch, parts, decoders, tiny_arch, "float32", torch.Generator())
    batch = [(1, 7), (5, 9), (4, 0)]
    inputs = calls.inputs(batch)
    with torch.inference_mode(), stack_attention_in(decoders):
        packed = calls.forward(inputs)
    start = 0
    with torch.inference_mode():
        for i, (n, c) in enumerate(batch):
            h = inputs.hidden[:, start : start + n]
            pos = torch.arange(c, c + n).unsqueeze(0)
            cache = DynamicCache()
            for layer in range(len(decoders)):
                seq = inputs.caches[layer][i]
                if c:
                    cache.update(seq.keys[:, :, :c], seq.values[:, :, :c], layer)
                assert seq.keys.shape[2] == kv_capacity(c + n) >= c + n
            for layer, decoder in enumerate(decoders):
                mask = None if n == 1 or c == 0 else inputs.caches[layer][i].mask
                h = decoder(
                    h,
                    attention_mask=mask,
                    cache=cache,
                    use_cache=True,
                    position_ids=pos,
                    position_embeddings=parts.rotary(h, pos),
                )
            torch.testing.assert_close(
                packed[:, start : start + n], parts.final_norm(h), rtol=1e-4, atol=1e-5
            )
            start += n


def test_profile_show_prints_the_step_table(tiny_stack_profile, tmp_path):
    text = shown_text(tiny_stack_profile, tmp_path)
    assert "in-stack steps" in text and "per KV token" in text


def test_kv_capacity_doubles_until_it_fits():
    from offload_rl.profiler.stack_calls import kv_capacity

    assert [kv_capacity(t) for t in (1, 64, 65, 401, 1024)] == [64, 64, 128, 512, 1024]


def test_cli_in_stack_without_batch_sizes_is_one_line_error(tmp_path):
    result = run_cli(
        "--model", "gpt2", "--out", str(tmp_path / "p.json"), "--batch-sizes", "none", "--in-stack"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--in-stack needs --batch-sizes" in result.stderr
