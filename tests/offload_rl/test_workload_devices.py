"""Device streams of a cell: sessions whole on one device, recorded gaps and lengths kept,
each stream sorted and invariant-preserving, per-device session rates = cell rate / N."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.errors import ConfigError
from offload_rl.workloads import (
    RecordedWorkload,
    Request,
    SessionReplay,
    SyntheticSessions,
    TokenScaling,
    default_correlated_params,
    default_workload_params,
)
from tests.offload_rl.test_workloads import (
    assert_stream_ok,
    random_burstgpt_rows,
    write_burstgpt,
)


def assert_device_stream_ok(requests: Sequence[Request], scaling: TokenScaling) -> None:
    """The stream invariants on the cell's clock: the first request arrives at t >= 0."""
    if not requests:
        return
    t0 = requests[0].arrival_s
    assert t0 >= 0.0
    assert_stream_ok([replace(r, arrival_s=r.arrival_s - t0) for r in requests], scaling)


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("devices") / "burst.csv"
    return write_burstgpt(path, random_burstgpt_rows(np.random.default_rng(5), 80))


def _sessions(requests: Sequence[Request]) -> list[tuple[tuple[float, ...], tuple[int, ...]]]:
    """Per session: gaps between its turns and its outputs (what replay must keep)."""
    by: dict[int, list[Request]] = {}
    for r in requests:
        by.setdefault(r.session_id, []).append(r)
    return [
        (tuple(np.round(np.diff([r.arrival_s for r in rs]), 6)), tuple(r.output_tokens for r in rs))
        for rs in by.values()
    ]


@settings(max_examples=30, deadline=None)
@given(n_devices=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_replay_keeps_each_recorded_session_whole_on_one_device(
    burst: Path, n_devices: int, seed: int
) -> None:
    """Window = the whole recording: every recorded session appears once, on one device, with
    its recorded gaps and outputs, and with its recorded arrival times."""
    workload = RecordedWorkload.from_file(burst, scaling=TokenScaling.unlimited())
    everything = workload.all_requests()
    streams = SessionReplay(workload, n_devices, np.random.default_rng(seed), 0.0).device_streams(
        workload.period_s
    )
    assert len(streams) == n_devices
    played = [s for stream in streams for s in _sessions(stream)]
    assert Counter(played) == Counter(_sessions(everything))
    arrivals = sorted(r.arrival_s for stream in streams for r in stream)
    assert arrivals == pytest.approx([r.arrival_s for r in everything])
    for stream in streams:
        assert_device_stream_ok(stream, workload.scaling)


@settings(max_examples=30, deadline=None)
@given(
    n_devices=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    start=st.one_of(st.none(), st.floats(0.0, 5e5)),
    duration=st.floats(1.0, 3e5),
)
def test_replay_windows_are_sorted_and_keep_the_invariants(
    burst: Path, n_devices: int, seed: int, start: float | None, duration: float
) -> None:
    scaling = TokenScaling(max_context_tokens=2048, max_new_tokens=1024, max_output_tokens=256)
    workload = RecordedWorkload.from_file(burst, scaling=scaling)
    replay = SessionReplay(workload, n_devices, np.random.default_rng(seed), start)
    for stream in replay.device_streams(duration):
        assert all(0.0 <= r.arrival_s < duration for r in stream)
        assert_device_stream_ok(stream, scaling)


@settings(max_examples=15, deadline=None)
@given(n_devices=st.integers(1, 8), seed=st.integers(0, 2**32 - 1), correlated=st.booleans())
def test_synthetic_device_streams_keep_the_invariants(
    n_devices: int, seed: int, correlated: bool
) -> None:
    params = default_correlated_params() if correlated else default_workload_params()
    scaling = TokenScaling()
    streams = SyntheticSessions(params, n_devices, np.random.default_rng(seed), scaling)
    for stream in streams.device_streams(1800.0):
        assert all(0.0 <= r.arrival_s < 1800.0 for r in stream)
        assert_device_stream_ok(stream, scaling)


def test_each_device_gets_the_cell_rate_over_n() -> None:
    """Without warm-up every session starts in the window: its count on a device is Poisson
    with mean rate / N x duration."""
    params = default_workload_params().model_copy(update={"warmup_s": 0.0})
    n_devices, duration = 4, 60_000.0
    sessions = SyntheticSessions(params, n_devices, np.random.default_rng(2))
    expected = sessions.device_session_rate_per_s() * duration
    assert sessions.device_session_rate_per_s() == pytest.approx(params.session_rate_per_s / 4)
    for stream in sessions.device_streams(duration):
        starts = len({r.session_id for r in stream})
        assert abs(starts - expected) < 4.0 * np.sqrt(expected)


def test_same_seed_same_streams(burst: Path) -> None:
    workload = RecordedWorkload.from_file(burst)

    def play(seed: int) -> list[list[Request]]:
        return SessionReplay(workload, 3, np.random.default_rng(seed)).device_streams(5e4)

    assert play(1) == play(1)
    assert play(1) != play(2)


def test_bad_arguments(burst: Path) -> None:
    workload = RecordedWorkload.from_file(burst)
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="n_devices"):
        SessionReplay(workload, 0, rng)
    with pytest.raises(ConfigError, match="start_s"):
        SessionReplay(workload, 2, rng, -1.0)
    with pytest.raises(ConfigError, match="duration_s"):
        SyntheticSessions(default_workload_params(), 2, rng).device_streams(0.0)
