"""Request streams: invariants, determinism, loaders (and their errors), the embedded default."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.errors import ConfigError, DataFileError
from offload_rl.workloads import (
    EmpiricalDist,
    GeometricMixtureTurns,
    LognormalDist,
    PmfTurns,
    RecordedWorkload,
    Request,
    SyntheticWorkload,
    TokenScaling,
    WorkloadParams,
    default_workload_params,
    load_workload,
    sessions_from_hash_prefixes,
    stream_stats,
)

REPO = Path(__file__).resolve().parents[2]

BURSTGPT_HEADER = "request_index,arrival_ms,input_length,output_length,session_id\n"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def assert_stream_ok(requests: Sequence[Request], scaling: TokenScaling) -> None:
    """Every invariant a stream promises (see the module docstring of offload_rl.workloads)."""
    if not requests:
        return
    assert requests[0].arrival_s == 0.0
    arrivals = [r.arrival_s for r in requests]
    assert arrivals == sorted(arrivals)
    new_cap = min(scaling.max_new_tokens, scaling.max_context_tokens)
    state: dict[int, tuple[int, int, int]] = {}  # session -> (next turn, history tokens, last i)
    for i, r in enumerate(requests):
        assert isinstance(r.session_id, int) and isinstance(r.turn, int)
        assert 1 <= r.new_tokens <= new_cap
        assert 1 <= r.output_tokens <= scaling.max_output_tokens
        assert r.context_tokens >= 0
        assert r.context_tokens + r.new_tokens <= scaling.max_context_tokens
        if r.session_id not in state:
            assert r.session_id == len(state), "session ids dense, in order of first appearance"
            assert r.turn == 0 and r.context_tokens == 0
            history = 0
        else:
            turn, history, last = state[r.session_id]
            assert r.turn == turn, "turn numbers consecutive"
            assert r.context_tokens == min(history, scaling.max_context_tokens - r.new_tokens)
            gap = requests[last].gap_to_next_turn_s
            assert gap is not None
            assert gap == pytest.approx(r.arrival_s - requests[last].arrival_s, abs=1e-6)
        state[r.session_id] = (r.turn + 1, history + r.new_tokens + r.output_tokens, i)
    for _, _, last in state.values():
        assert requests[last].gap_to_next_turn_s is None


def write_burstgpt(path: Path, rows: Sequence[tuple[int, int, int, str]]) -> Path:
    lines = [f"{i},{t},{p},{o},{s}\n" for i, (t, p, o, s) in enumerate(rows)]
    path.write_text(BURSTGPT_HEADER + "".join(lines))
    return path


def random_burstgpt_rows(rng: np.random.Generator, n: int) -> list[tuple[int, int, int, str]]:
    """Sessions whose input includes the history (sometimes trimmed), like BurstGPT."""
    rows = []
    last: dict[str, tuple[int, int]] = {}
    t = 0
    for _ in range(n):
        t += int(rng.integers(0, 30_000))
        label = f"s{int(rng.integers(0, max(2, n // 3)))}"
        output = int(rng.integers(1, 400))
        if label in last and rng.random() < 0.8:
            prev_in, prev_out = last[label]
            prompt = prev_in + prev_out + int(rng.integers(1, 200))
        else:
            prompt = int(rng.integers(1, 2000))
        last[label] = (prompt, output)
        rows.append((t, prompt, output, label))
    return rows


@pytest.fixture(scope="module")
def small_burstgpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wl") / "burst.csv"
    return write_burstgpt(path, random_burstgpt_rows(np.random.default_rng(7), 60))


scalings = (
    st.builds(
        TokenScaling,
        scale=st.floats(0.01, 4.0),
        max_context_tokens=st.integers(16, 8192),
        max_new_tokens=st.integers(1, 4096),
        max_output_tokens=st.integers(1, 2048),
    )
    | st.just(TokenScaling.unlimited())
    | st.just(TokenScaling())
)


# ---- invariants ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 600), scaling=scalings)
def test_default_stream_invariants(seed: int, n: int, scaling: TokenScaling) -> None:
    workload = SyntheticWorkload(default_workload_params(), scaling)
    requests = workload.sample(np.random.default_rng(seed), n)
    assert len(requests) == n
    assert_stream_ok(requests, scaling)


lognormals = st.builds(LognormalDist, median=st.floats(0.5, 3000.0), sigma=st.floats(0.0, 2.5))
params_strategy = st.builds(
    WorkloadParams,
    session_rate_per_s=st.floats(0.001, 50.0),
    warmup_s=st.floats(0.0, 5000.0),
    turns=st.builds(
        GeometricMixtureTurns,
        weights=st.just([0.7, 0.3]),
        means=st.lists(st.floats(1.0, 20.0), min_size=2, max_size=2),
        max_turns=st.integers(1, 64),
    )
    | st.builds(PmfTurns, pmf=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=8)),
    gap_s=st.builds(LognormalDist, median=st.floats(0.01, 3000.0), sigma=st.floats(0.0, 2.5)),
    first_prompt_tokens=lognormals,
    followup_prompt_tokens=lognormals,
    output_tokens=lognormals,
)


@settings(max_examples=40, deadline=None)
@given(params=params_strategy, seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300))
def test_synthetic_stream_invariants_for_any_params(
    params: WorkloadParams, seed: int, n: int
) -> None:
    scaling = TokenScaling()
    requests = SyntheticWorkload(params, scaling).sample(np.random.default_rng(seed), n)
    assert len(requests) == n
    assert_stream_ok(requests, scaling)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 200), scaling=scalings)
def test_recorded_window_invariants(
    small_burstgpt: Path, seed: int, n: int, scaling: TokenScaling
) -> None:
    workload = RecordedWorkload.from_file(small_burstgpt, scaling=scaling)
    requests = workload.sample(np.random.default_rng(seed), n)  # n > 60 rows loops the file
    assert len(requests) == n
    assert_stream_ok(requests, scaling)


def test_context_grows_by_previous_new_plus_output_without_caps() -> None:
    requests = load_workload("default", TokenScaling.unlimited()).sample(
        np.random.default_rng(3), 2000
    )
    last: dict[int, Request] = {}
    follow_ups = 0
    for r in requests:
        if r.session_id in last:
            prev = last[r.session_id]
            assert r.context_tokens == prev.context_tokens + prev.new_tokens + prev.output_tokens
            follow_ups += 1
        last[r.session_id] = r
    assert follow_ups > 500


def test_n_requests_zero_and_negative(small_burstgpt: Path) -> None:
    for workload in (load_workload("default"), RecordedWorkload.from_file(small_burstgpt)):
        assert workload.sample(np.random.default_rng(0), 0) == []
        with pytest.raises(ValueError):
            workload.sample(np.random.default_rng(0), -1)


# ---- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["default", "recorded"])
def test_same_seed_same_stream_other_seed_differs(source: str, small_burstgpt: Path) -> None:
    spec = "default" if source == "default" else str(small_burstgpt)
    workload = load_workload(spec)
    n = 40
    a = workload.sample(np.random.default_rng(11), n)
    b = load_workload(spec).sample(np.random.default_rng(11), n)
    assert a == b
    others = [workload.sample(np.random.default_rng(s), n) for s in range(12, 16)]
    assert any(o != a for o in others)


# ---- token scaling --------------------------------------------------------------------------


def test_token_scaling_validation_and_unlimited() -> None:
    with pytest.raises(ConfigError):
        TokenScaling(scale=0.0)
    with pytest.raises(ConfigError):
        TokenScaling(max_context_tokens=0)
    with pytest.raises(ConfigError):
        TokenScaling(scale=float("nan"))
    raw = TokenScaling.unlimited()
    new, out = raw.scale_lengths(np.array([5, 100000]), np.array([0, 7]))
    assert new.tolist() == [5, 100000] and out.tolist() == [1, 7]


def test_scaling_shrinks_mooncake_sized_prompts() -> None:
    params = default_workload_params().model_copy(
        update={"first_prompt_tokens": LognormalDist(median=12000, sigma=0.3)}
    )
    scaling = TokenScaling(scale=0.1, max_context_tokens=2048, max_new_tokens=1500)
    requests = SyntheticWorkload(params, scaling).sample(np.random.default_rng(0), 300)
    assert_stream_ok(requests, scaling)
    first = [r.new_tokens for r in requests if r.turn == 0]
    assert 800 < float(np.median(first)) <= 1500


# ---- BurstGPT --------------------------------------------------------------------------------


def test_burstgpt_input_includes_history(tmp_path: Path) -> None:
    path = write_burstgpt(
        tmp_path / "b.csv",
        [
            (0, 100, 50, "a"),  # turn 0: new 100
            (1000, 40, 10, "b"),
            (5000, 170, 30, "a"),  # 170 - (100 + 50) = 20 new
            (9000, 90, 10, "a"),  # history trimmed: estimate = median appended of "a" = 20
        ],
    )
    workload = RecordedWorkload.from_file(path, scaling=TokenScaling.unlimited())
    requests = workload.all_requests()
    assert [(r.session_id, r.turn, r.new_tokens, r.context_tokens) for r in requests] == [
        (0, 0, 100, 0),
        (1, 0, 40, 0),
        (0, 1, 20, 150),
        (0, 2, 20, 200),
    ]
    assert [r.arrival_s for r in requests] == [0.0, 1.0, 5.0, 9.0]
    assert [r.gap_to_next_turn_s for r in requests] == [5.0, None, 4.0, None]
    assert workload.notes["appended_turns"] == 1 and workload.notes["followup_turns"] == 2


def test_window_mid_session_folds_history_into_new_tokens(tmp_path: Path) -> None:
    path = write_burstgpt(
        tmp_path / "b.csv",
        [(0, 100, 50, "a"), (1000, 40, 10, "b"), (5000, 170, 30, "a"), (6000, 260, 5, "a")],
    )
    workload = RecordedWorkload.from_file(path, scaling=TokenScaling.unlimited())
    window = workload._window(1, 3)
    assert [(r.session_id, r.turn, r.new_tokens, r.context_tokens) for r in window] == [
        (0, 0, 40, 0),
        (1, 0, 150 + 20, 0),  # a's history (100 + 50) rides on its first request in the window
        (1, 1, 60, 200),  # recorded context kept: 100 + 50 + 20 + 30
    ]
    assert window[0].arrival_s == 0.0 and window[1].arrival_s == 4.0


def test_recorded_stream_loops_when_longer_than_file(small_burstgpt: Path) -> None:
    workload = RecordedWorkload.from_file(small_burstgpt)
    requests = workload.sample(np.random.default_rng(0), 3 * len(workload))
    assert len(requests) == 3 * len(workload)
    assert_stream_ok(requests, workload.scaling)
    recorded_sessions = len({r.session_id for r in workload.all_requests()})
    assert len({r.session_id for r in requests}) >= 2 * recorded_sessions


# ---- Mooncake ---------------------------------------------------------------------------------


def write_mooncake(path: Path, rows: Sequence[tuple[int, int, int, list[int]]]) -> Path:
    lines = [
        json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": h})
        for t, i, o, h in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_mooncake_sessions_from_shared_prefixes(tmp_path: Path) -> None:
    path = write_mooncake(
        tmp_path / "m.jsonl",
        [
            (0, 1100, 100, [0, 1, 2]),  # A turn 0
            (0, 600, 20, [0, 5]),  # B turn 0
            (1000, 1100, 10, [0, 6, 7]),  # C: only the global block in common with others
            (2000, 2100, 50, [0, 1, 2, 3, 4]),  # A turn 1: 2100 - (1100 + 100) = 900 new
            (3000, 700, 30, [0, 5, 8]),  # B turn 1: 700 - 620 = 80 new
            (4000, 400, 30, [0]),  # D: the system prompt alone
            (5000, 3000, 30, [0, 1, 2, 3, 4, 9]),  # A turn 2: 3000 - 2150 = 850 new
        ],
    )
    workload = RecordedWorkload.from_file(path, scaling=TokenScaling.unlimited())
    assert workload.kind == "mooncake"
    got = [(r.session_id, r.turn, r.new_tokens, r.context_tokens) for r in workload.all_requests()]
    assert got == [
        (0, 0, 1100, 0),
        (1, 0, 600, 0),
        (2, 0, 1100, 0),
        (0, 1, 900, 1200),
        (1, 1, 80, 620),
        (3, 0, 400, 0),
        (0, 2, 850, 2150),
    ]
    assert workload.notes["global_prefix_blocks"] == 1
    assert workload.notes["continuing_requests"] == 3


def test_hash_prefix_matching_is_positional() -> None:
    # Block 1 at position 1 and at position 2 are different prefixes.
    prefix = sessions_from_hash_prefixes([[0, 1, 2], [0, 9, 1, 2], [0, 1, 5]])
    assert prefix.global_prefix_blocks == 1
    assert prefix.session.tolist() == [0, 1, 0]
    assert prefix.shared_blocks.tolist() == [0, 1, 2]


# ---- Azure ------------------------------------------------------------------------------------


def write_azure(path: Path, n: int, seconds_apart: float = 7.0) -> Path:
    rng = np.random.default_rng(1)
    start = np.datetime64("2023-11-16T18:15:46.6805900", "ns")
    lines = []
    for i in range(n):
        stamp = str(start + np.timedelta64(int(i * seconds_apart * 1e9), "ns")).replace("T", " ")
        lines.append(f"{stamp},{int(rng.integers(1, 3000))},{int(rng.integers(1, 500))}\n")
    path.write_text(AZURE_HEADER + "".join(lines))
    return path


def test_azure_rows_become_turns_of_synthesised_sessions(tmp_path: Path) -> None:
    path = write_azure(tmp_path / "a.csv", 400)
    raw = TokenScaling.unlimited()
    workload = RecordedWorkload.from_file(path, scaling=raw, seed=1)
    assert workload.kind == "azure"
    requests = workload.all_requests()
    assert_stream_ok(requests, raw)
    recorded = [int(line.split(",")[1]) for line in path.read_text().splitlines()[1:]]
    assert [r.new_tokens for r in requests] == recorded  # ContextTokens are new tokens
    assert requests[1].arrival_s == pytest.approx(7.0)
    stats = stream_stats(requests)
    assert 1.3 < stats["turns_per_session_mean"] < 4.0
    other = RecordedWorkload.from_file(path, scaling=raw, seed=2).all_requests()
    assert [r.session_id for r in other] != [r.session_id for r in requests]
    again = RecordedWorkload.from_file(path, scaling=raw, seed=1).all_requests()
    assert again == requests


# ---- loader errors ----------------------------------------------------------------------------


ERROR_CASES: list[tuple[str, str, int | None, str]] = [
    ("a.csv", "", None, "empty"),
    ("a.csv", AZURE_HEADER, None, "no requests"),
    ("a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,1\n", 1, "GeneratedTokens"),
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46,12,3\n2023-11-16 18:15:47,x,3\n", 3, "x"),
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46,-12,3\n", 2, ">= 0"),
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46,1,3\nyesterday,1,3\n", 3, "TIMESTAMP"),
    (
        "a.csv",
        AZURE_HEADER + "2023-11-16 18:15:46,1,3\n\n2023-11-16 18:15:45,1,3\n",
        4,
        "backwards",
    ),
    ("a.csv", AZURE_HEADER + "2023-11-16 18:15:46,1\n", 2, "fields"),
    ("b.csv", "request_index,arrival_ms,input_length,output_length\n0,0,1,1\n", 1, "session_id"),
    ("b.csv", BURSTGPT_HEADER + "0,1000,5,5,a\n1,999,5,5,a\n", 3, "arrival_ms goes backwards"),
    ("b.csv", BURSTGPT_HEADER + "0,0,5.5,5,a\n", 2, "input_length"),
    ("b.csv", BURSTGPT_HEADER + "0,0,5,nan,a\n", 2, "output_length"),
    ("b.csv", BURSTGPT_HEADER + "0,0,5,5,\n", 2, "session_id"),
    (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [0]}\n{',
        2,
        "JSON",
    ),
    ("m.jsonl", '{"timestamp": 0, "input_length": 5, "hash_ids": [0]}\n', 1, "output_length"),
    (
        "m.jsonl",
        '{"timestamp": 0, "input_length": -5, "output_length": 1, "hash_ids": [0]}\n',
        1,
        ">= 0",
    ),
    (
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": 3}\n',
        1,
        "hash_ids",
    ),
    (
        "m.jsonl",
        '{"timestamp": 5, "input_length": 5, "output_length": 1, "hash_ids": [0]}\n'
        '{"timestamp": 4, "input_length": 5, "output_length": 1, "hash_ids": [0]}\n',
        2,
        "backwards",
    ),
    ("x.csv", "time,tokens\n1,2\n", 1, "cannot tell the workload format"),
    ("x.csv", "\n\n", None, "empty"),
]


@pytest.mark.parametrize(("name", "text", "line", "fragment"), ERROR_CASES)
def test_loader_errors_name_file_and_line(
    tmp_path: Path, name: str, text: str, line: int | None, fragment: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataFileError) as info:
        load_workload(str(path))
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:{line}:" if line is not None else f"{path}:")
    assert "\n" not in str(err)


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_text("\ufeff" + BURSTGPT_HEADER + "0,0,5,5,a\n", encoding="utf-8")
    assert len(RecordedWorkload.from_file(path).all_requests()) == 1


def test_explicit_kind_mismatch_reports_missing_columns(small_burstgpt: Path) -> None:
    with pytest.raises(DataFileError, match="missing column"):
        RecordedWorkload.from_file(small_burstgpt, kind="azure")
    with pytest.raises(ConfigError):
        RecordedWorkload.from_file(small_burstgpt, kind="parquet")  # type: ignore[arg-type]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such workload"):
        load_workload(str(tmp_path / "absent.csv"))
    with pytest.raises(DataFileError, match="directory"):
        load_workload(str(tmp_path))


# ---- parameters and the embedded default ------------------------------------------------------


def test_default_params_are_per_cell_and_documented() -> None:
    params = default_workload_params()
    assert 0.01 < params.request_rate_per_s() < 5.0  # one edge cell, not a cloud region
    assert "cell" in params.provenance["per_cell"]
    assert 3.0 < params.turns.mean() < 3.7  # BurstGPT: 1000 requests / 299 sessions
    workload = load_workload("default")
    assert isinstance(workload, SyntheticWorkload) and workload.name == "default"


def test_params_file_overrides_the_default(tmp_path: Path) -> None:
    path = tmp_path / "busy.yaml"
    path.write_text("session_rate_per_s: 2.0\nturns: {kind: pmf, pmf: [0, 0, 1]}\n")
    workload = load_workload(str(path))
    assert isinstance(workload, SyntheticWorkload) and workload.name == "busy"
    assert workload.params.session_rate_per_s == 2.0
    assert workload.params.gap_s == default_workload_params().gap_s
    requests = workload.sample(np.random.default_rng(0), 300)
    assert_stream_ok(requests, workload.scaling)
    # A session has exactly three turns unless the stream window cuts it.
    assert max(r.turn for r in requests) == 2
    as_json = tmp_path / "p.json"
    as_json.write_text(json.dumps(default_workload_params().model_dump(mode="json")))
    assert load_workload(str(as_json)).sample(np.random.default_rng(1), 50) == load_workload(
        "default"
    ).sample(np.random.default_rng(1), 50)


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("session_rate_per_s: -1\n", ConfigError, "session_rate_per_s"),
        ("gap_s: {kind: lognormal, median: 5}\n", ConfigError, "gap_s.lognormal.sigma"),
        ("rate: 3\n", ConfigError, "rate"),
        ("session_rate_per_s: [1\n", DataFileError, "invalid YAML"),
        ("- 1\n- 2\n", ConfigError, "mapping"),
    ],
)
def test_bad_params_files(tmp_path: Path, text: str, error: type, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(error, match=fragment) as info:
        load_workload(str(path))
    assert str(path) in str(info.value)


def test_distribution_validation() -> None:
    with pytest.raises(ValueError):
        EmpiricalDist(probs=[0.0, 0.5], values=[1.0, 2.0])
    with pytest.raises(ValueError):
        EmpiricalDist(probs=[0.0, 1.0], values=[2.0, 1.0])
    with pytest.raises(ValueError):
        GeometricMixtureTurns(weights=[1.0], means=[0.5])
    dist = EmpiricalDist(probs=[0.0, 0.5, 1.0], values=[1.0, 10.0, 100.0])
    draws = dist.sample(np.random.default_rng(0), 20_000)
    assert draws.min() >= 1.0 and draws.max() <= 100.0
    assert float(np.median(draws)) == pytest.approx(10.0, rel=0.05)
    turns = PmfTurns(pmf=[0.0, 1.0]).sample(np.random.default_rng(0), 10)
    assert turns.tolist() == [2] * 10


def test_stream_stats_of_a_tiny_stream() -> None:
    requests = [
        Request(0.0, 0, 0, 10, 0, 5, 4.0),
        Request(1.0, 1, 0, 20, 0, 5, None),
        Request(4.0, 0, 1, 3, 15, 5, None),
    ]
    stats = stream_stats(requests)
    assert stats["requests"] == 3 and stats["sessions"] == 2
    assert stats["multi_turn_request_share"] == pytest.approx(2 / 3)
    assert stats["turn_gap_s_p50"] == 4.0
    assert stream_stats([]) == {"requests": 0.0}


# ---- the recorded files in ../shared ----------------------------------------------------------


@pytest.mark.shared
def test_shared_burstgpt_sessions(shared_workloads: Path) -> None:
    workload = RecordedWorkload.from_file(
        shared_workloads / "burstgpt_sessions_first1000.csv", scaling=TokenScaling.unlimited()
    )
    assert workload.kind == "burstgpt"
    stats = stream_stats(workload.all_requests())
    # the expected figures straight from the CSV's columns, not from the loader
    path = shared_workloads / "burstgpt_sessions_first1000.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    arrivals: dict[str, list[float]] = {}
    for row in rows:
        arrivals.setdefault(row["session_id"], []).append(int(row["arrival_ms"]) / 1000.0)
    multi_turn = sum(len(a) for a in arrivals.values() if len(a) > 1)
    gaps = [b - a for times in arrivals.values() for a, b in itertools.pairwise(sorted(times))]
    assert stats["requests"] == len(rows) == 1000
    assert stats["sessions"] == len(arrivals)
    assert stats["multi_turn_request_share"] == pytest.approx(multi_turn / len(rows))
    assert stats["turn_gap_s_p50"] == pytest.approx(float(np.median(gaps)))
    # The input includes the history: two thirds of follow-ups append to it.
    assert 0.6 < float(workload.notes["appended_share"]) < 0.75
    assert workload.notes["median_input_growth"] == pytest.approx(110.0, abs=5)


@pytest.mark.shared
def test_shared_mooncake_sessions(shared_workloads: Path) -> None:
    workload = RecordedWorkload.from_file(
        shared_workloads / "mooncake_conversation_trace.jsonl", scaling=TokenScaling.unlimited()
    )
    assert workload.kind == "mooncake"
    assert workload.notes["global_prefix_blocks"] == 1  # hash id 0, shared by every request
    assert workload.notes["reuse_2plus_blocks_share"] == pytest.approx(0.387, abs=0.001)
    stats = stream_stats(workload.all_requests())
    assert stats["requests"] == 12031
    assert 1.4 < stats["turns_per_session_mean"] < 1.9
    assert 0.5 < stats["multi_turn_request_share"] < 0.65
    assert stats["new_tokens_mean"] + stats["context_tokens_mean"] > 10_000  # long prompts


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "AzureLLMInferenceTrace_conv.csv",
        "AzureLLMInferenceTrace_code.csv",
        "burstgpt_sessions_first1000.csv",
        "mooncake_conversation_trace.jsonl",
    ],
)
def test_shared_files_sample_valid_streams(shared_workloads: Path, name: str) -> None:
    scaling = TokenScaling(scale=0.25)
    workload = load_workload(str(shared_workloads / name), scaling)
    for seed in range(3):
        requests = workload.sample(np.random.default_rng(seed), 1000)
        assert len(requests) == 1000
        assert_stream_ok(requests, scaling)


@pytest.mark.shared
def test_shared_azure_conv_lengths(shared_workloads: Path) -> None:
    workload = RecordedWorkload.from_file(
        shared_workloads / "AzureLLMInferenceTrace_conv.csv", scaling=TokenScaling.unlimited()
    )
    stats = stream_stats(workload.all_requests())
    # the expected figures straight from the CSV's columns, not from the loader
    with (shared_workloads / "AzureLLMInferenceTrace_conv.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    prompt = [int(r["ContextTokens"]) for r in rows]
    output = [int(r["GeneratedTokens"]) for r in rows]
    first, last = (dt.datetime.fromisoformat(rows[i]["TIMESTAMP"][:26]) for i in (0, -1))
    assert stats["requests"] == len(rows)
    assert stats["new_tokens_mean"] == pytest.approx(float(np.mean(prompt)))
    assert stats["output_tokens_mean"] == pytest.approx(float(np.mean(output)))
    span_s = (last - first).total_seconds()
    assert stats["requests_per_s"] == pytest.approx((len(rows) - 1) / span_s, rel=1e-6)
    assert stats["turns_per_session_mean"] > 1.5


def _fit_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fit_workload", REPO / "experiments" / "fitting" / "fit_workload.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.shared
def test_fit_script_reproduces_the_shipped_default(shared_workloads: Path, capsys) -> None:
    assert _fit_script().main(["--shared", str(shared_workloads.parent), "--check"]) == 0
    out = capsys.readouterr().out
    assert "fitted" in out and "recorded" in out


def test_fit_script_without_shared_says_so(tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "w.json"
    assert _fit_script().main(["--shared", str(tmp_path / "nowhere"), "--out", str(out_file)]) == 2
    assert "absent" in capsys.readouterr().err
    assert not out_file.exists()
