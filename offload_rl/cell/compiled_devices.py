"""The phones' per-step physics in machine code (numba): heat and radios.

:class:`~offload_rl.cell.thermal.DeviceThermal`, :class:`~offload_rl.cell.radio.Radio` and the
simulator's lazy radio settlement (``CellSimulator._wake``, ``_stream_tokens``,
``_radio_energy``) are the reference; each kernel here mirrors one of their methods and performs
its float operations in their order (IEEE doubles, no fast-math: no reassociation, no fused
multiply-adds, ``math.exp`` from the same C library; ``min``/``max`` as conditionals that pick
the operand Python's would), so a compiled cell computes bit for bit what the Python one does.
``DeviceThermal.run`` is a loop of sub-steps (at most ``tau / 20`` each) that runs for every
device-side compute; :func:`stream_and_settle` is a decision's radio work in one call (tokens
streaming down keep radios connected, awake radios settled and put back to sleep) on a
:class:`~offload_rl.cell.radio_bank.RadioBank`'s arrays.

Importing this module imports numba; a device imports it only in compiled mode
(:func:`offload_rl.cell.compiled_decode.devices`).
"""

from __future__ import annotations

import math

import numpy as np

from offload_rl.cell.kernel_jit import jit, jit_alloc
from offload_rl.cell.radio_bank import (
    CONNECTED,
    IDLE,
    P_ALPHA_DOWN,
    P_ALPHA_UP,
    P_BETA_W,
    P_IDLE_W,
    P_PROMO_S,
    P_PROMO_W,
    P_TAIL_S,
    P_TAIL_W,
    PROMOTION,
    R_ACTIVE,
    R_ENERGY,
    R_PROMO_END,
    R_PROMO_START,
    R_PROMOTIONS,
    R_SETTLED,
    S_AWAKE,
    S_CHARGED,
    S_LEVEL,
    S_SINCE,
    TAIL,
)

A = np.ndarray  # every array argument


@jit
def _clock(temp_c: float, throttle_on_c: float, floor_c: float, min_clock: float) -> float:
    """``DeviceClass.clock``."""
    if temp_c <= throttle_on_c:
        return 1.0
    if temp_c >= floor_c:
        return min_clock
    frac = (temp_c - throttle_on_c) / (floor_c - throttle_on_c)
    return 1.0 - frac * (1.0 - min_clock)


@jit
def thermal_run(
    temp: float,
    idle_s: float,
    work_s: float,
    compute_w: float,
    ambient_c: float,
    r_k_per_w: float,
    tau_s: float,
    throttle_on_c: float,
    floor_c: float,
    min_clock: float,
) -> tuple[float, float, float]:
    """``DeviceThermal.idle(idle_s)`` (0: none) then ``run(work_s)`` from temperature ``temp``
    (a queued compute: the phone cools until it starts): (new temperature, wall s, joules)."""
    if idle_s > 0:
        temp = ambient_c + (temp - ambient_c) * math.exp(-idle_s / tau_s)
    max_step = tau_s / 20.0
    remaining = work_s
    wall = 0.0
    energy = 0.0
    while remaining > 1e-12:
        f = _clock(temp, throttle_on_c, floor_c, min_clock)
        x = remaining / f
        h = max_step if max_step < x else x  # min(x, max_step): the first unless the second is less
        power = compute_w * f
        steady = ambient_c + r_k_per_w * power
        temp = steady + (temp - steady) * math.exp(-h / tau_s)
        remaining -= f * h
        wall += h
        energy += power * h
    return temp, wall, energy


# --- radios: Radio's methods on a RadioBank's arrays (row j = device j) --------------------------


@jit
def radio_state(r: A, j: int, t: float) -> int:
    """``Radio.state`` as an index into ``RADIO_STATES``."""
    if r[j, R_PROMO_START] <= t < r[j, R_PROMO_END]:
        return PROMOTION
    if t < r[j, R_ACTIVE]:
        return CONNECTED
    if t < r[j, R_ACTIVE] + r[j, P_TAIL_S]:
        return TAIL
    return IDLE


@jit
def wake_delay(r: A, j: int, t: float) -> float:
    """``Radio.wake_delay``."""
    state = radio_state(r, j, t)
    if state == IDLE:
        return r[j, P_PROMO_S]
    return r[j, R_PROMO_END] - t if state == PROMOTION else 0.0


@jit
def _settle(r: A, j: int, t: float) -> None:
    """``Radio._settle``."""
    t0 = r[j, R_SETTLED]
    if t <= t0:
        return
    active = r[j, R_ACTIVE]
    tail_end = active + r[j, P_TAIL_S]
    in_tail = (tail_end if tail_end < t else t) - (active if active > t0 else t0)
    in_idle = t - (tail_end if tail_end > t0 else t0)
    r[j, R_ENERGY] += r[j, P_TAIL_W] * (in_tail if in_tail > 0.0 else 0.0) + r[j, P_IDLE_W] * (
        in_idle if in_idle > 0.0 else 0.0
    )
    r[j, R_SETTLED] = t


