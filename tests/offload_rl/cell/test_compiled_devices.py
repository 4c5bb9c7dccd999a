"""The phones' compiled kernels compute, bit for bit, what their Python reference computes.

:mod:`offload_rl.cell.compiled_devices` mirrors the devices' Python methods (heat, radios, the
simulator's lazy radio settlement) operation by operation; every value must be *equal*, floats
included (no tolerance), piece by piece and over whole cells.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.device import Device
from offload_rl.cell.ledger_table import CompiledCostLedger
from offload_rl.cell.radio import RADIOS, Radio
from offload_rl.cell.radio_bank import BankRadio, RadioBank
from offload_rl.cell.thermal import DEVICE_CLASSES, DeviceThermal
from offload_rl.cost_model import LinkModel
from offload_rl.reward import CostLedger
from offload_rl.traces import Trace
from tests.envs.env_contracts import played

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)

runs = st.lists(
    st.tuples(
        st.floats(0.0, 120.0),  # idle seconds before the run
        st.one_of(st.just(0.0), st.floats(1e-9, 600.0)),  # full-clock work
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(DEVICE_CLASSES)), st.floats(20.0, 60.0), runs)
def test_compiled_thermal_runs_equal_the_python_ones(name, start_c, schedule):
    """Heat, wall time and joules of a sequence of runs, from any temperature (throttled,
    floored or cool), are equal in both modes."""
    cls = DEVICE_CLASSES[name]
    python = DeviceThermal(cls, start_c, compiled=False)
    compiled = DeviceThermal(cls, start_c, compiled=True)
    assert not python.compiled and compiled.compiled
    fused = DeviceThermal(cls, start_c, compiled=True)  # idle and run in one kernel call
    for idle_s, work_s in schedule:
        python.idle(idle_s)
        compiled.idle(idle_s)
        expected = python.run(work_s)
        assert compiled.run(work_s) == expected == fused.idle_then_run(idle_s, work_s)
        assert compiled.temp_c == python.temp_c == fused.temp_c


radio_ops = st.lists(
    st.tuples(
        st.sampled_from(["keep", "transfer", "state", "wake_delay", "energy", "idle_from", "edge"]),
        st.floats(0.0, 15.0) | st.sampled_from([0.0, 0.26, 10.12]),  # later than the last op
        st.floats(0.0, 5.0) | st.just(0.0),  # duration
        st.floats(0.0, 50.0),  # Mbps
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(RADIOS)), radio_ops)
def test_bank_radios_equal_python_radios(name, ops):
    """Transfers, token streams, state queries and settlements in any order: every result and
    the energy and promotions after each are equal (another radio shares the bank)."""
    params = RADIOS[name]
    python = Radio(params)
    bank = RadioBank([RADIOS["wifi"], params])
    compiled = bank.radio(1)
    now = 0.0
    for op, gap, duration, mbps in ops:
        now += gap
        if op == "edge":  # exactly at the end of the tail (or of the promotion): a boundary
            edge = python.idle_from() if gap > 5.0 else python._promo_end
            now = max(now - gap, edge)
        results = []
        for radio in (python, compiled):
            if op == "keep":
                results.append(radio.keep_connected(now, duration))
            elif op == "transfer":
                results.append(radio.transfer(now, duration, mbps, mbps / 3.0))
            elif op in ("state", "edge"):
                results.append((radio.state(now), radio.state_index(now)))
            elif op == "wake_delay":
                results.append(radio.wake_delay(now))
            elif op == "energy":
                results.append(radio.energy_until(now))
            else:
                results.append(radio.idle_from())
            results.append((radio.energy_j, radio.promotions))
        assert results[:2] == results[2:]
    assert bank.radio(0).energy_until(now) == Radio(RADIOS["wifi"]).energy_until(now)


def _episode(compiled: bool, n_devices: int, steps: int) -> tuple[list[Any], EdgeCellEnv]:
    env = EdgeCellEnv(n_devices=n_devices, episode_requests=steps)
    obs, info = env.reset(seed=n_devices)
    rng = np.random.default_rng(n_devices)
    rows: list[Any] = [obs.tobytes(), info]
    for _ in range(steps):
        action = int(rng.choice(np.flatnonzero(env.action_masks())))
        obs, reward, _, _, info = env.step(action)
        rows.append((obs.tobytes(), float(reward).hex(), info))
    sim = env.sim
    rows.append([(d.radio.energy_j, d.radio.promotions, d.temp_c()) for d in sim.devices])
    rows.append((sim.ledger.latency_cost, sim.ledger.other_cost, sim.joules.other_cost))
    return rows, env


@pytest.mark.parametrize("n_devices", [3, 32, 128])  # 128: many streams at once, out of order
def test_cells_play_the_same_episodes_with_every_piece_compiled_or_none(monkeypatch, n_devices):
    """The whole simulator, Python (compiled_decode.AVAILABLE False: edge, thermal, ledger and
    radios) against compiled (the bank's token streams and settlement included)."""
    with monkeypatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference, ref_env = _episode(False, n_devices, 200)
    assert ref_env.sim._bank is None and type(ref_env.sim.ledger) is CostLedger
    compiled, env = _episode(True, n_devices, 200)
    sim = env.sim
    assert sim._bank is not None and isinstance(sim.devices[0].radio, BankRadio)
    assert isinstance(sim.ledger, CompiledCostLedger) and sim.devices[0].thermal.compiled
    assert sim.edge.compiled and sim._streaming is not None
    assert reference == compiled


def test_a_deep_copy_of_a_compiled_simulator_is_its_own():
    """The cell oracle forks the simulator with copy.deepcopy: the fork's radios share the
    fork's bank (one memo), and running the fork leaves the parent's arrays as they were."""
    sim = played(EdgeCellEnv(n_devices=8, episode_requests=40), seed=3, steps=20).sim
    assert sim._bank is not None
    table, awake = sim._bank.table.copy(), sim._bank.awake.copy()
    streams, n_streams = sim._bank.streams.copy(), sim._bank.n_streams
    streaming = dict(sim._streaming or {})
    fork = copy.deepcopy(sim)
    assert fork._bank is not sim._bank and fork.devices[0].radio.bank is fork._bank
    for i in range(20, 30):
        fork.dispatch(i, fork.L + 1 if i % 2 else 0, False)  # cloud, edge: radios wake
        fork.advance(fork.requests[i + 1].arrival_s)
    assert not np.array_equal(fork._bank.table, table)
    assert np.array_equal(sim._bank.table, table) and np.array_equal(sim._bank.awake, awake)
    # the token streams (rows and the simulator's index of them) are the fork's own too
    assert (fork._streaming, fork._bank.n_streams) != (streaming, n_streams)
    assert sim._streaming == streaming and sim._bank.n_streams == n_streams
    assert np.array_equal(sim._bank.streams, streams)


@pytest.mark.parametrize("kernels", ["devices", "ledger"])
def test_kernels_that_fail_to_compile_leave_a_python_cell(monkeypatch, kernels):
    """numba raising at the first load of the phones' or the ledger's kernels: a warning, then
    the whole cell in Python for the rest of the process (edge, heat, radios, ledgers), with
    the Python cell's episode."""
    reference, _ = _cell_rows_in_python(monkeypatch)

    def broken() -> Any:
        raise cd.COMPILE_ERRORS[-1]("no LLVM target for this CPU")

    monkeypatch.setattr(cd, kernels, broken)
    monkeypatch.setattr(cd, "AVAILABLE", True)
    with pytest.warns(RuntimeWarning, match="no LLVM target"):
        rows, env = _episode(True, 8, 60)
    sim = env.sim
    assert not cd.AVAILABLE and sim._bank is None and not sim.edge.compiled
    assert type(sim.ledger) is CostLedger and not sim.devices[0].thermal.compiled
    assert rows == reference


def _cell_rows_in_python(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], EdgeCellEnv]:
    with monkeypatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        return _episode(False, 8, 60)


