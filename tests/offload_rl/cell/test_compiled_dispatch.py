"""The compiled edge placement computes, bit for bit, what ``CellSimulator._run_edge`` does.

:mod:`offload_rl.cell.compiled_dispatch` repeats the device profile's cost arithmetic, the
device's compute FIFO and clock and the link's capacity on flat tables; each piece is compared
with ``==`` against its Python reference on random inputs, and whole cells with the compiled
placement against cells whose placements run ``_run_edge`` (compiled pieces, and all Python).
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import heapq
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode as cd
from offload_rl.cell import flat_dispatch
from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.cell.device import Device
from offload_rl.cell.edge_server import EdgeRequest, EdgeServer
from offload_rl.cell.ledger_table import LedgerTable
from offload_rl.cell.radio import RADIOS
from offload_rl.cell.sequence_table import KEPT_BYTES, N_KEPT, N_SUBS, SequenceTable
from offload_rl.cell.simulator import CellRequest, CellSimulator
from offload_rl.cell.thermal import DEVICE_CLASSES
from offload_rl.compiled_profile import CompiledProfile
from offload_rl.cost_model import EnergyModel, LinkModel, _device_cost
from offload_rl.model_shapes import get_arch
from offload_rl.reward import slo_violated_times
from offload_rl.roofline import get_hardware
from offload_rl.traces import _SNAP_REL, BYTES_PER_MBIT, Trace
from tests.envs.env_contracts import played

EDGE_COST = BatchRoofline.from_arch(get_arch("qwen2.5-0.5b"), get_hardware("l4"))

pytestmark = pytest.mark.skipif(
    not cd.AVAILABLE,
    reason="numba is not installed (the `fast` extra) or OFFLOAD_RL_COMPILED=0",
)


def _prefix(values: list[float]) -> tuple[float, ...]:
    out = [0.0]
    for v in values:
        out.append(out[-1] + v)
    return tuple(out)


@st.composite
def profiles(draw: st.DrawFn) -> CompiledProfile:
    """A device profile with random per-layer fits (the prefix sums as CompiledProfile's)."""
    n = draw(st.integers(1, 8))
    fit = st.floats(0.0, 1e-2)
    layer = st.lists(fit, min_size=n, max_size=n)
    return CompiledProfile(
        name="random", n_layers=n,
        prefill_c0=_prefix(draw(layer)), prefill_c1=_prefix(draw(layer)),
        prefill_c2=_prefix([x * 1e-4 for x in draw(layer)]),
        decode_c0=_prefix(draw(layer)), decode_c1=_prefix([x * 1e-3 for x in draw(layer)]),
        kv_bytes_per_token=tuple(range(n + 1)), weight_bytes=tuple(range(n + 1)),
        activation_bytes_per_token=tuple(draw(st.lists(st.integers(0, 20000), min_size=n + 1,
                                                       max_size=n + 1))),
        embed_prefill=(draw(fit), draw(fit), draw(fit) * 1e-4),
        embed_decode=(draw(fit), draw(fit) * 1e-4),
        head_prefill=(0.0, 0.0, 0.0), head_decode=(0.0, 0.0),
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(profiles(), st.data())
def test_profile_arithmetic_equals_the_profiles(profile, data):
    """A split's prefill work and one decode token's work, from the flat table, equal the
    profile's methods as ``_run_edge`` combines them."""
    K = flat_dispatch.kernels()
    table = flat_dispatch.profile_table(profile)
    k = data.draw(st.integers(1, profile.n_layers))
    prefill = data.draw(st.integers(0, 8000))
    cached = data.draw(st.integers(0, 8000))
    expected = profile.embed_prefill_s(prefill) + profile.layers_prefill_s(0, k, prefill, cached)
    assert K.prefill_work(table, k, prefill, cached) == expected
    total = data.draw(st.integers(1, 20000))
    e0, e1 = profile.embed_decode
    assert K.token_work(table, k, total) == (
        profile.layers_decode_s(0, k, 1, total) + e0 + (e1 * total)
    )
    assert table[flat_dispatch.ACT, k] == profile.activation_bytes_per_token[k]


@settings(max_examples=200, deadline=None)
@given(profiles(), st.data())
def test_device_cost_equals_the_cost_models(profile, data):
    """The device tier's TTFT and latency (TTFT + decode) from the flat table (LM head
    included) equal ``request_cost``'s device-tier cost (``cost_model._device_cost``)."""
    K = flat_dispatch.kernels()
    fit = st.floats(0.0, 1e-2)
    head = (data.draw(fit), data.draw(fit), data.draw(fit) * 1e-4)
    profile = dataclasses.replace(
        profile, head_prefill=head, head_decode=(data.draw(fit), data.draw(fit) * 1e-4)
    )
    table = flat_dispatch.profile_table(profile)
    total = data.draw(st.integers(0, 20000))
    cached = data.draw(st.integers(0, total))
    n_decode = data.draw(st.integers(0, 2000))
    n_layers = data.draw(st.sampled_from([profile.n_layers, 0]))
    cost = _device_cost(profile, n_layers, total - cached, cached, n_decode, total, EnergyModel())
    ttft, decode = K.device_cost(table, n_layers, total - cached, cached, n_decode, total)
    assert (ttft, ttft + decode) == (cost.ttft_s, cost.latency_s)


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.0, 10.0), st.floats(0.0, 100.0), st.integers(0, 300), st.floats(0.0, 5.0),
    st.floats(0.0, 0.5),
)  # fmt: skip
def test_slo_test_equals_the_rewards(ttft, latency, out, slo_ttft, slo_tpot):
    """The kernel's SLO test is ``reward.slo_violated_times``."""
    K = flat_dispatch.kernels()
    expected = slo_violated_times(ttft, latency, out, slo_ttft, slo_tpot)
    assert K.slo_violated(ttft, latency, out, slo_ttft, slo_tpot) == expected