@jit
def keep_connected(r: A, j: int, t: float, duration_s: float) -> float:
    """``Radio.keep_connected``: the start."""
    _settle(r, j, t)
    start = t
    state = radio_state(r, j, t)
    if state == IDLE:
        start = t + r[j, P_PROMO_S]
        r[j, R_PROMO_START] = t
        r[j, R_PROMO_END] = start
        r[j, R_ENERGY] += r[j, P_PROMO_W] * r[j, P_PROMO_S]
        r[j, R_PROMOTIONS] += 1.0
        r[j, R_SETTLED] = start
    elif state == PROMOTION:
        start = r[j, R_PROMO_END]
    end = start + duration_s
    active = r[j, R_ACTIVE]
    base_from = active if active > start else start  # max(start, active)
    x = end - base_from
    r[j, R_ENERGY] += r[j, P_BETA_W] * (0.0 if x < 0.0 else x)  # max(x, 0.0)
    if end > active:
        r[j, R_ACTIVE] = end
        settled = r[j, R_SETTLED]
        r[j, R_SETTLED] = end if end > settled else settled  # max(settled, end)
    return start


@jit
def transfer(r: A, j: int, t: float, duration_s: float, up: float, down: float) -> float:
    """``Radio.transfer``: the start."""
    start = keep_connected(r, j, t, duration_s)
    r[j, R_ENERGY] += (r[j, P_ALPHA_UP] * up + r[j, P_ALPHA_DOWN] * down) * duration_s
    return start