def test_streams_wake_their_radios_in_request_order_whatever_their_rows():
    """Streams start in first-token order and rows move when one ends; the kernel still visits
    them by request (as ``_stream_tokens`` visits ``_at_edge``): asleep radios wake, and join
    the settling order, in request order. A stream whose first token comes after ``t`` waits."""
    params = next(iter(RADIOS.values()))
    bank = RadioBank([params] * 4)
    gone = bank.add_stream(9, 3, 0.5)
    assert [bank.add_stream(r, j, 0.5) for r, j in ((5, 2), (1, 0), (3, 1))] == [1, 2, 3]
    assert bank.drop_stream(gone) == 3  # the last row (request 3) moves into row 0
    bank.add_stream(7, 3, 9.0)  # its first token reaches the device after t
    bank.stream_and_settle(2.0, 1.0)
    assert bank.n_streams == 4
    assert bank.awake[: bank.awake[0] + 1].tolist() == [3, 0, 1, 2]


@st.composite
def uploads(draw: st.DrawFn) -> tuple[Trace, float, list[tuple[float, float]], bool]:
    """A trace with outages (zero steps), a device offset, uploads ``(gap, bytes)``, and
    whether the radio promotes (without: uploads start exactly on the trace's edges)."""
    rates = draw(
        st.lists(st.sampled_from([0.0, 0.0, 0.5]) | st.floats(0.01, 300.0), min_size=1, max_size=30)
    )
    if not any(rates):
        rates[0] = 1.0
    trace = Trace("t", "lte", "test", draw(st.sampled_from([0.1, 0.25, 1.0])), rates)
    period, total = trace.duration_s, trace.total_bytes
    # offsets and sizes on the trace's edges too: cycle starts, whole cycles, the bytes up to
    # a step's end (then an outage's flat stretch follows, where the rounding slack decides)
    offset = draw(st.floats(0.0, 3.0 * period) | st.sampled_from([0.0, period]))
    edges = [float(c) for c in trace.cum_bytes[1:]] + [total, 2.0 * total]
    ops = draw(
        st.lists(
            st.tuples(
                st.floats(0.0, 20.0) | st.sampled_from([0.0, 1e-3, period]),
                st.floats(1.0, 5e7) | st.sampled_from(edges),
            ),
            min_size=1,
            max_size=12,
        )
    )
    return trace, offset, ops, draw(st.booleans())


