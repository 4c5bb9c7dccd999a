"""A phone's radio: the RRC state machine and the energy it spends over time.

Why it matters: a transfer from idle pays a promotion delay, and every burst leaves a tail of about
10 s at about 1 W (≈ 11 J on LTE, PARAMETERS.md §3b) before the radio drops back to idle. Whether
offloading is cheap therefore depends on whether the radio is already up. States::

    idle --transfer--> promotion (promo_s at promo_w) --> connected (transfers) --> tail
    tail --transfer--> connected (no promotion: the connection is re-used)
    tail --tail_s without traffic--> idle

Power while connected is the Huang et al. (MobiSys'12) model, as in AT&T ARO:
``beta + alpha_up * Mbps_up + alpha_down * Mbps_down``. ``beta`` is paid once for the connected
time however many transfers overlap; the per-Mbps terms are paid per transfer. The tail is paid
once per idle period: a transfer inside a tail ends that tail (its part so far is paid) and a new
full tail follows the last transfer. Energy is integrated lazily: :meth:`Radio.energy_until`
settles idle and tail time up to ``t``; a transfer charges its promotion and active energy when it
is submitted.

Left out on purpose: 5G SA's second inactivity stage (RRC_INACTIVE, ≈15 s, PARAMETERS.md §3c),
DRX ping structure inside the tail (its average is the tail power), downlink-triggered paging
delay, uplink/downlink scheduling limits (rates come from the trace), handovers.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE, PROMOTION, CONNECTED, TAIL = "idle", "promotion", "connected", "tail"
RADIO_STATES: tuple[str, ...] = (IDLE, PROMOTION, CONNECTED, TAIL)


@dataclass(frozen=True, slots=True)
class RadioParams:
    """Timers and powers of one radio technology (sources in :data:`RADIOS`)."""

    name: str
    promo_s: float
    promo_w: float
    beta_w: float  # connected base power
    alpha_up_w_per_mbps: float
    alpha_down_w_per_mbps: float
    tail_s: float
    tail_w: float
    idle_w: float
    sources: str


RADIOS: dict[str, RadioParams] = {
    p.name: p
    for p in (
        RadioParams(
            name="lte",
            promo_s=0.26,  # T_PROMOTION [V] ARO lte.conf
            promo_w=1.21,  # P_PROMOTION [V]
            beta_w=1.2,  # LTE_BETA [V] (Huang 2012: 1.288 W [R])
            alpha_up_w_per_mbps=0.43839,  # 438.39 mW/Mbps [V]
            alpha_down_w_per_mbps=0.05197,  # 51.97 mW/Mbps [V]
            tail_s=10.12,  # [D] INACTIVITY_TIMER 0.1 + T_SHORT_DRX 0.02 + T_LONG_DRX 10 s [V]
            tail_w=1.06,  # P_TAIL [V]
            idle_w=0.02,  # [D] paging 0.594 W x 43 ms every 1.28 s [V]
            sources="attdevsupport/ARO ARODataAnalyzer/src/lte.conf (PARAMETERS.md §3b)",
        ),
        RadioParams(
            name="nr-nsa-lowband",
            promo_s=0.26,  # [assumption] NSA attaches through its LTE anchor: LTE's promotion
            promo_w=1.21,  # [assumption] as LTE
            beta_w=1.3,  # [R] PARAMETERS.md §6
            alpha_up_w_per_mbps=0.0322,  # 32.2 mW/Mbps [D] SIGCOMM'21 artifact fit
            alpha_down_w_per_mbps=0.0115,  # 11.5 mW/Mbps [D]
            tail_s=10.0,  # [D] RRC-Probe: Verizon / T-Mobile NSA low-band ≈10-11 s
            tail_w=1.1,  # [R] LTE-like, 5G tail power not verified (PARAMETERS.md §3c)
            idle_w=0.02,  # [assumption] as LTE
            sources="SIGCOMM21-5G/artifact power fits and RRC probes (PARAMETERS.md §3b-3c)",
        ),
        RadioParams(
            name="nr-nsa-mmwave",
            promo_s=0.26,  # [assumption] as LTE (NSA anchor)
            promo_w=1.21,  # [assumption] as LTE
            beta_w=3.6,  # [D] LTE beta 1.2 W + the +2.4 W mmWave offset at equal throughput
            alpha_up_w_per_mbps=0.00888,  # 8.88 mW/Mbps [D]
            alpha_down_w_per_mbps=0.00173,  # 1.73 mW/Mbps [D]
            tail_s=10.0,  # [D] RRC-Probe: Verizon mmWave ≈10-11 s
            tail_w=2.5,  # [R, very uncertain] PARAMETERS.md §3c: 2-3 W
            idle_w=0.02,  # [assumption] as LTE
            sources="SIGCOMM21-5G/artifact power fits and RRC probes (PARAMETERS.md §3b-3c)",
        ),
        RadioParams(
            name="wifi",
            promo_s=0.0,  # [assumption] no RRC promotion; power-save wake-up is ms-scale
            promo_w=0.0,
            beta_w=0.13286,  # 132.86 mW [R] Huang 2012 WiFi model
            alpha_up_w_per_mbps=0.28317,  # 283.17 mW/Mbps [R]
            alpha_down_w_per_mbps=0.13701,  # 137.01 mW/Mbps [R]
            tail_s=0.25,  # [V] ARO WiFi.conf
            tail_w=0.403,  # [V] ARO WiFi.conf active power, held through the tail [assumption]
            idle_w=0.02,  # [V] ARO WiFi.conf standby
            sources="attdevsupport/ARO WiFi.conf; Huang et al. MobiSys'12 (PARAMETERS.md §3b)",
        ),
    )
}


class Radio:
    """One device's radio over time (event-driven: transfers and queries at increasing times)."""

    def __init__(self, params: RadioParams) -> None:
        self.params = params
        self.energy_j = 0.0  # settled up to self._settled_t
        self.promotions = 0
        self._settled_t = 0.0
        self._promo_start = self._promo_end = -1.0  # the latest promotion
        self._active_until = -1e18  # end of the latest transfer (connected until then)

    def state(self, t: float) -> str:
        """The RRC state at ``t`` (no earlier than the latest transfer's request)."""
        if self._promo_start <= t < self._promo_end:
            return PROMOTION
        if t < self._active_until:
            return CONNECTED
        if t < self._active_until + self.params.tail_s:
            return TAIL
        return IDLE

    def state_index(self, t: float) -> int:
        """:meth:`state` as an index into :data:`RADIO_STATES`."""
        return RADIO_STATES.index(self.state(t))

    def wake_delay(self, t: float) -> float:
        """Seconds a transfer starting at ``t`` waits before data flows (promotion left)."""
        state = self.state(t)
        if state == IDLE:
            return self.params.promo_s
        return self._promo_end - t if state == PROMOTION else 0.0

    def transfer(self, t: float, duration_s: float, up_mbps: float, down_mbps: float) -> float:
        """A transfer asked for at ``t`` lasting ``duration_s`` once data flows; its start time.

        Charges the promotion (from idle) and the active energy now.
        """
        start = self.keep_connected(t, duration_s)
        p = self.params
        self.energy_j += (p.alpha_up_w_per_mbps * up_mbps + p.alpha_down_w_per_mbps * down_mbps) * (
            duration_s
        )
        return start

    def keep_connected(self, t: float, duration_s: float) -> float:
        """:meth:`transfer` with no rate to charge (tokens streaming down: their rate is
        negligible): promotion and connected time only; the start."""
        p = self.params
        self._settle(t)
        start = t
        state = self.state(t)
        if state == IDLE:
            start = t + p.promo_s
            self._promo_start, self._promo_end = t, start
            self.energy_j += p.promo_w * p.promo_s
            self.promotions += 1
            self._settled_t = start
        elif state == PROMOTION:
            start = self._promo_end
        end = start + duration_s
        base_from = max(start, self._active_until)
        self.energy_j += p.beta_w * max(end - base_from, 0.0)
        if end > self._active_until:
            self._active_until = end
            self._settled_t = max(self._settled_t, end)
        return start

    def idle_from(self) -> float:
        """When the radio is idle, unless a transfer comes first (the latest tail's end)."""
        return self._active_until + self.params.tail_s

    def energy_until(self, t: float) -> float:
        """Joules spent from time 0 to ``t`` (tail and idle settled up to ``t``)."""
        if t > self._settled_t:
            self._settle(t)
        return self.energy_j

    def _settle(self, t: float) -> None:
        """Charge tail and idle power up to ``t`` (transfers charge the connected time)."""
        t0 = self._settled_t
        if t <= t0:
            return
        p = self.params
        active = self._active_until
        tail_end = active + p.tail_s
        # max(min(t, tail_end) - max(t0, active), 0.0) and max(t - max(t0, tail_end), 0.0),
        # with conditionals that pick what max/min would: the cell settles every radio per step
        in_tail = (tail_end if tail_end < t else t) - (active if active > t0 else t0)
        in_idle = t - (tail_end if tail_end > t0 else t0)
        self.energy_j += p.tail_w * (in_tail if in_tail > 0.0 else 0.0) + p.idle_w * (
            in_idle if in_idle > 0.0 else 0.0
        )
        self._settled_t = t
