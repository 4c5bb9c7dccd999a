"""A decision's placement in machine code (numba): one kernel call per decision.

``CellSimulator.dispatch`` with ``_run_edge`` (the kept-entry look-up, ``ledger.open`` and
``_wake`` included) is the reference of :func:`place_edge`; with ``_run_local`` and
``_complete`` of :func:`place_local` (the device tier), with ``_run_cloud`` and ``_complete`` of
:func:`place_cloud`. Under random valid actions ~95% of decisions are edge or split ones, and
in Python each is ~15 method calls (two throttled computes, two energy spreads, the upload, the
link's capacity, the clock) of a few float operations each: the calls cost more than the
arithmetic. The kernels perform the same operations in the same order (IEEE doubles, no
fast-math; ``min``/``max`` as conditionals that pick the operand Python's would) on the arrays
the compiled pieces already keep (the radio bank, both ledgers' tables, the sequence table's
kept entries) and the flat tables of :mod:`offload_rl.cell.flat_dispatch` (the device tier's and
the cloud's profiles, the devices' and the cell's constants). The heat state is read and
written in the device's row of the cell's heat array (the :class:`~offload_rl.cell.device.Device`
reads its attributes from there); the throughput
sample's noise draw stays with the device (its generator), after the call; the Python objects
users read (``CellRequest``, ``EdgeRequest``) are made by the simulator around the call.

Importing this module imports numba; the simulator imports it only in compiled mode.
"""

from __future__ import annotations

import math

import numpy as np

from offload_rl.cell import sequence_table as tab
from offload_rl.cell.compiled_devices import (
    _clock,
    finish_time,
    radio_state,
    thermal_run,
    transfer,
    upload,
    wake,
    wake_delay,
)
from offload_rl.cell.compiled_ledger import charge, close_request, open_request, spread_pair
from offload_rl.cell.device import SAMPLE_SLOTS, sample_storage
from offload_rl.cell.flat_dispatch import (
    ACT,
    C_AMBIENT,
    C_BYTES_PER_PERIOD,
    C_COMPUTE_W,
    C_FLOOR,
    C_MIN_CLOCK,
    C_PERIOD,
    C_R,
    C_RTT,
    C_STEP,
    C_TAU,
    C_THERMAL_ON,
    C_THROTTLE,
    C_W_COST,
    C_W_ENERGY,
    C_W_LATENCY,
    C_W_SLO,
    D_C0,
    D_C1,
    EMBED,
    EMBED_DECODE,
    EMBED_PREFILL,
    HEAD,
    N_DEVICE_COLUMNS,
    P_C0,
    P_C1,
    P_C2,
    ROOM_LATENCY,
    ROOM_LUMPS,
    ROOM_SPREADS,
)
from offload_rl.cell.kernel_jit import hot, jit
from offload_rl.cell.ledger_table import LATENCY, N_HEAP, N_LUMPS, SPREADS
from offload_rl.cell.sequence_table import (
    K_BYTES,
    K_SPLIT,
    K_STAMP,
    K_TOKENS,
    KEPT_BYTES,
    N_GLOBAL_INTS,
    N_KEPT,
)
from offload_rl.cell.thermal import H_BUSY, H_TEMP, H_THERMAL_T, heat_storage
from offload_rl.traces import _SNAP_REL as SNAP_REL
from offload_rl.traces import BYTES_PER_MBIT

A = np.ndarray
PER_MBIT = float(BYTES_PER_MBIT)


@jit
def cool(dev: A, j: int, temp: float, thermal_t: float, t: float) -> tuple[float, float]:
    """``Device._cool_to``: (temperature, thermal time)."""
    if dev[j, C_THERMAL_ON] != 0.0 and t > thermal_t:
        amb = dev[j, C_AMBIENT]
        temp = amb + (temp - amb) * math.exp(-(t - thermal_t) / dev[j, C_TAU])
        thermal_t = t
    return temp, thermal_t