def _device(link: LinkModel, offset: float, promotes: bool) -> Device:
    radio = next(iter(RADIOS.values()))
    return Device(
        0, 0, next(iter(DEVICE_CLASSES.values())),
        radio if promotes else dataclasses.replace(radio, promo_s=0.0, tail_s=0.0), link,
        offset, thermal=False, noise_sd=0.1, rng=np.random.default_rng(7),
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(uploads())
def test_compiled_upload_is_the_devices_bit_for_bit(case):
    """``Device.upload`` with a bank radio (one kernel: wake delay, ``Trace.finish_time``, the
    transfer) gives the Python device's first and last byte, samples and radio, with ``==``;
    the trace read-only (as recorded) or a writable copy (a forked simulator's)."""
    trace, offset, ops, promotes = case
    link = LinkModel(trace, trace, 0.02, 0.03, 1e9)
    python, compiled, forked = (_device(link, offset, promotes) for _ in range(3))
    compiled.radio = RadioBank([compiled.radio.params]).radio(0)
    forked = copy.deepcopy(forked)
    forked.radio = RadioBank([forked.radio.params]).radio(0)
    t = 0.0
    for gap, nbytes in ops:
        t += gap
        expected = python.upload(t, nbytes)
        assert compiled.upload(t, nbytes) == expected == forked.upload(t, nbytes)
    assert compiled.sample_t == python.sample_t == forked.sample_t
    assert compiled.sample_mbps == python.sample_mbps == forked.sample_mbps
    for device in (compiled, forked):
        assert device.radio.energy_j == python.radio.energy_j
        assert device.radio.promotions == python.radio.promotions