@settings(max_examples=200, deadline=None)
@example([1.0] * 16 + [2.0], 0.1, [])  # just before the period's end x / step rounds up to 17
@given(
    st.lists(st.floats(0.0, 300.0), min_size=1, max_size=20),
    st.sampled_from([0.1, 0.25, 1.0]),
    st.lists(st.floats(0.0, 1e5) | st.sampled_from([0.0, 0.1, 1.0, 2.0]), max_size=20),
)
def test_capacity_equals_the_traces(rates, step, times):
    """``Trace.capacity_mbps`` on the trace's arrays, at any time (cycles, the period's end)."""
    if not any(rates):
        rates[0] = 1.0
    trace = Trace("t", "lte", "test", step, np.array(rates))
    K = flat_dispatch.kernels()
    period = trace.duration_s
    for t in [*times, period, 3.0 * period, float(np.nextafter(period, 0.0))]:
        expected = trace.capacity_mbps(t)
        assert K.capacity_mbps(trace.mbps, trace.step_s, trace.duration_s, t) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.0, 1.0, 5.0]) | st.floats(0.0, 300.0), min_size=1,
             max_size=40),
    st.data(),
)  # fmt: skip
def test_leftmost_equals_bisect_left(rates, data):
    """The search outward from a hint finds ``bisect_left``'s index on any cumulative trace
    (flat stretches of equal values included), whatever the hint."""
    K = cd.devices()
    cum = np.concatenate([[0.0], np.cumsum(rates)])
    hint = data.draw(st.integers(-3, cum.size + 3))
    target = data.draw(st.sampled_from([*cum.tolist(), -1.0]) | st.floats(-1.0, cum[-1] + 5.0))
    assert K.leftmost(cum, target, hint) == bisect.bisect_left(cum.tolist(), target)