@jit
def compute(
    dev: A, j: int, temp: float, thermal_t: float, busy: float, t: float, work_s: float
) -> tuple[float, float, float, float, float, float]:
    """``Device.compute``: (start, end, joules, temperature, thermal time, busy until)."""
    if work_s <= 0:
        temp, thermal_t = cool(dev, j, temp, thermal_t, t)
        return t, t, 0.0, temp, thermal_t, busy
    start = busy if busy > t else t  # max(t, busy_until)
    if dev[j, C_THERMAL_ON] != 0.0:
        idle_s = start - thermal_t if start > thermal_t else 0.0
        temp, wall, joules = thermal_run(
            temp, idle_s, work_s, dev[j, C_COMPUTE_W], dev[j, C_AMBIENT], dev[j, C_R],
            dev[j, C_TAU], dev[j, C_THROTTLE], dev[j, C_FLOOR], dev[j, C_MIN_CLOCK],
        )  # fmt: skip
    else:
        wall, joules = work_s, dev[j, C_COMPUTE_W] * work_s
    busy = thermal_t = start + wall
    return start, start + wall, joules, temp, thermal_t, busy


@jit
def clock(dev: A, j: int, temp: float, thermal_t: float, t: float) -> tuple[float, float, float]:
    """``Device.clock``: (clock factor, temperature, thermal time)."""
    if dev[j, C_THERMAL_ON] == 0.0:
        return 1.0, temp, thermal_t
    temp, thermal_t = cool(dev, j, temp, thermal_t, t)
    f = _clock(temp, dev[j, C_THROTTLE], dev[j, C_FLOOR], dev[j, C_MIN_CLOCK])
    return f, temp, thermal_t


@jit
def prefill_work(prof: A, k: int, prefill: int, cached: int) -> float:
    """``embed_prefill_s(prefill) + layers_prefill_s(0, k, prefill, cached)`` of a profile
    without sliding-window layers (``k > 0``)."""
    a, b, c = prof[EMBED, EMBED_PREFILL], prof[EMBED, EMBED_PREFILL + 1], prof[EMBED, 2]
    embed = a + prefill * (b + prefill * c)
    layers = 0.0
    if prefill > 0:
        c0 = prof[P_C0, k] - prof[P_C0, 0]
        c1 = prof[P_C1, k] - prof[P_C1, 0]
        c2 = prof[P_C2, k] - prof[P_C2, 0]
        layers = c0 + prefill * (c1 + (prefill + 2.0 * cached) * c2)
    return embed + layers


@jit
def token_work(prof: A, k: int, context: int) -> float:
    """``layers_decode_s(0, k, 1, context) + embed_decode[0] + embed_decode[1] * context``
    (``k > 0``): one decode token's device work."""
    n = 1
    c0 = prof[D_C0, k] - prof[D_C0, 0]
    c1 = prof[D_C1, k] - prof[D_C1, 0]
    layers = n * c0 + c1 * (n * context + n * (n - 1) / 2.0)
    return layers + prof[EMBED, EMBED_DECODE] + (prof[EMBED, EMBED_DECODE + 1] * context)


@jit
def capacity_mbps(rates: A, step: float, period: float, t: float) -> float:
    """``Trace.capacity_mbps``."""
    x = t % period
    i = int(x / step)
    return rates[i] if i < rates.shape[0] else rates[rates.shape[0] - 1]


@jit
def has_room(heap: A, gi: A, lumps: A) -> bool:
    """A ledger can take :func:`place_edge`'s rows and keep the reference's spare room."""
    return (
        gi[N_HEAP + LATENCY] + ROOM_LATENCY <= heap.shape[1]
        and gi[N_HEAP + SPREADS] + ROOM_SPREADS <= heap.shape[1]
        and gi[N_LUMPS] + ROOM_LUMPS <= lumps.shape[0]
    )


@jit
def send(
    r: A, j: int, cum: A, rates: A, step: float, period: float, total: float, origin: float,
    t: float, nbytes: float,
) -> tuple[float, float]:  # fmt: skip
    """``Device.upload``'s radio and trace work: (last byte, achieved Mbps; -1: no sample)."""
    if nbytes > 0:
        _, end, mbps = upload(
            r, j, cum, rates, PER_MBIT, step, period, total, SNAP_REL, origin, t, nbytes
        )
        return end, mbps
    start = t + wake_delay(r, j, t)
    transfer(r, j, t, 0.0, 0.0, 0.0)
    return start, -1.0


