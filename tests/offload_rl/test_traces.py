"""Trace integration (exact, cyclic, fast paths) and the three file loaders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from offload_rl.errors import DataFileError
from offload_rl.traces import (
    BYTES_PER_MBIT,
    Trace,
    detect_format,
    load_trace,
    load_traces,
    resample_bytes,
    write_cooked,
)

MB = BYTES_PER_MBIT  # bytes per second at 1 Mbps


# -- hand-computed integration --------------------------------------------------------------------


def two_step() -> Trace:
    """1 Mbps on [0, 1), 3 Mbps on [1, 2); period 2 s, 500 kB per period."""
    return Trace.from_steps([1.0, 3.0], step_s=1.0, name="two")


def test_bytes_between_crosses_a_capacity_change() -> None:
    tr = two_step()
    assert tr.duration_s == 2.0
    assert tr.total_bytes == pytest.approx(4.0 * MB)
    # 0.5 s at 1 Mbps + 0.5 s at 3 Mbps, integrated rather than sampled at either end.
    assert tr.bytes_between(0.5, 1.5) == pytest.approx(0.5 * MB + 1.5 * MB)
    assert tr.bytes_between(0.25, 0.75) == pytest.approx(0.5 * MB)
    assert tr.bytes_between(1.0, 1.0) == 0.0


def test_finish_time_crosses_a_capacity_change() -> None:
    tr = two_step()
    assert tr.finish_time(0.5, 2.0 * MB) == pytest.approx(1.5)
    assert tr.finish_time(0.0, 1.0 * MB) == pytest.approx(1.0)
    assert tr.finish_time(0.0, 1.75 * MB) == pytest.approx(1.25)
    assert tr.finish_time(0.7, 0.0) == 0.7


def test_wrap_around_the_end_of_the_trace() -> None:
    tr = two_step()
    # [1.5, 2.5]: 0.5 s at 3 Mbps, then the trace starts over at 1 Mbps.
    assert tr.bytes_between(1.5, 2.5) == pytest.approx(1.5 * MB + 0.5 * MB)
    assert tr.bytes_between(0.0, 20.0) == pytest.approx(10 * tr.total_bytes)
    assert tr.bytes_between(101.5, 102.5) == pytest.approx(2.0 * MB)
    # From 1.5: 1.5 MB to the end of the period, then 3 full periods, then 1 MB more -> t = 9.
    assert tr.finish_time(1.5, 1.5 * MB + 3 * tr.total_bytes + 1.0 * MB) == pytest.approx(9.0)
    # Finishing exactly at a period boundary.
    assert tr.finish_time(1.5, 1.5 * MB) == pytest.approx(2.0)
    assert tr.capacity_mbps(2.5) == 1.0
    assert tr.capacity_mbps(3.0) == 3.0
    assert tr.capacity_mbps(1e6 + 1.2) == 3.0


def test_outage_steps_finish_at_the_earliest_instant() -> None:
    tr = Trace.from_steps([0.0, 2.0, 0.0], step_s=1.0)
    # All 2 Mbps x 1 s arrive during [1, 2]; nothing more until 4.
    assert tr.finish_time(0.0, 2.0 * MB) == pytest.approx(2.0)
    assert tr.finish_time(0.0, 4.0 * MB) == pytest.approx(5.0)
    assert tr.finish_time(2.5, 1.0 * MB) == pytest.approx(4.5)
    assert tr.bytes_between(2.0, 4.0) == 0.0
    assert tr.mean_mbps(0.0, 3.0) == pytest.approx(2.0 / 3.0)
    assert tr.mean_mbps(1.5, 1.5) == 2.0


def test_mean_mbps_is_the_average_capacity() -> None:
    tr = two_step()
    assert tr.mean_mbps(0.0, 2.0) == pytest.approx(2.0)
    assert tr.mean_mbps(0.5, 1.5) == pytest.approx(2.0)
    assert tr.mean_mbps(0.0, 0.5) == pytest.approx(1.0)


def test_constant_scaled_and_immutability() -> None:
    tr = Trace.constant(8.0, duration_s=10.0)
    assert tr.mbps.size == 100
    assert tr.finish_time(3.0, 1e6) == pytest.approx(4.0)
    up = tr.scaled(0.25)
    assert up.mean_mbps(0.0, 10.0) == pytest.approx(2.0)
    assert (up.name, up.family) == (tr.name, tr.family)
    with pytest.raises(ValueError):
        tr.mbps[0] = 1.0
    with pytest.raises(ValueError):
        tr.scaled(0.0)
    assert tr == Trace.constant(8.0, duration_s=10.0)
    assert tr != up
    assert len({tr, Trace.constant(8.0, duration_s=10.0)}) == 1


@pytest.mark.parametrize(
    "rates",
    [[0.0, 0.0], [], [1.0, float("nan")], [1.0, -1.0], [[1.0, 2.0]]],
)
def test_bad_rates_are_rejected(rates: list[float]) -> None:
    with pytest.raises(ValueError):
        Trace.from_steps(rates, step_s=1.0)


def test_bad_queries_are_rejected() -> None:
    tr = two_step()
    with pytest.raises(ValueError):
        tr.bytes_between(2.0, 1.0)
    with pytest.raises(ValueError):
        tr.finish_time(0.0, -1.0)


# -- properties -----------------------------------------------------------------------------------


def reference_bytes(rates: list[float], step: float, t0: float, t1: float) -> float:
    """Slow, obvious integration: walk the step boundaries from t0 to t1."""
    total, t = 0.0, t0
    while t < t1:
        k = math.floor(t / step + 1e-12)
        end = min((k + 1) * step, t1)
        total += rates[k % len(rates)] * MB * (end - t)
        t = end
    return total


rates_st = st.lists(
    st.one_of(st.just(0.0), st.floats(0.01, 100.0)), min_size=1, max_size=12
).filter(lambda r: sum(r) > 0)
steps_st = st.sampled_from([0.1, 0.25, 1.0, 1.4306])
times_st = st.floats(0.0, 500.0)


@settings(max_examples=150, deadline=None)
@given(rates=rates_st, step=steps_st, t0=times_st, span=st.floats(0.0, 40.0))
def test_bytes_between_matches_reference(
    rates: list[float], step: float, t0: float, span: float
) -> None:
    tr = Trace.from_steps(rates, step_s=step)
    got = tr.bytes_between(t0, t0 + span)
    want = reference_bytes(rates, step, t0, t0 + span)
    assert got == pytest.approx(want, rel=1e-7, abs=1e-6 * tr.total_bytes)


@settings(max_examples=200, deadline=None)
@given(rates=rates_st, step=steps_st, t0=times_st, frac=st.floats(0.0, 5.0))
def test_finish_time_inverts_bytes_between(
    rates: list[float], step: float, t0: float, frac: float
) -> None:
    tr = Trace.from_steps(rates, step_s=step)
    nbytes = frac * tr.total_bytes
    t = tr.finish_time(t0, nbytes)
    assert t >= t0
    assert tr.bytes_between(t0, t) == pytest.approx(nbytes, rel=1e-9, abs=1e-7 * tr.total_bytes)
    # Earliest: a little before t, fewer bytes had arrived (unless nothing was needed).
    if nbytes > 1e-6 * tr.total_bytes:
        eps = 1e-6 * step
        assert tr.bytes_between(t0, max(t0, t - eps)) < nbytes


@settings(max_examples=150, deadline=None)
@given(rates=rates_st, step=steps_st, t0=times_st, a=st.floats(0, 30), b=st.floats(0, 30))
def test_monotonic_and_additive(
    rates: list[float], step: float, t0: float, a: float, b: float
) -> None:
    tr = Trace.from_steps(rates, step_s=step)
    t1, t2 = t0 + min(a, b), t0 + max(a, b)
    tol = 1e-9 * tr.total_bytes * (1 + t2 / tr.duration_s)
    b01, b12, b02 = tr.bytes_between(t0, t1), tr.bytes_between(t1, t2), tr.bytes_between(t0, t2)
    assert b01 >= -tol and b12 >= -tol
    assert b01 <= b02 + tol
    assert b01 + b12 == pytest.approx(b02, abs=tol)
    f1 = tr.finish_time(t0, a * MB)
    f2 = tr.finish_time(t0, (a + b) * MB)
    assert f1 <= f2 + 1e-9 * (1 + f2)
    # finish_time of the bytes in [t0, t2] is no later than t2.
    assert tr.finish_time(t0, b02) <= t2 + 1e-7 * (1 + t2)


@settings(max_examples=100, deadline=None)
@given(
    pieces=st.lists(st.tuples(st.floats(0.0, 3.0), st.floats(0.0, 100.0)), min_size=1),
    step=st.sampled_from([0.05, 0.1, 0.3, 1.0]),
)
def test_resampling_conserves_bytes(pieces: list[tuple[float, float]], step: float) -> None:
    widths = np.array([w for w, _ in pieces])
    assume(widths.sum() > 1e-3)
    edges = np.concatenate(([0.0], np.cumsum(widths)))
    nbytes = widths * np.array([r for _, r in pieces]) * MB
    mbps = resample_bytes(edges, nbytes, step)
    assert mbps.size == max(1, math.ceil(edges[-1] / step - 1e-9))
    assert float(np.sum(mbps) * MB * step) == pytest.approx(float(nbytes.sum()), rel=1e-9, abs=1e-6)


# -- loaders --------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_cooked_sample_i_holds_on_the_interval_before_it(tmp_path: Path) -> None:
    f = write(tmp_path / "fam" / "trace1", "0.0\t5.0\n1.0\t1.0\n3.0\t2.0\n")
    tr = load_trace(f)
    assert (tr.name, tr.family, tr.source) == ("trace1", "fam", str(f))
    assert tr.step_s == 0.1
    assert tr.duration_s == pytest.approx(3.0)
    assert np.allclose(tr.mbps[:10], 1.0) and np.allclose(tr.mbps[10:], 2.0)
    assert tr.total_bytes == pytest.approx((1.0 * 1.0 + 2.0 * 2.0) * MB)


def test_cooked_resampling_off_grid_conserves_bytes(tmp_path: Path) -> None:
    f = write(tmp_path / "t", "2.0 9\n2.5 1\n3.9 4\n4.33 0\n5.0 3\n")  # starts at 2 s
    tr = load_trace(f, step_s=0.4)
    want = (0.5 * 1 + 1.4 * 4 + 0.43 * 0 + 0.67 * 3) * MB
    assert tr.total_bytes == pytest.approx(want)
    assert tr.mbps.size == 8  # 3 s -> 7.5 steps -> 8, the last one spread over a full step
    assert tr.bytes_between(0.0, 0.4) == pytest.approx(0.4 * 1 * MB)
    assert tr.bytes_between(0.4, 0.8) == pytest.approx((0.1 * 1 + 0.3 * 4) * MB)


def test_mahimahi_packets_per_millisecond(tmp_path: Path) -> None:
    # Period 10 ms; the last timestamp (10) wraps onto millisecond 0.
    f = write(tmp_path / "cell" / "link.up", "0\n0\n5\n10\n")
    tr = load_trace(f, step_s=0.005)
    assert (tr.name, tr.family) == ("link.up", "cell")
    assert tr.duration_s == pytest.approx(0.010)
    assert tr.total_bytes == pytest.approx(4 * 1500)
    assert tr.mbps.tolist() == pytest.approx([3 * 1500 / (MB * 0.005), 1500 / (MB * 0.005)])
    assert tr.mean_mbps(0.0, 0.010) == pytest.approx(4.8)


def test_mahimahi_detected_by_content_and_explicit_format(tmp_path: Path) -> None:
    f = write(tmp_path / "noext", "3\n7\n7\n1000\n")
    assert detect_format(f) == "mahimahi"
    tr = load_trace(f, fmt="mahimahi")
    assert tr.total_bytes == pytest.approx(4 * 1500)
    assert tr.duration_s == pytest.approx(1.0)


@pytest.mark.parametrize(
    "header", ["time_s,mbps,note", "Time,Throughput_Mbps,note", "timestamp_s,bandwidth_mbps,note"]
)
def test_csv_with_accepted_headers(tmp_path: Path, header: str) -> None:
    f = write(tmp_path / "x.csv", f"{header}\n0,9,a\n1,2,b\n\n2,4,c\n")
    tr = load_trace(f)
    assert tr.duration_s == pytest.approx(2.0)
    assert tr.mean_mbps(0.0, 2.0) == pytest.approx(3.0)
    assert tr.capacity_mbps(0.5) == pytest.approx(2.0)


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "a", "0 1\n1 2\n")) == "cooked"
    assert detect_format(write(tmp_path / "b", "time mbps\n0 1\n")) == "csv"
    assert detect_format(write(tmp_path / "c", "time_s,mbps\n")) == "csv"
    assert detect_format(write(tmp_path / "d.down", "0 1\n")) == "mahimahi"
    assert detect_format(write(tmp_path / "e", "0.0 nan\n")) == "cooked"


BAD_FILES = [
    ("t", "0 1\n1 abc\n", 2, "not a number"),
    ("t", "0 1\n\n1 nan\n", 3, "not finite"),
    ("t", "0 1\n1 inf\n", 2, "not finite"),
    ("t", "0 1\n1 -2\n", 2, "negative rate"),
    ("t", "0 1\n2 1\n1 1\n", 3, "backwards"),
    ("t", "0 1\n1 1 1\n", 2, "expected 2 columns"),
    ("t", "0 1\n1\n", 2, "expected 2 columns"),
    ("t", "-1 1\n1 1\n", 1, "negative time"),
    ("t", "", None, "empty file"),
    ("t", "  \n\n", None, "empty file"),
    ("t", "0 0\n1 0\n", None, "total capacity is zero"),
    ("t", "0 1\n", None, "at least 2 samples"),
    ("t", "5 1\n5 2\n", None, "zero duration"),
    ("t.up", "0\n5\n3\n", 3, "backwards"),
    ("t.up", "0\n1.5\n", 2, "not an integer"),
    ("t.up", "0\n4 2\n", 2, "expected 1 column"),
    ("t.up", "-1\n4\n", 1, "negative timestamp"),
    ("t.up", "0\n0\n", None, "zero duration"),
    ("t.csv", "time_s,mbps\n0,1\n1\n", 3, "expected 2 columns"),
    ("t.csv", "time_s,mbps\n0,1\n1,x\n", 3, "not a number"),
    ("t.csv", "time_s,mbps\n0,1\n1,-3\n", 3, "negative rate"),
    ("t.csv", "t,rate\n0,1\n", 1, "no time column"),
    ("t.csv", "time,speed\n0,1\n", 1, "no rate column"),
]


@pytest.mark.parametrize(("name", "text", "line", "needle"), BAD_FILES)
def test_bad_files_name_the_file_and_line(
    tmp_path: Path, name: str, text: str, line: int | None, needle: str
) -> None:
    f = write(tmp_path / name, text)
    with pytest.raises(DataFileError) as info:
        load_trace(f)
    message = str(info.value)
    assert needle in message
    assert info.value.line == line
    where = f"{f}:{line}:" if line is not None else f"{f}:"
    assert message.startswith(where)


def test_wrong_explicit_format_names_the_line(tmp_path: Path) -> None:
    f = write(tmp_path / "cooked", "0 1\n1 2\n")
    with pytest.raises(DataFileError, match=r"cooked:1: expected 1 column"):
        load_trace(f, fmt="mahimahi")


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        load_trace(tmp_path / "nope")
    empty = tmp_path / "empty"
    write(empty / ".hidden", "0 1\n1 1\n")
    with pytest.raises(DataFileError, match="no trace files") as info:
        load_traces([empty])
    assert "empty" in str(info.value)


def test_folders_expand_sorted_skipping_hidden(tmp_path: Path) -> None:
    fam = tmp_path / "famA"
    write(fam / "b", "0 1\n1 2\n")
    write(fam / "a", "0 1\n1 3\n")
    write(fam / ".DS_Store", "junk")
    single = write(tmp_path / "other" / "c.up", "0\n100\n")
    traces = load_traces([fam, single])
    assert [t.name for t in traces] == ["a", "b", "c.up"]
    assert [t.family for t in traces] == ["famA", "famA", "other"]


def test_write_cooked_round_trip(tmp_path: Path) -> None:
    tr = Trace.from_steps([1.5, 0.0, 7.25, 3.0], step_s=0.1, name="x")
    out = tmp_path / "rt" / "x"
    out.parent.mkdir()
    write_cooked(tr, out)
    back = load_trace(out)
    assert back.mbps.tolist() == pytest.approx(tr.mbps.tolist(), rel=1e-12, abs=1e-12)
    assert back.duration_s == pytest.approx(tr.duration_s)
    with pytest.raises(DataFileError, match="cannot write"):
        write_cooked(tr, tmp_path / "missing-dir" / "x")