@settings(max_examples=300, deadline=None)
@example([0.0, 0.0, 4.0, 0.0], 0.5, [(0.0, 1.0), (0.75, 4.0 * 125000 * 0.5), (2.0, 1e6)])
@given(
    st.lists(st.sampled_from([0.0, 0.5, 20.0]) | st.floats(1e-3, 300.0), min_size=1,
             max_size=30),
    st.sampled_from([0.1, 0.25, 1.0]),
    st.lists(st.tuples(st.floats(0.0, 1e4), st.floats(1e-3, 1e8) | st.sampled_from([1.0, 1e6])),
             min_size=1, max_size=10),
)  # fmt: skip
def test_finish_time_equals_the_traces(rates, step, sends):
    """The devices' kernel's finish time of an upload (its search from the start sample)
    equals ``Trace.finish_time``: across outages, wraps and several periods (rates of at least
    1 kbit/s: a finish more than 2**63 periods away overflows the kernel's int64 period count,
    which Python's integers do not)."""
    if not any(rates):
        rates[0] = 1.0
    trace = Trace("t", "lte", "test", step, np.array(rates))
    K = cd.devices()
    for t0, nbytes in sends:
        got = K.finish_time(
            trace.cum_bytes, trace.mbps, float(BYTES_PER_MBIT), trace.step_s, trace._period,
            trace._total, _SNAP_REL, t0, nbytes,
        )  # fmt: skip
        assert got == trace.finish_time(t0, nbytes)


def _device(name: str, thermal: bool) -> Device:
    trace = Trace("t", "lte", "test", 1.0, np.array([5.0, 20.0]))
    return Device(
        0, 0, DEVICE_CLASSES[name], next(iter(RADIOS.values())),
        LinkModel(trace, trace, 0.02, 0.03, 1e9), 0.5, thermal=thermal, noise_sd=0.1,
        rng=np.random.default_rng(1),
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(DEVICE_CLASSES)),
    st.booleans(),
    st.lists(
        st.tuples(
            st.floats(0.0, 60.0),  # gap before the call
            st.one_of(st.just(0.0), st.floats(-1.0, 0.0), st.floats(1e-9, 300.0)),  # work
            st.booleans(),  # compute, or read the clock
        ),
        min_size=1,
        max_size=15,
    ),
)
def test_compute_and_clock_equal_the_devices(name, thermal, ops):
    """The compute FIFO with heat (queued work, no work, cooling) and the clock, on the
    device table's row, equal ``Device.compute`` and ``Device.clock``."""
    K = flat_dispatch.kernels()
    device = _device(name, thermal)
    table = flat_dispatch.device_table([device])
    temp, thermal_t, busy = device.thermal.temp_c, device._thermal_t, device.busy_until
    t = 0.0
    for gap, work, computes in ops:
        t += gap
        if computes:
            start, end, joules, temp, thermal_t, busy = K.compute(
                table, 0, temp, thermal_t, busy, t, work
            )
            assert (start, end, joules) == device.compute(t, work)
        else:
            f, temp, thermal_t = K.clock(table, 0, temp, thermal_t, t)
            assert f == device.clock(t)
        assert (temp, thermal_t, busy) == (
            device.thermal.temp_c, device._thermal_t, device.busy_until
        )  # fmt: skip


def _episode(
    n_devices: int,
    steps: int,
    seed: int,
    moves: bool = False,
    relinks: bool = False,
    local: float = 0.0,
    cloud: float = 0.0,
) -> tuple[list[Any], EdgeCellEnv]:
    """An episode's observations, rewards, infos and final device/ledger state; ``moves``:
    each placement's device moves along its trace first (as ``validation/cell_replay``'s
    closed loop moves it, between decisions of one episode); ``relinks``: each placement's
    device takes the next device's link first (as the replay links its devices); ``local``:
    the share of decisions that pick the device tier where the mask allows it; ``cloud``: the
    cloud's share."""
    env = EdgeCellEnv(n_devices=n_devices, episode_requests=steps)
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rows: list[Any] = [obs.tobytes(), info]
    sim = env.sim
    placed = sim.dispatch

    def dispatch(i: int, tier_index: int, keep: bool) -> CellRequest:
        """Each placement's figures: a last-bit change may not surface in the episode."""
        d = sim.devices[sim.device_of[i]]
        if moves:
            d.offset_s += 7.3
        if relinks:
            other = sim.devices[(d.index + 1) % len(sim.devices)]
            d.link, d.uplink = other.link, other.uplink
        cr = placed(i, tier_index, keep)
        er = cr.edge
        rows.append((cr.prefill_tokens, cr.upload_bytes, er and (er.arrival_s, er.round_trip_s)))
        return cr

    sim.dispatch = dispatch  # type: ignore[method-assign]
    L = sim.L
    for _ in range(steps):
        valid = np.flatnonzero(env.action_masks())
        action = int(rng.choice(valid))
        u = rng.random()
        tier = L if u < local else L + 1 if u < local + cloud else -1
        if (valid >> 1 == tier).any():
            action = int(rng.choice(valid[valid >> 1 == tier]))
        obs, reward, _, _, info = env.step(action)
        rows.append((obs.tobytes(), float(reward).hex(), info))
    rows.append(
        [
            (d.radio.energy_j, d.temp_c(), d.busy_until, d.sample_t, d.sample_mbps)
            for d in sim.devices
        ]
    )
    rows.append((sim.ledger.latency_cost, sim.ledger.other_cost, sim.joules.other_cost))
    return rows, env