@jit
def take_kept(kept: A, kgi: A, idx: int, split: int) -> int:
    """``SequenceTable.take_kept`` for the session in row ``idx`` (-1: none): its tokens kept
    at ``split``, else -1 (an entry of another split dropped, as ``TablePool.drop``)."""
    if idx < 0 or kept[idx, K_STAMP] < 0:
        return -1
    if kept[idx, K_SPLIT] == split:
        return kept[idx, K_TOKENS]
    kgi[KEPT_BYTES] -= kept[idx, K_BYTES]
    kgi[N_KEPT] -= 1
    kept[idx, K_STAMP] = -1
    return -1


@jit
def record(
    times: A, values: A, counts: A, j: int, t: float, mbps: float, sd: float, z: float
) -> int:
    """``Device.record(t, mbps)`` into row ``j`` of the cell's samples with the noise's
    standard normal ``z`` already drawn (``sd > 0``: the device drew it); the new count."""
    if sd > 0:
        mbps *= math.exp(sd * z)
    n = counts[j]
    if n == SAMPLE_SLOTS:  # appending the 65th: the oldest 32 go
        half = SAMPLE_SLOTS // 2
        for m in range(half):  # the slices' copy (no allocation: no runtime needed)
            times[j, m] = times[j, half + m]
            values[j, m] = values[j, half + m]
        n = half
    times[j, n] = t
    values[j, n] = mbps
    counts[j] = n + 1
    return n + 1


@hot
def schedule_row(
    ints: A, floats: A, kgi: A, subs: A, sub_t: A, row: int, key: int, j: int, session: int,
    k: int, known: int, out: int, keep: bool, kv_bytes: int, round_trip: float, arrive: float,
    arrival: float, slo_ttft: float, slo_tpot: float,
) -> None:  # fmt: skip
    """``EdgeServer.schedule(er, arrive, (j, arrival, slo_ttft, slo_tpot))`` of a placed
    request (``_arrive``'s fields, ``SequenceTable.stage``'s row ``row``: every column, a
    free row is reused), its submission inserted after those due no later (the simulator's
    heap of ``(arrive, request id)``: ids grow with placements, so an equal time goes
    after). ``subs`` has room: it is as long as the table, and ``row`` is in none of it."""
    ints[row, tab.COMPUTED] = 0
    ints[row, tab.GENERATED] = 0
    ints[row, tab.OUTPUT] = out
    ints[row, tab.KV_BYTES] = kv_bytes
    ints[row, tab.SPLIT] = k
    ints[row, tab.KNOWN] = known
    ints[row, tab.HELD] = 0
    ints[row, tab.SESSION] = session
    ints[row, tab.KEEP] = 1 if keep else 0
    ints[row, tab.PREEMPTIONS] = 0
    ints[row, tab.CACHED] = 0
    ints[row, tab.AT_ADMIT] = 0
    ints[row, tab.STATUS] = tab.ST_WAITING
    ints[row, tab.REQUEST] = key
    ints[row, tab.DEVICE] = j
    floats[row, tab.READY_AT] = 0.0
    floats[row, tab.ROUND_TRIP] = round_trip
    floats[row, tab.FIRST_TOKEN] = -1.0
    floats[row, tab.ADMIT_S] = -1.0
    floats[row, tab.FINISH_S] = -1.0
    floats[row, tab.QUEUED_S] = 0.0
    floats[row, tab.QUEUED_SINCE] = arrive
    floats[row, tab.CELL_ARRIVAL] = arrival
    floats[row, tab.SLO_TTFT] = slo_ttft
    floats[row, tab.SLO_TPOT] = slo_tpot
    n = kgi[tab.N_SUBS]
    m = n
    while m > 0 and sub_t[m - 1] > arrive:
        subs[m] = subs[m - 1]
        sub_t[m] = sub_t[m - 1]
        m -= 1
    subs[m] = row
    sub_t[m] = arrive
    kgi[tab.N_SUBS] = n + 1


