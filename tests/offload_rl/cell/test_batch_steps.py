"""The measured step cost: tables exact at their counts, prices monotone in context, the server."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.cell.batch_steps import PiecewiseLinear, StepCost, tail_slope
from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from offload_rl.profiles import StepTable

seconds = st.floats(1e-6, 1.0)


@st.composite
def tables(draw: st.DrawFn) -> PiecewiseLinear:
    xs = sorted(draw(st.sets(st.integers(1, 300), min_size=1, max_size=12)))
    ys = draw(st.lists(seconds, min_size=len(xs), max_size=len(xs)))
    return PiecewiseLinear(tuple(xs), tuple(ys), tail_slope(xs, ys))


@st.composite
def costs(draw: st.DrawFn) -> StepCost:
    return StepCost(
        n_layers=draw(st.integers(1, 24)),
        layer=draw(tables()),
        head=draw(tables()),
        kv_s_per_token=draw(st.floats(0, 1e-5)),
        attn_s_unit=draw(st.floats(0, 1e-8)),
        embed_fixed_s=draw(st.floats(0, 1e-3)),
        embed_s_per_token=draw(st.floats(0, 1e-6)),
    )


@settings(max_examples=80, deadline=None)
@given(tables())
def test_table_is_exact_at_its_counts_and_linear_between(table):
    for x, y in zip(table.x, table.seconds, strict=True):
        assert table.at(x) == y
    for (x0, y0), (x1, y1) in zip(
        zip(table.x, table.seconds, strict=True),
        zip(table.x[1:], table.seconds[1:], strict=True),
        strict=False,
    ):
        mid = (x0 + x1) / 2
        assert table.at(mid) == pytest.approx((y0 + y1) / 2)
    last_x, last_y = table.x[-1], table.seconds[-1]
    assert table.at(last_x + 10) == pytest.approx(last_y + 10 * table.tail_s_per_x)
    assert table.at(0) == 0.0
    assert table.at(table.x[0] / 2) == table.seconds[0]


def test_tail_slope_is_the_last_segments_and_never_negative():
    assert tail_slope([1, 2, 4], [1.0, 3.0, 7.0]) == 2.0
    assert tail_slope([1, 2], [3.0, 1.0]) == 0.0
    assert tail_slope([5], [1.0]) == 0.0


@settings(max_examples=80, deadline=None)
@given(
    costs(),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 300), st.integers(0, 3000), st.booleans()),
        min_size=1,
        max_size=10,
    ),
    st.integers(0, 9),
    st.integers(1, 2000),
)
def test_price_is_monotone_in_every_context(cost, batch, i, more):
    i %= len(batch)
    k, n, c, smp = batch[i]
    longer = [*batch[:i], (k, n, c + more, smp), *batch[i + 1 :]]
    assert cost.iteration_s(longer) >= cost.iteration_s(batch)


@settings(max_examples=80, deadline=None)
@given(costs(), st.integers(1, 300), st.lists(st.integers(0, 3000), min_size=1, max_size=8))
def test_decode_rows_cost_the_table_at_their_count(cost, _, contexts):
    """Every sequence at split 0: the layers cost L x the table at the packed tokens (what the
    stack was timed at), plus each sequence's context terms, the head at the sampling rows and
    the embedding."""
    batch = [(0, 1, c, True) for c in contexts]
    r = len(contexts)
    L = cost.n_layers
    expected = (
        L * cost.layer.at(r)
        + L * sum(cost.context_s(1, c) for c in contexts)
        + cost.head.at(r)
        + cost.embed_fixed_s
        + cost.embed_s_per_token * r
    )
    assert cost.iteration_s(batch) == pytest.approx(expected)


def test_splits_run_each_layer_over_the_tokens_that_reach_it():
    layer = PiecewiseLinear((1, 2, 3), (1.0, 10.0, 100.0), 0.0)
    cost = StepCost(4, layer, PiecewiseLinear((1,), (0.0,), 0.0), 0.0, 0.0, 0.0, 0.0)
    # one sequence from layer 0, one from layer 2 (hidden states), 2 tokens: layers 0-1 pack 1
    # token, layers 2-3 pack 1 + 2 = 3
    assert cost.iteration_s([(0, 1, 5, False), (2, 2, 0, False)]) == 2 * 1.0 + 2 * 100.0
    # nobody from layer 0: layers 0 and 1 do not run, no embedding
    assert cost.iteration_s([(2, 1, 0, False)]) == 2 * 1.0
    assert cost.iteration_s([]) == 0.0


def test_scaled_scales_every_price():
    cost = StepCost(
        2,
        PiecewiseLinear((1, 4), (1.0, 2.0), 0.5),
        PiecewiseLinear((1, 2), (0.3, 0.4), 0.1),
        1e-3,
        1e-6,
        0.01,
        0.001,
    )
    batch = [(0, 1, 100, True), (0, 7, 30, True), (1, 3, 0, False)]
    assert cost.scaled(2.5).iteration_s(batch) == pytest.approx(2.5 * cost.iteration_s(batch))


def _roofline_with(steps: StepCost | None) -> BatchRoofline:
    return BatchRoofline(
        n_layers=2,
        kv_bytes_per_token_layer=64,
        layer_fixed_s=1e-3,
        kv_s_per_token=1e-7,
        linear_s_per_token=1e-5,
        attn_s_unit=1e-9,
        embed_fixed_s=1e-5,
        embed_s_per_token=1e-7,
        head_fixed_s=1e-3,
        head_s_per_sample=1e-4,
        head_s_per_token=1e-7,
        steps=steps,
    )


def test_the_edge_server_prices_iterations_with_the_measured_steps():
    """One request alone: its prefill, then a decode per output token at a growing context, each
    priced by the step table (decodes of one row cost far more than the roofline says)."""
    steps = StepCost(
        2,
        PiecewiseLinear((1, 2, 8), (0.02, 0.05, 0.06), 1e-4),
        PiecewiseLinear((1, 2), (0.01, 0.02), 0.01),
        1e-6,
        1e-9,
        1e-5,
        1e-7,
    )
    cost = _roofline_with(steps)
    server = EdgeServer(cost, pool_bytes=10**9, max_num_batched_tokens=256)
    assert not server.fast  # the fast path sums sequences: a table prices whole batches
    prompt, outputs = 8, 4
    request = EdgeRequest(1, 1, 0, 0.0, 0, prompt, outputs)
    server.submit(request, 0.0)
    server.advance(100.0)
    expected = steps.iteration_s([(0, prompt, 0, True)])
    expected += sum(steps.iteration_s([(0, 1, prompt + i, True)]) for i in range(outputs - 1))
    assert request.finish_s == pytest.approx(expected)


def test_a_roofline_without_steps_keeps_the_fast_path_and_its_prices():
    cost = _roofline_with(None)
    assert EdgeServer(cost, pool_bytes=10**9).fast
    batch = [(0, 1, 100, True), (0, 16, 0, False)]
    additive = sum(cost.sequence_s(*b) for b in batch) + cost.fixed_s(0, True, True)
    assert cost.iteration_s(batch) == pytest.approx(additive)


def test_step_table_rejects_unsorted_counts():
    with pytest.raises(ValueError, match="strictly increasing"):
        StepTable(x=[1, 3, 2], seconds=[1.0, 2.0, 3.0], tail_s_per_x=0.0)
    with pytest.raises(ValueError, match="entries"):
        StepTable(x=[1, 2], seconds=[1.0], tail_s_per_x=0.0)