@pytest.mark.parametrize(
    ("n_devices", "seed", "moves", "relinks", "local", "cloud"),
    [(3, 0, False, False, 0.0, 0.0), (32, 1, False, False, 0.0, 0.0),
     (128, 2, False, False, 0.0, 0.0), (8, 3, True, False, 0.0, 0.0),
     (8, 6, False, True, 0.0, 0.0), (4, 7, False, False, 0.8, 0.0),
     (16, 8, False, False, 0.3, 0.0), (6, 9, False, False, 0.0, 0.5),
     (8, 10, True, True, 0.2, 0.3)],
)  # fmt: skip
def test_cells_with_the_compiled_placement_play_the_reference_episodes(
    monkeypatch, n_devices, seed, moves, relinks, local, cloud
):
    """The whole cell with the compiled edge placement against ``_run_edge`` with every other
    piece compiled, and against the all-Python cell (heat, uploads, samples, ledgers)."""
    calls: dict[str, list[int]] = {
        "_run_edge_flat": [], "_run_local_flat": [], "_run_cloud_flat": []
    }  # fmt: skip

    def counted(name: str) -> Any:
        flat = getattr(CellSimulator, name)

        def placed(self: CellSimulator, *args: Any) -> CellRequest:
            calls[name].append(args[1])
            return flat(self, *args)

        return placed

    with monkeypatch.context() as m:
        for name in calls:
            m.setattr(CellSimulator, name, counted(name))
        compiled, _ = _episode(n_devices, 150, seed, moves, relinks, local, cloud)
    # most random valid placements are edge or split ones; some go to the device, the cloud
    assert len(calls["_run_edge_flat"]) > (40 if local or cloud else 100)
    assert len(calls["_run_local_flat"]) > (10 if local else 0)
    assert len(calls["_run_cloud_flat"]) > (20 if cloud else 0)
    with monkeypatch.context() as m:
        m.setattr(CellSimulator, "_flat_edge", lambda self: None)
        pieces, _ = _episode(n_devices, 150, seed, moves, relinks, local, cloud)
    with monkeypatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        python, env = _episode(n_devices, 150, seed, moves, relinks, local, cloud)
    assert env.sim._flat_edge() is None
    assert compiled == pieces == python


def test_a_fork_has_its_own_tables_and_plays_as_its_parent():
    """The cell oracle deep-copies the simulator: the fork's tables serve the fork's devices,
    and both go on to place the same requests the same way."""
    sim = played(EdgeCellEnv(n_devices=8, episode_requests=60), seed=4, steps=20).sim
    fork = copy.deepcopy(sim)
    tables = fork._flat_edge()
    assert tables is not None and tables is not sim._flat_edge()
    assert tables.serves(fork.devices, fork.requests)
    assert not tables.serves(sim.devices, sim.requests)
    outcomes: list[Any] = []
    for cell in (sim, fork):
        for i in range(20, 30):
            er = cell.dispatch(i, i % cell.L, i % 3 == 0).edge
            cell.advance(cell.requests[i + 1].arrival_s)
            assert er is not None
            outcomes.append((er.arrival_s, er.round_trip_s))
        outcomes.append((cell.ledger.collect(cell._t), [d.temp_c() for d in cell.devices]))
    assert outcomes[:11] == outcomes[11:]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 5000), st.integers(0, 10**9),
                  st.integers(-1, 50)),
        min_size=1, max_size=6,
    ),
    st.integers(-1, 8),  # the session asked for (beyond the table: never seen)
    st.integers(0, 6),  # the split asked for
)  # fmt: skip
def test_take_kept_equals_the_sequence_tables(entries, session, split):
    """The kernel's kept-entry look-up (the tokens kept at this split, or an entry of another
    split dropped) returns and writes what ``SequenceTable.take_kept`` does."""
    K = flat_dispatch.kernels()
    table = SequenceTable(10**12, 512, 8)
    for sid, (k, tokens, nbytes, stamp) in enumerate(entries):
        row = table.session_index(sid)
        table.kept[row] = (k, tokens, nbytes, stamp)
        if stamp >= 0:
            table.gi[N_KEPT] += 1
            table.gi[KEPT_BYTES] += nbytes
    twin = copy.deepcopy(table)
    expected = table.take_kept(session, split)
    row = twin._session_index.get(session, -1)
    assert K.take_kept(twin.kept, twin.gi, row, split) == expected
    assert np.array_equal(twin.kept, table.kept) and np.array_equal(twin.gi, table.gi)