@jit
def place_edge(
    r: A, awake: A, levels: A, prof: A, dev: A, heat: A, times: A, values: A, counts: A,
    cum: A, rates: A, heap: A, gi: A, lumps: A, opened: A, heap2: A, gi2: A, lumps2: A,
    kept: A, kgi: A, ints: A, floats: A, subs: A, sub_t: A, j: int, key: int,
    session_row: int, row: int, arrival: float, slo_ttft: float, slo_tpot: float,
    last: float, k: int, ctx: int, new: int, out: int, keep: bool, kv_bytes: int,
    origin: float, sd: float, z: float,
) -> tuple[float, float, float, float, float, int, int, int]:  # fmt: skip
    """``dispatch``'s edge placement of request ``key`` on device ``j`` at split ``k``: the
    session's kept tokens (:func:`take_kept`, row ``session_row`` of the sequence table's
    ``kept``), the latency rate of its SLO, ``ledger.open``, ``_wake`` and ``_run_edge`` over
    its uplink trace (``cum``, ``rates``; its step, period and bytes per period from the device
    table) from its offset ``origin``; the RTT and the reward's weights from the device table's
    cell columns. Then the request's submission to the edge at its arrival there
    (:func:`schedule_row`: row ``row`` of the sequence table, free and claimed by the
    caller, ``kv_bytes`` KV bytes per token, kept when ``keep``), which the reference
    schedules when its advance reaches that arrival: the same row, the same order of
    submissions.
    The device's heat state is read from and written back to its row of ``heat``
    (:func:`~offload_rl.cell.thermal.heat_storage`); the upload's throughput sample is
    written into its row of the samples (:func:`record`) where the caller drew the noise's
    ``z`` (not NaN; it does where a sample is certain, its generator's next draw either
    way). (last byte, the sample's Mbps before its noise (-1: no sample or written here),
    arrival at the edge, round trip, upload bytes, prefill tokens, the row's sample count
    (-1: not written here), the radio's state at ``arrival`` after it (``Radio.state``'s
    index: the step's info reads it, no second call)). Tables without the room
    (:func:`has_room`) are left untouched: the first value is NaN, grow and call again.
    """
    if not (key < opened.shape[0] and has_room(heap, gi, lumps) and has_room(heap2, gi2, lumps2)):
        return math.nan, 0.0, 0.0, 0.0, 0.0, 0, -1, -1
    temp, thermal_t, busy = heat[j, H_TEMP], heat[j, H_THERMAL_T], heat[j, H_BUSY]
    held = take_kept(kept, kgi, session_row, k)
    cached = (held if held < ctx else ctx) if held >= 0 else 0  # min(entry.tokens, ctx)
    total = ctx + new
    prefill = total - cached
    n_decode = out - 1 if out > 1 else 0  # max(output_tokens - 1, 0)
    rate = dev[j, C_W_LATENCY] / (slo_ttft + n_decode * slo_tpot)
    rtt, w_energy = dev[j, C_RTT], dev[j, C_W_ENERGY]
    step, period, bytes_per_period = dev[j, C_STEP], dev[j, C_PERIOD], dev[j, C_BYTES_PER_PERIOD]
    open_request(heap, gi, opened, key, arrival, rate)
    wake(r, awake, levels, j, last)
    work = prefill_work(prof, k, prefill, cached) if k else 0.0
    start, end, joules, temp, thermal_t, busy = compute(
        dev, j, temp, thermal_t, busy, arrival, work
    )
    spread_pair(heap, gi, lumps, heap2, gi2, lumps2, start, end, w_energy * joules, joules)
    nbytes = float(prefill * np.int64(prof[ACT, k]))
    up_end, mbps = send(r, j, cum, rates, step, period, bytes_per_period, origin, end, nbytes)
    arrive = up_end + rtt / 2.0
    round_trip = 0.0
    if k > 0 and n_decode:
        tok_work = token_work(prof, k, total)
        cap = capacity_mbps(rates, step, period, origin + up_end)
        cap = 1e-3 if cap < 1e-3 else cap  # max(capacity, 1e-3)
        up_tok = np.int64(prof[ACT, k]) / (cap * PER_MBIT)
        f, temp, thermal_t = clock(dev, j, temp, thermal_t, arrive)
        round_trip = rtt + tok_work / f + up_tok
        s2, e2, j2, temp, thermal_t, busy = compute(
            dev, j, temp, thermal_t, busy, arrive, n_decode * tok_work
        )
        spread_pair(heap, gi, lumps, heap2, gi2, lumps2, s2, e2, w_energy * j2, j2)
    heat[j, H_TEMP], heat[j, H_THERMAL_T], heat[j, H_BUSY] = temp, thermal_t, busy
    count = -1
    if mbps >= 0.0 and z == z:  # a sample, its noise drawn: written here
        count = record(times, values, counts, j, up_end, mbps, sd, z)
        mbps = -1.0
    schedule_row(
        ints, floats, kgi, subs, sub_t, row, key, j, session_row, k, total, out, keep, kv_bytes,
        round_trip, arrive, arrival, slo_ttft, slo_tpot,
    )  # fmt: skip
    return up_end, mbps, arrive, round_trip, nbytes, prefill, count, radio_state(r, j, arrival)


