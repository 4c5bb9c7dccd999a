"""One phone in the cell: its class and heat, its radio, its own link, and what it has measured.

A device's compute is one FIFO (a phone runs one inference at a time): work asked for while it is
busy starts when the earlier work ends (a request with no device work does not wait), and heat is
integrated over that queue
(:class:`~offload_rl.cell.thermal.DeviceThermal`). Its uplink follows its own recorded trace from
its own offset; each upload is integrated over the trace from the moment data flows, after the
radio's promotion delay (:class:`~offload_rl.cell.radio.Radio`).

What the device knows of its link is only what its own transfers measured (bytes / seconds, with
the scenario's lognormal measurement noise) and when: a phone that has been idle for minutes has
no fresh sample. It starts with ``H`` samples of the periods before the episode (it was in use
before). One exception keeps the outage mask from locking a device out for good: while its
newest sample says "outage", it probes the link before deciding (a modem's reference-signal
measurement over the last sample period), so the outage ends for the policy when the link
comes back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from offload_rl.cell.radio import Radio, RadioParams
from offload_rl.cell.radio_bank import BankRadio
from offload_rl.cell.thermal import (
    H_AMBIENT,
    H_BUSY,
    H_FAIR,
    H_FLOOR,
    H_TAU,
    H_TEMP,
    H_THERMAL_ON,
    H_THERMAL_T,
    H_THROTTLE,
    HEAT_COLUMNS,
    DeviceClass,
    RowThermal,
    run_constants,
    thermal_compiled,
)
from offload_rl.cost_model import LinkModel
from offload_rl.device_view import SessionMemory, measured_throughput
from offload_rl.traces import BYTES_PER_MBIT

SAMPLE_SLOTS = 64  # samples a device keeps: the encoder reads at most 64 (then 32 are dropped)


def sample_storage(n_devices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty sample rows for ``n_devices`` devices: times, values (``SAMPLE_SLOTS`` each) and
    counts. Plain arrays: a forked simulator's devices deep-copy them with it (one memo)."""
    return (
        np.zeros((n_devices, SAMPLE_SLOTS), dtype=np.float64),
        np.zeros((n_devices, SAMPLE_SLOTS), dtype=np.float64),
        np.zeros(n_devices, dtype=np.int64),
    )


def heat_row_of(c: DeviceClass, thermal: bool) -> list[float]:
    """A new device's heat row (``H_*`` columns): at its class's ambient, idle since t = 0,
    its class's constants and whether heat is modelled."""
    row = [0.0] * HEAT_COLUMNS  # H_THERMAL_T, H_BUSY: 0.0
    row[H_TEMP] = row[H_AMBIENT] = c.ambient_c
    row[H_TAU], row[H_FAIR], row[H_THROTTLE] = c.tau_s, c.fair_c, c.throttle_on_c
    row[H_FLOOR], row[H_THERMAL_ON] = c.floor_c, float(thermal)
    return row