def test_a_full_ledger_grows_before_the_kernel_writes():
    """The kernel leaves full tables untouched and says so (NaN); ``make_room`` then gives
    room for a call and the room the reference keeps after it."""
    K = flat_dispatch.kernels()
    a = LedgerTable(heap_rows=4, lumps=3, keys=2)
    assert not K.has_room(a.heap, a.gi, a.lumps)
    a.make_room(5, flat_dispatch.ROOM_HEAP, flat_dispatch.ROOM_LUMPS)
    assert K.has_room(a.heap, a.gi, a.lumps) and a.opened.shape[0] > 5


def test_a_placement_kernel_that_fails_to_compile_leaves_the_python_placement(monkeypatch):
    """numba raising at the first load of the placement kernel: a warning, the episode's
    placements in Python (its other compiled pieces as they are), the reference's episode."""
    with monkeypatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference, _ = _episode(8, 60, 5)

    def broken() -> Any:
        raise cd.COMPILE_ERRORS[-1]("no LLVM target for this CPU")

    monkeypatch.setattr(flat_dispatch, "kernels", broken)
    monkeypatch.setattr(cd, "AVAILABLE", True)
    with pytest.warns(RuntimeWarning, match="no LLVM target"):
        rows, env = _episode(8, 60, 5)
    assert env.sim._flat_edge() is None and not cd.AVAILABLE
    assert rows == reference


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.5, 1.0, 1.25]) | st.floats(0.0, 3.0),  # arrival at the edge
            st.integers(0, 7), st.integers(0, 3000), st.integers(1, 500), st.integers(1, 300),
            st.booleans(), st.floats(0.0, 0.2), st.integers(0, 5),
        ),
        min_size=1, max_size=40,
    ),
)  # fmt: skip
def test_a_placed_submission_is_the_schedules_row_in_the_heaps_order(placements):
    """The placement kernel's ``schedule_row`` writes the row ``EdgeServer.schedule`` would
    (``_arrive``'s fields, ``SequenceTable.stage``'s columns, the cell facts) in the row taken
    the same way (reused rows: every column written), and its submissions come out in the
    order the simulator's heap of ``(arrival, request id)`` popped them (equal times: placed
    first, first)."""
    K = flat_dispatch.kernels()
    kernel, reference = SequenceTable(10**12, 512, 8), SequenceTable(10**12, 512, 8)
    for table in (kernel, reference):
        table.ints[:] = 99  # rows as a finished request leaves them: every column is written
        table.floats[:] = 99.0
    server = EdgeServer(EDGE_COST, 10**12, compiled=False)  # _arrive's fields
    heap: list[tuple[float, int, int]] = []
    for rid, (arrive, k, ctx, new, out, keep, rtt, device) in enumerate(placements):
        cell = (device, arrive / 2, 0.5 + rtt, rtt / 10)
        er = EdgeRequest(rid, rid % 5, k, arrive, ctx, new, out, keep, rtt)
        server._arrive(er, arrive)
        j = reference.stage(er, cell)
        heapq.heappush(heap, (arrive, rid, j))
        row = kernel.take_row()
        assert row == j
        session = kernel.session_index(rid % 5)
        K.schedule_row(
            kernel.ints, kernel.floats, kernel.gi, kernel.subs, kernel.sub_t, row, rid, device,
            session, k, ctx + new, out, keep, server._kv_bytes[k], rtt, arrive, *cell[1:],
        )  # fmt: skip
    assert kernel.ints.tobytes() == reference.ints.tobytes()
    assert kernel.floats.tobytes() == reference.floats.tobytes()
    popped = [heapq.heappop(heap) for _ in range(len(heap))]
    n = int(kernel.gi[N_SUBS])
    assert n == len(placements)
    assert kernel.subs[:n].tolist() == [j for _, _, j in popped]
    assert kernel.sub_t[:n].tolist() == [t for t, _, _ in popped]