@jit
def device_cost(
    prof: A, n_layers: int, prefill: int, cached: int, n_decode: int, total: int
) -> tuple[float, float]:
    """``cost_model._device_cost``'s TTFT and decode seconds (its latency is their sum) on a
    profile without sliding-window layers: ``embed_prefill_s + layers_prefill_s(0, L) +
    head_first_token_s``, then ``layers_decode_s(0, L) + embed_head_decode_s``, operation by
    operation (``request_cost``'s remote prefill and decode of the cloud tier, before its
    slowdown, are the same sums on the cloud's profile)."""
    a, b, c = prof[EMBED, EMBED_PREFILL], prof[EMBED, EMBED_PREFILL + 1], prof[EMBED, 2]
    ttft = a + prefill * (b + prefill * c)
    if n_layers > 0 and prefill > 0:
        c0 = prof[P_C0, n_layers] - prof[P_C0, 0]
        c1 = prof[P_C1, n_layers] - prof[P_C1, 0]
        c2 = prof[P_C2, n_layers] - prof[P_C2, 0]
        ttft = ttft + (c0 + prefill * (c1 + (prefill + 2.0 * cached) * c2))
    else:
        ttft = ttft + 0.0
    ttft = ttft + (prof[HEAD, 0] + prof[HEAD, 1] + prof[HEAD, 2])
    n = n_decode
    decode = 0.0
    if n_layers > 0 and n > 0:
        c0 = prof[D_C0, n_layers] - prof[D_C0, 0]
        c1 = prof[D_C1, n_layers] - prof[D_C1, 0]
        decode = n * c0 + c1 * (n * total + n * (n - 1) / 2.0)
    heads = 0.0
    if n > 0:
        ctx_sum = n * total + n * (n - 1) / 2.0
        e0, e1 = prof[EMBED, EMBED_DECODE], prof[EMBED, EMBED_DECODE + 1]
        h0, h1 = prof[HEAD, EMBED_DECODE], prof[HEAD, EMBED_DECODE + 1]
        heads = n * (e0 + h0) + (e1 + h1) * ctx_sum
    return ttft, decode + heads


@jit
def slo_violated(ttft: float, latency: float, out: int, slo_ttft: float, slo_tpot: float) -> bool:
    """``reward.slo_violated_times``."""
    n_dec = out - 1
    return ttft > slo_ttft or (n_dec > 0 and (latency - ttft) / n_dec > slo_tpot)