class Device:
    """One phone: compute FIFO with heat, radio, link trace and its own throughput samples."""

    def __init__(
        self,
        index: int,
        class_index: int,
        device_class: DeviceClass,
        radio: RadioParams,
        link: LinkModel,
        offset_s: float,
        *,
        thermal: bool,
        noise_sd: float,
        rng: np.random.Generator,
        heat: np.ndarray | None = None,
        samples: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``heat`` and ``samples``: the cell's arrays (:func:`~offload_rl.cell.thermal.
        heat_storage`, :func:`sample_storage`, zeros), the device bound to row ``index`` from
        the start, as :meth:`bind_heat` and :meth:`bind_samples` would leave it; a new
        episode's devices skip a one-row array each and the move from it. Without them, its
        own one-row arrays until bound to a cell's."""
        self.index = index
        self.class_index = class_index
        self.cls = device_class
        heat_row = 0 if heat is None else index
        self.thermal = RowThermal(device_class, heat=heat, row=heat_row)
        self.thermal_on = thermal
        self._heat, self.heat_row = self.thermal._heat, heat_row
        # the class's constants; busy_until and _thermal_t (the time the thermal state is at)
        # 0.0; the temperature as the thermal object set it (heat_row_of's too)
        self._heat[heat_row] = heat_row_of(device_class, thermal)
        self.radio: Radio | BankRadio = Radio(radio)  # a BankRadio in a compiled simulator
        self.link = link
        self.uplink = link.uplink
        self.offset_s = offset_s
        self.noise_sd = noise_sd
        self.rng = rng
        self.memory = SessionMemory()
        self.kept_local: dict[int, int] = {}  # session -> KV tokens kept on the device
        if samples is None:
            self.bind_samples(*sample_storage(1), 0)
        else:
            self.bind_samples(*samples, index)

    # --- heat state ----------------------------------------------------------------------

    def bind_heat(self, heat: np.ndarray, row: int) -> None:
        """Keep the heat state and the class's constants in row ``row`` of the cell's array
        (:func:`~offload_rl.cell.thermal.heat_storage`; the current values move there), so
        that the compiled placement and decision read and write them by the device's index."""
        heat[row] = self._heat[self.heat_row]
        self.thermal.bind(heat, row)
        self._heat, self.heat_row = heat, row

    @property
    def busy_until(self) -> float:
        """When the compute FIFO's queued work ends."""
        return float(self._heat[self.heat_row, H_BUSY])

    @busy_until.setter
    def busy_until(self, value: float) -> None:
        self._heat[self.heat_row, H_BUSY] = value

    @property
    def _thermal_t(self) -> float:
        """The time the thermal state is at."""
        return float(self._heat[self.heat_row, H_THERMAL_T])

    @_thermal_t.setter
    def _thermal_t(self, value: float) -> None:
        self._heat[self.heat_row, H_THERMAL_T] = value

    # --- link knowledge ----------------------------------------------------------------------

    def bind_samples(
        self, times: np.ndarray, values: np.ndarray, counts: np.ndarray, row: int
    ) -> None:
        """Keep the samples in row ``row`` of the cell's arrays (:func:`sample_storage`), so that
        one compiled call reads any device's (``compiled_observation.decide``): the newest
        ``counts[row]`` samples' times and values, oldest first, in that row's first slots."""
        self.sample_times, self.sample_values, self.sample_counts = times, values, counts
        self.sample_row = row
        self._n_samples = int(counts[row])  # counts[row] as a Python int (record's, cheaper)

    @property
    def sample_t(self) -> list[float]:
        """The samples' measurement times, oldest appended first (not sorted: see
        :meth:`samples_until`)."""
        if "sample_times" not in self.__dict__:  # a bare Device (tests): no samples yet
            return []
        return self.sample_times[self.sample_row, : self.sample_counts[self.sample_row]].tolist()

    @sample_t.setter
    def sample_t(self, times: list[float]) -> None:
        self._set_samples(True, times)

    @property
    def sample_mbps(self) -> list[float]:
        """The samples' values (Mbps, noise included), as :attr:`sample_t`."""
        if "sample_values" not in self.__dict__:
            return []
        return self.sample_values[self.sample_row, : self.sample_counts[self.sample_row]].tolist()

    @sample_mbps.setter
    def sample_mbps(self, values: list[float]) -> None:
        self._set_samples(False, values)

    def _set_samples(self, times: bool, column: list[float]) -> None:
        """Write ``column`` as the row's times (``times``) or values; a bare device gets its
        own one-row storage first."""
        if "sample_times" not in self.__dict__:
            self.bind_samples(*sample_storage(1), 0)
        n = len(column)
        if n > SAMPLE_SLOTS:
            raise ValueError(f"a device keeps at most {SAMPLE_SLOTS} samples, got {n}")
        target = self.sample_times if times else self.sample_values
        target[self.sample_row, :n] = column
        self.sample_counts[self.sample_row] = self._n_samples = n

    def seed_samples(self, history: int, period_s: float) -> None:
        """``history`` samples of the periods before t = 0 (the device was in use before).

        The simulator seeds all its devices in one pass
        (:func:`~offload_rl.cell.device_seeding.seeded_samples`, bit for bit this method's
        values; ``tests/offload_rl/cell/test_cell_reset_seeding.py``): this is the reference."""
        values = measured_throughput(
            self.uplink, self.offset_s, -history, history, period_s, self.noise_sd, self.rng
        )
        self.sample_t = [(i - history + 1) * period_s for i in range(history)]
        self.sample_mbps = [float(v) for v in values]

    def record(self, t: float, mbps: float) -> None:
        """A sample measured at ``t`` (a transfer ending, or a probe), with measurement noise."""
        sd = self.noise_sd
        if sd > 0:
            # rng.normal(0.0, sd) is 0.0 + sd * standard_normal() (numpy's definition): the
            # same draw and value (exp ignores the zero's sign) without normal's argument checks
            mbps *= math.exp(sd * self.rng.standard_normal())
        times, values, j = self.sample_times, self.sample_values, self.sample_row
        n = self._n_samples
        if n == SAMPLE_SLOTS:  # appending the 65th: the oldest 32 go (the encoder reads <= 64)
            half = SAMPLE_SLOTS // 2
            times[j, :half] = times[j, half:]
            values[j, :half] = values[j, half:]
            n = half
        times[j, n] = t
        values[j, n] = mbps
        self.sample_counts[j] = self._n_samples = n + 1

    def samples_until(self, t: float, history: int) -> tuple[list[float], float]:
        """The newest ``history`` samples measured by ``t``, oldest first, and the newest's time.

        Samples are appended in decision order, and a transfer may end after a later decision,
        so the times are not sorted: :func:`scan_samples` scans back from the newest. Mostly
        the newest ``history`` were all measured by ``t``, and then they are the answer.
        """
        times = self.sample_t
        if history > 0 and times and max(times[-history:]) <= t:
            return self.sample_mbps[-history:], times[-1]
        return scan_samples(times, self.sample_mbps, t, history)

    def probe_if_out(self, t: float, floor_mbps: float, period_s: float) -> None:
        """Re-measure the link before deciding while the newest sample says it is out."""
        n = self._n_samples
        if n and self.sample_values[self.sample_row, n - 1] >= floor_mbps:
            return
        lo = max(t - period_s, 0.0)
        if t - lo <= 0:
            return
        cum = self.uplink.bytes_between(self.offset_s + lo, self.offset_s + t)
        self.record(t, cum / (BYTES_PER_MBIT * (t - lo)))

    # --- compute ----------------------------------------------------------------------------

    def compute(self, t: float, work_s: float) -> tuple[float, float, float]:
        """Queue ``work_s`` full-clock seconds at ``t``: (start, end, joules).

        No work does not queue: a request that needs no device compute (token ids sent to the
        edge) goes on at ``t`` even while the phone is busy, as the cloud path does; an upload
        of token ids does not need the NPU.
        """
        if work_s <= 0:
            self._cool_to(t)
            return t, t, 0.0
        start = max(t, self.busy_until)
        if self.thermal_on:  # _cool_to(start), then the work
            idle_s = start - self._thermal_t if start > self._thermal_t else 0.0
            wall, joules = self.thermal.idle_then_run(idle_s, work_s)
        else:
            wall, joules = work_s, self.cls.compute_w * work_s
        self.busy_until = self._thermal_t = start + wall
        return start, start + wall, joules

    def _cool_to(self, t: float) -> None:
        if self.thermal_on and t > self._thermal_t:
            self.thermal.idle(t - self._thermal_t)
            self._thermal_t = t

    def clock(self, t: float) -> float:
        """Clock factor at ``t`` (1 when thermal modelling is off)."""
        if not self.thermal_on:
            return 1.0
        self._cool_to(t)
        return self.thermal.clock()

    def os_level(self, t: float) -> int:
        """The OS thermal level at ``t`` (while busy: at the end of its queued work)."""
        if not self.thermal_on:
            return 0
        self._cool_to(t)
        return self.thermal.os_level()

    def temp_c(self) -> float:
        return self.thermal.temp_c

    # --- radio ------------------------------------------------------------------------------

    def upload(self, t: float, nbytes: float) -> tuple[float, float]:
        """Send ``nbytes`` asked for at ``t``: (first byte, last byte) after any promotion.

        The transfer's achieved rate becomes a throughput sample at its end.
        """
        radio = self.radio
        if nbytes > 0 and isinstance(radio, BankRadio):  # compiled: radio and trace in one call
            start, end, mbps = radio.upload(self.uplink, self.offset_s, t, nbytes)
            self.record(end, mbps)
            return start, end
        start = t + radio.wake_delay(t)
        if nbytes <= 0:
            self.radio.transfer(t, 0.0, 0.0, 0.0)
            return start, start
        origin = self.offset_s
        end = self.uplink.finish_time(origin + start, nbytes) - origin
        duration = max(end - start, 1e-9)
        mbps = nbytes / (BYTES_PER_MBIT * duration)
        self.radio.transfer(t, duration, mbps, 0.0)
        self.record(end, mbps)
        return start, end

    def receive(self, t: float, duration_s: float) -> None:
        """Keep the radio connected while tokens stream down (ids: the rate is negligible)."""
        self.radio.keep_connected(t, max(duration_s, 0.0))

    def radio_state_index(self, t: float) -> int:
        return self.radio.state_index(t)


def cell_devices(
    class_index: Sequence[int],
    classes: Sequence[DeviceClass],
    radios: Sequence[RadioParams],
    links: Sequence[LinkModel],
    offsets_s: Sequence[float],
    *,
    thermal: bool,
    noise_sd: float,
    rngs: Sequence[np.random.Generator],
    heat: np.ndarray,
    samples: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> list[Device]:
    """``[Device(j, class_index[j], classes[j], radios[j], links[j], offsets_s[j], thermal=,
    noise_sd=, rng=rngs[j], heat=, samples=) for j]``: the same objects (the same attributes,
    in the same order, with the same values) and rows, ~3x cheaper (a reset makes N).

    Why: ``Device.__init__`` spends ~5 us a device in its thermal object's set-up, a dozen
    attribute and numpy item writes and two property setters. Here each object's attributes
    are stored straight, the thermal objects share their class's constants (an immutable
    tuple) and the heat rows are written in one assignment (:func:`heat_row_of`, the row
    ``__init__`` writes); ``tests/offload_rl/cell/test_cell_devices.py`` compares them."""
    n = len(offsets_s)
    compiled = thermal_compiled()  # RowThermal's default, as __init__ leaves it
    constants: dict[int, tuple[float, ...]] = {}  # id(class) -> run_constants
    rows: dict[int, int] = {}  # id(class) -> its row in table
    table: list[list[float]] = []
    key = []
    for c in classes:
        r = rows.get(id(c))
        if r is None:
            r = rows[id(c)] = len(table)
            table.append(heat_row_of(c, thermal))
            constants[id(c)] = run_constants(c)
        key.append(r)
    if n:
        heat[:n] = np.array(table, dtype=np.float64)[key]
    times, values, counts = samples
    counted = counts[:n].tolist()
    new = object.__new__
    devices: list[Device] = []
    for j in range(n):
        c, link = classes[j], links[j]
        # RowThermal.__init__'s and Device.__init__'s attributes, stored in their order (the
        # order the type's shared instance keys have: plain stores, no __dict__, keep the
        # objects' attributes in their inline values); the temperature, busy_until and
        # _thermal_t are in the heat row
        th = new(RowThermal)
        th._heat = heat
        th._row = j
        th.cls = c
        th.compiled = compiled
        th._constants = constants[id(c)]
        d = new(Device)
        d.index = j
        d.class_index = class_index[j]
        d.cls = c
        d.thermal = th
        d.thermal_on = thermal
        d._heat = heat
        d.heat_row = j
        d.radio = Radio(radios[j])
        d.link = link
        d.uplink = link.uplink
        d.offset_s = offsets_s[j]
        d.noise_sd = noise_sd
        d.rng = rngs[j]
        d.memory = SessionMemory()
        d.kept_local = {}
        d.sample_times = times
        d.sample_values = values
        d.sample_counts = counts
        d.sample_row = j
        d._n_samples = counted[j]
        devices.append(d)
    return devices


def scan_samples(
    times: list[float], values: list[float], t: float, history: int
) -> tuple[list[float], float]:
    """:meth:`Device.samples_until` in general: scan back from the newest sample until
    ``history`` measured by ``t`` are found (oldest first), and the newest one's time."""
    picked: list[float] = []
    newest = 0.0
    for j in range(len(times) - 1, -1, -1):
        if times[j] <= t:
            if not picked:
                newest = times[j]
            picked.append(values[j])
            if len(picked) >= history:
                break
    picked.reverse()
    return picked, newest
