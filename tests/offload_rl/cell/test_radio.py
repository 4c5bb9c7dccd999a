"""Radio: promotion from idle only, one tail per idle period, energy integrated over time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offload_rl.cell.radio import CONNECTED, IDLE, PROMOTION, RADIOS, TAIL, Radio

LTE = RADIOS["lte"]


def test_a_burst_from_idle_costs_about_11_joules_of_overhead_on_lte():
    """PARAMETERS.md §3b: 1.06 W x 10.1 s + 1.21 W x 0.26 s ≈ 11 J per burst."""
    overhead = LTE.tail_w * LTE.tail_s + LTE.promo_w * LTE.promo_s
    assert overhead == pytest.approx(11.0, abs=0.1)


def test_states_follow_idle_promotion_connected_tail_idle():
    radio = Radio(LTE)
    assert radio.state(4.9) == IDLE
    start = radio.transfer(5.0, 1.0, up_mbps=2.0, down_mbps=0.0)
    assert start == pytest.approx(5.0 + LTE.promo_s)
    end = start + 1.0
    probes = [5.1, start + 0.5, end + 0.1, end + LTE.tail_s - 0.1, end + LTE.tail_s + 0.1]
    assert [radio.state(t) for t in probes] == [PROMOTION, CONNECTED, TAIL, TAIL, IDLE]
    assert radio.wake_delay(end + 1.0) == 0.0 and radio.wake_delay(100.0) == LTE.promo_s


def test_energy_of_one_burst_is_idle_promotion_active_tail_idle():
    radio = Radio(LTE)
    start = radio.transfer(5.0, 1.0, up_mbps=2.0, down_mbps=4.0)
    active = LTE.beta_w + LTE.alpha_up_w_per_mbps * 2.0 + LTE.alpha_down_w_per_mbps * 4.0
    idle_s = 100.0 - (start + 1.0 + LTE.tail_s) + 5.0
    expected = (
        LTE.promo_w * LTE.promo_s + active * 1.0 + LTE.tail_w * LTE.tail_s + LTE.idle_w * idle_s
    )
    assert radio.energy_until(100.0) == pytest.approx(expected)


def test_two_transfers_inside_one_tail_pay_one_tail_and_one_promotion():
    together, apart = Radio(LTE), Radio(LTE)
    s1 = together.transfer(0.0, 1.0, 1.0, 0.0)
    together.transfer(s1 + 1.0 + 3.0, 1.0, 1.0, 0.0)  # 3 s into the first one's tail
    s1 = apart.transfer(0.0, 1.0, 1.0, 0.0)
    apart.transfer(s1 + 1.0 + 30.0, 1.0, 1.0, 0.0)  # after the tail: idle again
    horizon = 100.0
    e_together, e_apart = together.energy_until(horizon), apart.energy_until(horizon)
    assert together.promotions == 1 and apart.promotions == 2
    # one full tail + 3 s of a cut tail, against two full tails and a second promotion
    saved = (LTE.tail_s - 3.0) * LTE.tail_w + LTE.promo_w * LTE.promo_s
    idle_diff = LTE.idle_w * (LTE.tail_s - 3.0 + LTE.promo_s)
    assert e_apart - e_together == pytest.approx(saved - idle_diff)


def test_overlapping_transfers_pay_the_base_power_once():
    radio = Radio(LTE)
    s = radio.transfer(0.0, 2.0, 1.0, 0.0)
    radio.transfer(s + 1.0, 2.0, 1.0, 0.0)  # overlaps the first by 1 s
    connected = 3.0  # s .. s + 3
    expected = (
        LTE.promo_w * LTE.promo_s
        + LTE.beta_w * connected
        + LTE.alpha_up_w_per_mbps * 1.0 * 4.0
        + LTE.tail_w * LTE.tail_s
    )
    assert radio.energy_until(s + connected + LTE.tail_s) == pytest.approx(expected)


def test_wifi_has_no_promotion_delay_and_a_short_tail():
    radio = Radio(RADIOS["wifi"])
    assert radio.transfer(1.0, 0.5, 10.0, 0.0) == 1.0
    assert radio.state(1.5 + 0.3) == IDLE


transfers = st.lists(
    st.tuples(st.floats(0.0, 20.0), st.floats(0.0, 3.0), st.floats(0.0, 50.0)),
    min_size=1,
    max_size=20,
)


@given(transfers, st.sampled_from(sorted(RADIOS)))
def test_energy_never_decreases_and_promotions_only_from_idle(events, name):
    params = RADIOS[name]
    radio = Radio(params)
    t = last = 0.0
    for gap, duration, mbps in events:
        t += gap
        was_idle = radio.state(t) == IDLE
        before = radio.promotions
        radio.transfer(t, duration, mbps, mbps)
        assert radio.promotions == before + (1 if was_idle else 0)
        energy = radio.energy_until(t)
        assert energy >= last - 1e-9
        last = energy
    assert radio.energy_until(t + 100.0) >= last + params.idle_w * 50.0 - 1e-9