@jit
def leftmost(cum: A, target: float, hint: int) -> int:
    """``bisect_left(cum, target)`` on a non-decreasing ``cum`` (a trace's cumulative bytes),
    searched outward from ``hint``: the same index (the first ``cum[i] >= target``, or the
    length), found in a few neighbouring probes when the answer is near the hint, where a
    bisection of the whole trace touches ~log2(n) cold cache lines."""
    n = cum.shape[0]
    if hint < 0:
        hint = 0
    elif hint >= n:
        hint = n - 1
    width = 1
    if cum[hint] < target:  # the answer is in (hint, n]
        lo = hint + 1
        hi = lo
        while hi < n and cum[hi] < target:
            lo = hi + 1
            hi = lo + width
            width *= 2
        if hi > n:
            hi = n
    else:  # the answer is in [0, hint]
        hi = hint
        lo = hi - width
        while lo > 0 and cum[lo] >= target:
            hi = lo
            width *= 2
            lo = hi - width
        if lo < 0:
            lo = 0
    while lo < hi:  # bisect_left on [lo, hi], which holds the answer
        mid = (lo + hi) // 2
        if cum[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


@jit
def finish_time(
    cum: A, mbps: A, per_mbit: float, step: float, period: float, total: float, snap: float,
    t0: float, nbytes: float,
) -> float:  # fmt: skip
    """``Trace.finish_time`` for ``nbytes > 0``, operation by operation (``cum``, ``mbps``: the
    trace's cumulative bytes and rates, a step's bytes per second ``mbps[i] * per_mbit`` as
    the trace computes them; ``snap``: its relative rounding slack); ``bisect_left`` by
    :func:`leftmost` from the sending's start."""
    k0 = math.floor(t0 / period)
    x0 = t0 - k0 * period
    i0 = int(x0 / step)
    r = total if i0 >= mbps.shape[0] else cum[i0] + (mbps[i0] * per_mbit) * (x0 - i0 * step)
    r = r + nbytes
    k = math.floor(r / total)
    r -= k * total
    tol = snap * (total + nbytes)
    if r <= tol and k > 0:
        k -= 1
        r += total
    if r > total:
        r = total
    lo = leftmost(cum, r - tol, i0 if k == 0 else 0)  # bisect_left, from the start sample
    if lo == 0:
        x = 0.0
    else:
        i = lo - 1
        x = i * step + (r - cum[i]) / (mbps[i] * per_mbit)
    t = (k0 + k) * period + x
    return t if t > t0 else t0


@jit
def upload(
    r: A, j: int, cum: A, mbps: A, per_mbit: float, step: float, period: float, total: float,
    snap: float, origin: float, t: float, nbytes: float,
) -> tuple[float, float, float]:  # fmt: skip
    """``Device.upload``'s radio and trace work for ``nbytes > 0`` asked for at ``t``: (first
    byte, last byte, achieved Mbps). The throughput sample (its noise draw) stays with the
    device."""
    start = t + wake_delay(r, j, t)
    end = finish_time(cum, mbps, per_mbit, step, period, total, snap, origin + start, nbytes)
    end = end - origin
    duration = end - start
    if duration < 1e-9:  # max(end - start, 1e-9)
        duration = 1e-9
    up = nbytes / (per_mbit * duration)
    transfer(r, j, t, duration, up, 0.0)
    return start, end, up


@jit
def energy_until(r: A, j: int, t: float) -> float:
    """``Radio.energy_until``."""
    if t > r[j, R_SETTLED]:
        _settle(r, j, t)
    return r[j, R_ENERGY]


# --- the simulator's lazy radio settlement (CellSimulator._wake, _stream_tokens, _radio_energy)


@jit
def wake(r: A, awake: A, levels: A, j: int, last: float) -> None:
    """``CellSimulator._wake``: device ``j`` joins the awake radios (in waking order)."""
    if r[j, S_AWAKE] != 0.0:
        return
    w = r[j, P_IDLE_W]
    r[j, S_CHARGED] += w * (last - r[j, S_SINCE])
    levels[int(r[j, S_LEVEL]), 1] -= 1.0
    r[j, S_AWAKE] = 1.0
    awake[0] += 1
    awake[awake[0]] = j


@jit_alloc  # np.argsort allocates
def stream_and_settle(
    r: A, awake: A, levels: A, streams: A, n: int, t: float, last: float
) -> float:
    """``CellSimulator._stream_tokens`` over the ``n`` streams (rows: request, device, first
    token at the device), visited in request order as it visits ``_at_edge``, then
    ``_radio_energy``: the radio joules of ``(last, t]``."""
    for k in np.argsort(streams[:n, 0]):
        stream_row(r, awake, levels, streams, k, t, last)
    return settle_awake(r, awake, levels, t, last)


@jit
def stream_row(r: A, awake: A, levels: A, streams: A, k: int, t: float, last: float) -> None:
    """``_stream_tokens`` for the stream in row ``k``: its radio kept connected to ``t``."""
    lo = streams[k, 2]
    if lo < last:  # max(first + half, last), as Device.receive was called with
        lo = last
    if t > lo:
        j = int(streams[k, 1])
        if r[j, S_AWAKE] == 0.0:
            wake(r, awake, levels, j, last)
        keep_connected(r, j, lo, t - lo)


@jit
def settle_awake(r: A, awake: A, levels: A, t: float, last: float) -> float:
    """``CellSimulator._radio_energy``: the asleep radios' idle joules of ``(last, t]``, the
    awake ones settled to ``t`` (back to sleep once idle)."""
    dt = t - last
    energy = 0.0
    for m in range(levels.shape[0]):
        energy += levels[m, 0] * levels[m, 1] * dt
    kept = 0
    for i in range(1, awake[0] + 1):
        j = awake[i]
        e = energy_until(r, j, t)
        energy += e - r[j, S_CHARGED]
        r[j, S_CHARGED] = e
        if t >= r[j, R_ACTIVE] + r[j, P_TAIL_S]:  # idle_from
            r[j, S_AWAKE] = 0.0
            r[j, S_SINCE] = t
            levels[int(r[j, S_LEVEL]), 1] += 1.0
        else:
            kept += 1
            awake[kept] = j
    awake[0] = kept
    return energy


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, on one idle radio."""
    thermal_run(25.0, 1.0, 1.0, 5.0, 25.0, 2.0, 40.0, 41.0, 45.0, 0.25)
    r = np.zeros((1, S_LEVEL + 1))
    r[0, R_ACTIVE] = -1e18
    awake, levels, streams = np.zeros(2, dtype=np.int64), np.ones((1, 2)), np.zeros((1, 3))
    radio_state(r, 0, 0.0)
    wake_delay(r, 0, 0.0)
    transfer(r, 0, 0.0, 1.0, 1.0, 0.0)
    keep_connected(r, 0, 1.0, 1.0)
    energy_until(r, 0, 2.0)
    wake(r, awake, levels, 0, 2.0)
    cum, mbps = np.array([0.0, 1.0, 3.0]), np.array([1.0, 2.0])
    upload(r, 0, cum, mbps, 1.0, 1.0, 2.0, 3.0, 1e-12, 0.5, 2.5, 4.0)  # a fork's trace arrays
    cum.flags.writeable = mbps.flags.writeable = False
    upload(r, 0, cum, mbps, 1.0, 1.0, 2.0, 3.0, 1e-12, 0.5, 2.5, 4.0)  # a Trace's (read-only)
    stream_and_settle(r, awake, levels, streams, 1, 3.0, 2.0)
