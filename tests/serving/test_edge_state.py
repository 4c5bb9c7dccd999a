"""The edge state: Prometheus text parsing, vLLM's names, the mapping table, staleness."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offload_rl.features import CELL_STATE_FIELDS
from offload_rl.scenario import load_scenario
from serving.edge_state.mapping import (
    EDGE_FIELD_SOURCES,
    EdgeDefaults,
    EdgeView,
    MissingMetricsError,
    RuntimeReport,
    SessionEntry,
    entry_fields,
    mapping_table,
    report_from_vllm,
)
from serving.edge_state.prometheus_text import ExpositionError, parse_exposition
from serving.edge_state.stand_in import MODEL, vllm_metrics_text
from serving.edge_state.store import EdgeStateStore

DEFAULTS = EdgeDefaults.of(load_scenario("cell"))


def test_parser_reads_vllm_text_labels_comments_and_series():
    samples = parse_exposition(vllm_metrics_text(running=4, waiting=2, engines=2))
    running = [s for s in samples if s.name == "vllm:num_requests_running"]
    assert [s.labels for s in running] == [
        {"engine": "0", "model_name": MODEL},
        {"engine": "1", "model_name": MODEL},
    ]
    assert [s.value for s in running] == [4.0, 4.0]
    inf = [s for s in samples if s.labels.get("le") == "+Inf"]
    assert len(inf) == 2 and inf[0].name == "vllm:request_prompt_tokens_bucket"
    info = next(s for s in samples if s.name == "vllm:cache_config_info")
    assert info.labels["num_gpu_blocks"] == "7722" and info.labels["block_size"] == "16"
    assert not any(s.name.startswith("#") for s in samples)


def test_parser_escapes_special_values_and_timestamps():
    text = (
        '# a free comment\nm{a="x\\"y",b="back\\\\slash",c="new\\nline"} NaN 1700000000000\n'
        "n +Inf\no{} -Inf\np 1e-3\n"
    )
    m, n, o, p = parse_exposition(text)
    assert m.labels == {"a": 'x"y', "b": "back\\slash", "c": "new\nline"} and math.isnan(m.value)
    assert n.value == math.inf and o.value == -math.inf and o.labels == {} and p.value == 0.001


@pytest.mark.parametrize(
    "line", ['m{a="1" 2', "m{a=1} 2", "m abc", "m 1 2 3", 'm{="x"} 1', 'm{a="x} 1']
)
def test_parser_names_the_bad_line(line):
    with pytest.raises(ExpositionError, match="line 2"):
        parse_exposition(f"ok 1\n{line}\n")


label_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), label_text),
       st.floats(allow_nan=False))  # fmt: skip
def test_parser_round_trips_any_label_value(labels, value):
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    body = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
    (s,) = parse_exposition(f"metric{{{body}}} {value!r}\n")
    assert s.labels == labels and s.value == value


@pytest.mark.parametrize("names", ["old", "new", "both"])
def test_vllm_report_reads_either_kv_name(names):
    r = report_from_vllm(parse_exposition(vllm_metrics_text(3, 1, 0.625, names=names)))
    assert (r.n_running, r.n_waiting, r.kv_usage) == (3, 1, 0.625)
    assert r.pool_tokens == 7722 * 16 and r.mean_prompt_tokens == 14160.0 / 12


def test_vllm_report_sums_engines_and_averages_their_kv():
    text = vllm_metrics_text(2, 5, 0.5, engines=3)
    r = report_from_vllm(parse_exposition(text))
    assert (r.n_running, r.n_waiting, r.kv_usage, r.pool_tokens) == (6, 15, 0.5, 3 * 7722 * 16)


def test_vllm_report_without_the_scheduler_gauges_is_an_error():
    text = "\n".join(
        line for line in vllm_metrics_text().splitlines() if "num_requests_waiting" not in line
    )
    with pytest.raises(MissingMetricsError, match="vllm:num_requests_waiting"):
        report_from_vllm(parse_exposition(text))


def test_unprofiled_pool_and_no_finished_requests_fall_back_to_the_scenario():
    text = vllm_metrics_text(2, 3, 0.5, num_gpu_blocks=None, prompt_tokens=(0, 0.0))
    r = report_from_vllm(parse_exposition(text))
    assert r.pool_tokens is None and r.mean_prompt_tokens is None
    view = EdgeView.of(r, 1.0, DEFAULTS)
    assert view.edge_running_tokens == round(0.5 * DEFAULTS.pool_tokens)
    assert view.edge_waiting_tokens == round(3 * DEFAULTS.mean_prompt_tokens)


def test_view_estimates_and_pushed_values():
    pulled = EdgeView.of(RuntimeReport(4, 2, 0.5, pool_tokens=1000.0, mean_prompt_tokens=300.0),
                         0.7, DEFAULTS)  # fmt: skip
    assert (pulled.edge_running_tokens, pulled.edge_waiting_tokens, pulled.edge_load) == (
        500, 600, 0.7)  # fmt: skip
    pushed = EdgeView.of(RuntimeReport(4, 2, 0.5, running_tokens=7, waiting_tokens=9,
                                       busy_share=0.2), 0.7, DEFAULTS)  # fmt: skip
    assert (pushed.edge_running_tokens, pushed.edge_waiting_tokens, pushed.edge_load) == (7, 9, 0.2)


def test_entry_fields_from_the_device_claim_or_the_pushed_sessions():
    view = EdgeView.of(RuntimeReport(1, 0, 0.1, pool_tokens=10_000.0), 0.0, DEFAULTS)
    # the device's kept KV at split 7 of 28: the edge holds layers 7..27 of 1000 tokens
    assert entry_fields(view, None, 7, 1000, 28) == (pytest.approx(1000 * 21 / 28 / 10_000), 0)
    assert entry_fields(view, None, 28, 1000, 28) == (0.0, -1)  # kept on the device
    assert entry_fields(view, None, None, 0, 28) == (0.0, -1)
    sessions = {"s1": SessionEntry(tokens=2000, split=14, recency_rank=3)}
    pushed = EdgeView.of(RuntimeReport(1, 0, 0.1, pool_tokens=10_000.0, sessions=sessions),
                         0.0, DEFAULTS)  # fmt: skip
    assert entry_fields(pushed, "s1", 7, 1000, 28) == (pytest.approx(2000 * 14 / 28 / 10_000), 3)
    assert entry_fields(pushed, "s2", 7, 1000, 28) == (0.0, -1)  # the runtime kept nothing


def test_the_table_covers_every_edge_field_the_encoder_reads():
    edge_cell = {f for f in CELL_STATE_FIELDS if f.startswith(("edge_", "entry_"))}
    assert set(EDGE_FIELD_SOURCES) == edge_cell | {"edge_kv_occupancy", "edge_load"}


def test_staleness_bound_and_busy_share():
    store = EdgeStateStore(DEFAULTS, max_age_s=2.0, load_window_s=3.0)
    assert store.current(now=0.0) == (None, "missing")
    store.put(RuntimeReport(0, 0, 0.1), "pull", now=8.0)
    store.put(RuntimeReport(0, 0, 0.1), "pull", now=10.0)
    store.put(RuntimeReport(2, 0, 0.1), "pull", now=11.0)
    view, status = store.current(now=13.0)
    assert status == "fresh" and view is not None and view.edge_load == 0.5  # 1 busy of 2 in 3 s
    store.put(RuntimeReport(0, 1, 0.1), "pull", now=11.0)
    assert store.current(now=11.0)[0].edge_load == 2 / 3
    assert store.current(now=13.01) == (None, "stale")
    store.failed("timeout")
    described = store.describe(now=13.5)
    assert described["status"] == "stale" and described["errors"] == 1
    assert described["last_error"] == "timeout" and described["age_s"] == 2.5


def test_readme_shows_the_mapping_table():
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "README.md"
    assert mapping_table() in readme.read_text()
