"""What a device's own state says about running work on it and waking its radio.

The device sees its class, the OS's coarse thermal level and its radio's RRC state; not its
temperature, not where in the tail its radio is. The estimates here put the device *inside* the
band the OS reports and then run the device's own physics on it: the thermal model
(:class:`~offload_rl.cell.thermal.DeviceThermal`) for how long work takes and what it heats, and
the radio state machine (:class:`~offload_rl.cell.radio.Radio`) for what a transfer costs. No
formula of either is copied: the estimate *is* a run of the model from an assumed start.

Assumptions (the policy cannot see these; they are beliefs, not physics):

* temperature: the middle of the OS level's band (nominal: between ambient and ``fair_c``;
  fair: between ``fair_c`` and ``throttle_on_c``; serious: between ``throttle_on_c`` and
  ``floor_c``; critical: ``floor_c``);
* radio: ``tail`` is half elapsed; ``connected`` stays up :data:`CONNECTED_LEFT_S` more;
  ``promotion`` is half done;
* the radio technology is the cell's cellular one (``cell.radio``): the state does not say
  whether the device is on WiFi.
"""

from __future__ import annotations

import functools

from offload_rl.cell.radio import CONNECTED, IDLE, PROMOTION, RADIO_STATES, TAIL, Radio, RadioParams
from offload_rl.cell.thermal import DeviceClass, DeviceThermal

CONNECTED_LEFT_S = 0.5  # assumed seconds a connected radio stays up without this request


def temperature_estimate(cls: DeviceClass, os_level: int) -> float:
    """The middle of the band the OS level stands for (see the module docstring)."""
    bands = (
        (cls.ambient_c, cls.fair_c),
        (cls.fair_c, cls.throttle_on_c),
        (cls.throttle_on_c, cls.floor_c),
        (cls.floor_c, cls.floor_c),
    )
    lo, hi = bands[min(max(int(os_level), 0), 3)]
    return 0.5 * (lo + hi)


@functools.lru_cache(maxsize=1 << 16)
def run_on_device(cls: DeviceClass, temp_c: float, work_s: float) -> tuple[float, float, float]:
    """``work_s`` full-clock seconds from ``temp_c``: (wall seconds, joules, end temperature).

    Memoised: a decision asks it for every placement, and a lookahead asks it again."""
    thermal = DeviceThermal(cls, temp_c)
    if work_s <= 0:
        return 0.0, 0.0, temp_c
    wall, joules = thermal.run(work_s)
    return wall, joules, thermal.temp_c


@functools.lru_cache(maxsize=1 << 16)
def cool(cls: DeviceClass, temp_c: float, idle_s: float) -> float:
    """Temperature after ``idle_s`` seconds without compute."""
    thermal = DeviceThermal(cls, temp_c)
    thermal.idle(idle_s)
    return thermal.temp_c


def radio_in_state(params: RadioParams, state_index: int, t: float) -> Radio:
    """A radio that is in RRC state ``RADIO_STATES[state_index]`` at ``t`` (assumed position)."""
    radio = Radio(params)
    state = RADIO_STATES[min(max(int(state_index), 0), len(RADIO_STATES) - 1)]
    p = params
    if state == IDLE:
        return radio
    if state == PROMOTION:
        radio.transfer(t - 0.5 * p.promo_s, 0.0, 0.0, 0.0)
    elif state == CONNECTED:
        radio.transfer(t - p.promo_s - 1.0, 1.0 + CONNECTED_LEFT_S, 0.0, 0.0)
    elif state == TAIL:
        radio.transfer(t - p.promo_s - 0.5 * p.tail_s - 1.0, 1.0, 0.0, 0.0)
    return radio


def wake_delay(params: RadioParams, state_index: int) -> float:
    """Seconds before data flows for a transfer asked for now."""
    return radio_in_state(params, state_index, 0.0).wake_delay(0.0)


def marginal_radio_energy(
    params: RadioParams,
    state_index: int,
    transfers: list[tuple[float, float, float]],
) -> float:
    """Joules the radio spends because of ``transfers`` ``(asked at, seconds, up Mbps)`` (times
    from now), beyond what it spends anyway, until the last tail has ended."""
    t0 = 10.0 * (params.promo_s + params.tail_s) + 10.0  # "now", after the assumed history
    base = radio_in_state(params, state_index, t0)
    used = radio_in_state(params, state_index, t0)
    end = t0
    for start, duration, mbps in transfers:
        used.transfer(t0 + start, duration, mbps, 0.0)
        end = max(end, t0 + start + params.promo_s + duration)
    horizon = end + params.tail_s + 1.0
    return used.energy_until(horizon) - base.energy_until(horizon)