def test_placements_past_the_tables_rows_grow_it_and_play_the_reference(monkeypatch):
    """A cell whose placements find no free row (the table grows at the placement, its
    scheduled submissions kept) plays the reference's episode: every outcome, and the objects
    of the requests still in flight (those not at the edge yet as the reference leaves them)."""
    from tests.offload_rl.cell.test_cell_advance import _env, _play

    with monkeypatch.context() as m:
        m.setattr(cd, "AVAILABLE", False)
        reference, _ = _play(_env(32, 3000, 120), 3, 120, "split")
    grown: list[int] = []
    take_row = SequenceTable.take_row

    def counted(self: SequenceTable) -> int:
        if not self._free:
            grown.append(int(self.gi[N_SUBS]))
        return take_row(self)

    monkeypatch.setattr(SequenceTable, "take_row", counted)
    compiled, env = _play(_env(32, 3000, 120), 3, 120, "fused")
    assert compiled == reference
    assert grown and max(grown) > 0  # grown at a placement, with submissions scheduled
    assert any(cr.edge is not None and cr.edge.known == 0 for cr in env.sim.in_flight())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("new_tokens", 0, "needs >= 1 new"), ("output_tokens", 0, "needs >= 1 new"),
     ("context_tokens", -1, "needs >= 1 new")],
)  # fmt: skip
def test_a_request_the_edge_refuses_raises_at_its_placement(field, value, message):
    """``EdgeServer._check``'s error, raised by the compiled placement before anything
    changes (the reference raises it at the advance that submits the request)."""
    env = played(EdgeCellEnv(n_devices=8, episode_requests=60), seed=4, steps=20)
    sim = env.sim
    i = env._i
    sim.requests[i] = dataclasses.replace(sim.requests[i], **{field: value})
    seq = sim.edge._table
    before = (sim.ledger.n_open, len(seq._free), int(seq.gi[N_SUBS]), seq.ints.tobytes())
    with pytest.raises(ValueError, match=message):
        sim.dispatch(i, 1, False)
    after = (sim.ledger.n_open, len(seq._free), int(seq.gi[N_SUBS]), seq.ints.tobytes())
    assert after == before and i not in sim._at_edge


def test_the_edge_placement_is_called_past_the_dispatcher():
    """After an episode's first edge placement its kernel is called through its one
    specialization's entry point; the traces it takes are read-only views of the uplinks'
    arrays, in a deep copy too (whose first placement goes through the dispatcher again)."""
    sim = played(EdgeCellEnv(n_devices=8, episode_requests=60), seed=4, steps=20).sim
    tables = sim._flat_edge()
    assert tables is not None and tables.pinned
    dispatcher = flat_dispatch.kernels().place_edge
    assert len(dispatcher.overloads) == 1 and tables.place is not dispatcher  # its entry point
    fork = copy.deepcopy(sim)
    forked = fork._flat_edge()
    assert forked is not None and not forked.pinned and forked.place is dispatcher
    for table, cell in ((tables, sim), (forked, fork)):
        for (cum, rates), d in zip(table.traces, cell.devices, strict=True):
            assert not cum.flags.writeable and not rates.flags.writeable
            assert np.shares_memory(cum, d.uplink.cum_bytes)
            assert np.shares_memory(rates, d.uplink.mbps)
    er = fork.dispatch(20, 1, False).edge
    assert forked.pinned and er is not None