@jit
def place_local(
    heap: A, gi: A, lumps: A, opened: A, heap2: A, gi2: A, lumps2: A, prof: A, dev: A, kept: A,
    kgi: A, j: int, key: int, session_row: int, arrival: float, slo_ttft: float,
    slo_tpot: float, n_layers: int, ctx: int, new: int, out: int, held: int, heat: A,
) -> tuple[float, float, int, bool]:  # fmt: skip
    """``dispatch`` of request ``key`` to the device tier (``k = L``) on device ``j``: the
    edge's kept entry dropped (:func:`take_kept`), ``ledger.open``, then ``_run_local`` with
    ``held`` tokens kept on the device (``request_cost``, ``Device.compute``, ``_spend``) and
    ``_complete``'s SLO test, ledger close and charge, in the reference's order, the heat state
    in the device's row of ``heat``. (TTFT, finish, prefill tokens, SLO violated); tables
    without the room (:func:`has_room`, and a latency row more: open and close): the first
    value NaN, nothing written, grow and call again."""
    if not (
        key < opened.shape[0]
        and has_room(heap, gi, lumps)
        and gi[N_HEAP + LATENCY] + ROOM_LATENCY + 1 <= heap.shape[1]
        and has_room(heap2, gi2, lumps2)
    ):
        return math.nan, 0.0, 0, False
    take_kept(kept, kgi, session_row, n_layers)
    n_decode = out - 1 if out > 1 else 0  # max(output_tokens - 1, 0)
    open_request(
        heap, gi, opened, key, arrival, dev[j, C_W_LATENCY] / (slo_ttft + n_decode * slo_tpot)
    )
    cached = held if held < ctx else ctx  # min(kept_local, ctx), then request_cost's min
    total = ctx + new
    prefill = total - cached
    ttft, decode = device_cost(prof, n_layers, prefill, cached, n_decode, total)
    latency = ttft + decode
    start, end, joules, temp, thermal_t, busy = compute(
        dev, j, heat[j, H_TEMP], heat[j, H_THERMAL_T], heat[j, H_BUSY], arrival, latency
    )
    heat[j, H_TEMP], heat[j, H_THERMAL_T], heat[j, H_BUSY] = temp, thermal_t, busy
    w_energy = dev[j, C_W_ENERGY]
    spread_pair(heap, gi, lumps, heap2, gi2, lumps2, start, end, w_energy * joules, joules)
    stretch = (end - start) / latency if latency > 0 else 1.0
    ttft = start - arrival + ttft * stretch
    violated = slo_violated(ttft, end - arrival, out, slo_ttft, slo_tpot)
    close_request(heap, gi, opened, key, end)
    penalty = dev[j, C_W_SLO] * (1.0 if violated else 0.0) + dev[j, C_W_COST] * 0.0
    if penalty:
        charge(gi, lumps, end, penalty)
    return ttft, end, prefill, violated


@jit
def place_cloud(
    r: A, awake: A, levels: A, cum: A, rates: A, heap: A, gi: A, lumps: A, opened: A, prof: A,
    cloud: A, dev: A, kept: A, kgi: A, j: int, key: int, session_row: int, arrival: float,
    slo_ttft: float, slo_tpot: float, last: float, n_layers: int, ctx: int, new: int, out: int,
    origin: float, step: float, period: float, bytes_per_period: float, rtt_edge: float,
    rtt_extra: float, backhaul: float, queue: float, slowdown: float, usd_per_s: float,
) -> tuple[float, float, float, int, float, float, float, float, bool]:  # fmt: skip
    """``dispatch`` of request ``key`` to the cloud (``k = L + 1``) from device ``j``: the
    edge's kept entry dropped, ``ledger.open``, ``_wake``, then ``_run_cloud`` (its radio
    delay and transfer, ``request_cost``'s cloud tier over the link's uplink ``cum``, ``rates``
    from its offset ``origin``, its RTTs and backhaul) and ``_complete``'s SLO test, ledger
    close and charge, in the reference's order. (radio delay, upload seconds, upload Mbps,
    prefill tokens, upload bytes, TTFT, finish, dollars, SLO violated); no room: NaN first."""
    if not (
        key < opened.shape[0]
        and has_room(heap, gi, lumps)
        and gi[N_HEAP + LATENCY] + ROOM_LATENCY + 1 <= heap.shape[1]
    ):
        return math.nan, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, False
    take_kept(kept, kgi, session_row, n_layers + 1)
    n_decode = out - 1 if out > 1 else 0  # max(output_tokens - 1, 0)
    rate = dev[j, C_W_LATENCY] / (slo_ttft + n_decode * slo_tpot)
    open_request(heap, gi, opened, key, arrival, rate)
    wake(r, awake, levels, j, last)
    delay = wake_delay(r, j, arrival)
    total = ctx + new
    prefill = total  # nothing cached in the cloud
    t_up = origin + arrival + delay + 0.0  # t0 + the device's prefill (none)
    up_bytes = float(prefill * np.int64(prof[ACT, 0]))
    up_time = 0.0
    if up_bytes > 0:
        up_time = (
            finish_time(
                cum, rates, PER_MBIT, step, period, bytes_per_period, SNAP_REL, t_up, up_bytes
            )
            - t_up
        )
    remote_prefill, remote_decode = device_cost(cloud, n_layers, prefill, 0, n_decode, total)
    remote_prefill = remote_prefill * slowdown
    remote_decode = remote_decode * slowdown
    ttft = 0.0 + up_time + up_bytes / backhaul + (rtt_edge + rtt_extra) + queue + remote_prefill
    latency = ttft + remote_decode
    upload_s, upload_bytes = up_time + 0.0, up_bytes + 0.0
    up_mbps = upload_bytes / (PER_MBIT * upload_s) if upload_s > 0 else 0.0
    transfer(r, j, arrival, latency, up_mbps, 0.0)  # connected until the last token
    usd = (remote_prefill + remote_decode) * usd_per_s
    end = arrival + delay + latency
    ttft = delay + ttft
    violated = slo_violated(ttft, end - arrival, out, slo_ttft, slo_tpot)
    close_request(heap, gi, opened, key, end)
    penalty = dev[j, C_W_SLO] * (1.0 if violated else 0.0) + dev[j, C_W_COST] * usd
    if penalty:
        charge(gi, lumps, end, penalty)
    return delay, upload_s, up_mbps, prefill, upload_bytes, ttft, end, usd, violated


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, on scratch tables (a trace read-only,
    as recorded, and writable, as a forked simulator's; :func:`place_edge` takes read-only
    views only: ``EdgeTables.traces``, its one specialization called straight)."""
    from offload_rl.cell.ledger_table import LedgerTable
    from offload_rl.cell.radio_bank import S_LEVEL

    r = np.zeros((1, S_LEVEL + 1))
    awake, levels = np.zeros(2, dtype=np.int64), np.ones((1, 2))
    a, b = LedgerTable(), LedgerTable()
    prof = np.ones((HEAD + 1, 5))
    dev = np.ones((1, N_DEVICE_COLUMNS))
    heat = heat_storage(1)
    kept, kgi = np.zeros((1, 4), dtype=np.int64), np.zeros(N_GLOBAL_INTS, dtype=np.int64)
    ints, floats = np.zeros((1, tab.N_INT_COLUMNS), np.int64), np.zeros((1, tab.N_FLOAT_COLUMNS))
    subs, sub_t = np.zeros(1, dtype=np.int64), np.zeros(1)
    cum, rates = np.array([0.0, 1.0, 3.0]), np.array([1.0, 2.0])
    for writeable in (True, False):
        cum.flags.writeable = rates.flags.writeable = writeable
        if not writeable:
            place_edge(
                r, awake, levels, prof, dev, heat, *sample_storage(1), cum, rates, a.heap, a.gi,
                a.lumps, a.opened, b.heap, b.gi, b.lumps, kept, kgi, ints, floats, subs, sub_t,
                0, 0, 0, 0, 0.0, 1.0, 0.1, 0.0, 1, 2, 1, 3, False, 8, 0.5, 0.1, 0.3,
            )  # fmt: skip
        place_cloud(
            r, awake, levels, cum, rates, a.heap, a.gi, a.lumps, a.opened, prof, prof, dev,
            kept, kgi, 0, 2 + writeable, 0, 0.0, 1.0, 0.1, 0.0, 1, 2, 1, 3, 0.5, 1.0, 2.0, 3.0,
            0.01, 0.02, 1e6, 0.1, 1.0, 1e-3,
        )  # fmt: skip
    place_local(
        a.heap, a.gi, a.lumps, a.opened, b.heap, b.gi, b.lumps, prof, dev, kept, kgi, 0, 1, 0,
        0.0, 1.0, 0.1, 1, 2, 1, 3, 1, heat,
    )  # fmt: skip
