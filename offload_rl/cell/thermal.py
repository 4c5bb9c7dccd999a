"""A phone's heat: first-order thermal model, throttle curve, and the level the OS shows.

Why it matters: running layers on the phone now makes the next local request slower (PARAMETERS.md
§3a: an iPhone 16 Pro falls from ~40 to 22.6 tok/s under sustained inference; a Galaxy S24 Ultra's
GPU is floored). The model, one lumped temperature ``T`` per device::

    tau * dT/dt = T_amb + R * P - T          P = compute_w * clock   while running, 0 when idle
    clock(T) = 1                              T <= throttle_on_c
             = linear down to min_clock       throttle_on_c < T < floor_c
             = min_clock                      T >= floor_c

Work is counted in *full-clock seconds*: a request that takes ``w`` s on a cool phone takes longer
when throttled, at ``clock`` units of work per second. Power scales with the clock (energy per unit
of work is unchanged by throttling, an assumption: DVFS lowers voltage too, so real energy per
token falls a little when throttled). Integration is exact for a constant power over sub-steps of
at most ``tau / 20``, with the clock held at its value at the sub-step's start.

The policy never sees ``T``: it sees the OS's coarse level, modelled on iOS ``thermalState``
(nominal, fair "elevated, no throttling yet", serious "performance reduced", critical
"significantly reduced"); Android's ``THERMAL_STATUS`` NONE/LIGHT, MODERATE/SEVERE, CRITICAL map
onto the same four. Here: nominal below ``fair_c``, fair below ``throttle_on_c``, serious while
throttled above the floor, critical at the floor.

Left out on purpose: a second (chassis) time constant, so cooling after a long run is as fast as
heating (real phones stay warm for minutes); heat from the radio, screen and charging; per-unit
(CPU/GPU/NPU) power; ambient changes. How each constant was obtained is written next to it in
:data:`DEVICE_CLASSES`; assumptions are called assumptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from offload_rl.cell import compiled_decode as cd

OS_LEVELS: tuple[str, ...] = ("nominal", "fair", "serious", "critical")


@dataclass(frozen=True, slots=True)
class DeviceClass:
    """Thermal and power constants of one class of phone (see :data:`DEVICE_CLASSES`)."""

    name: str
    compute_w: float  # power while running inference at full clock
    ambient_c: float
    r_k_per_w: float  # thermal resistance to ambient
    tau_s: float  # thermal time constant
    fair_c: float  # OS level 'fair' from here
    throttle_on_c: float  # clock starts to fall
    floor_c: float  # clock reaches min_clock
    min_clock: float
    sources: str
    # total RAM of the class's phones; None: it holds any model (see model_memory_bytes)
    ram_gb: float | None = None

    def __post_init__(self) -> None:
        if not (self.ambient_c < self.fair_c <= self.throttle_on_c < self.floor_c):
            raise ValueError(f"{self.name}: need ambient < fair <= throttle_on < floor")
        if not (0.0 < self.min_clock <= 1.0 and self.r_k_per_w > 0 and self.tau_s > 0):
            raise ValueError(f"{self.name}: min_clock in (0, 1], r and tau > 0")

    def model_memory_bytes(self) -> float | None:
        """Bytes an app can give a model on this class: RAM less what the OS and other apps
        keep (:data:`OS_RESERVED_GB`); None when the class has no stated RAM."""
        if self.ram_gb is None:
            return None
        return max(self.ram_gb - OS_RESERVED_GB, 0.0) * 1e9

    def clock(self, temp_c: float) -> float:
        """Clock factor at ``temp_c`` (1 = full speed)."""
        if temp_c <= self.throttle_on_c:
            return 1.0
        if temp_c >= self.floor_c:
            return self.min_clock
        frac = (temp_c - self.throttle_on_c) / (self.floor_c - self.throttle_on_c)
        return 1.0 - frac * (1.0 - self.min_clock)


# Shared by every class (assumptions, stated once):
_AMBIENT_C = 25.0  # room temperature, the benchmarks' condition [assumption]
_THROTTLE_ON_C = 41.0  # lumped skin/chassis temperature where throttling starts, and
_FLOOR_C = 45.0  # where the clock hits its floor: skin limits of 43-45 C [V2 weak:
# omr.it.com "thermal throttling mobile LLM inference"], so throttling spans 41-45 C [assumption]
_FAIR_C = 36.0  # 'fair' 5 C before throttling: elevated, no throttling yet [assumption]
_MIN_CLOCK = 231.0 / 903.0  # = 0.256: Galaxy S24 Ultra GPU floored at 231 MHz [V2, PARAMETERS.md
# §3a, arXiv 2603.23640]; Adreno 750 maximum 903 MHz [R]


def _resistance_for(compute_w: float, sustained_clock: float) -> float:
    """R that puts the continuous-load equilibrium at ``sustained_clock`` [D].

    At equilibrium T = T_amb + R * compute_w * clock(T); with clock(T) = sustained_clock the
    temperature is where the throttle line gives that clock.
    """
    frac = (1.0 - sustained_clock) / (1.0 - _MIN_CLOCK)
    temp = _THROTTLE_ON_C + frac * (_FLOOR_C - _THROTTLE_ON_C)
    return (temp - _AMBIENT_C) / (compute_w * sustained_clock)


# What a phone's OS and other apps keep from an LLM app [D]: MLC LLM states that a 4-bit 7B
# model of about 4 GB needs a phone with 6 GB of RAM (mlc-llm site/index.md [V2]), so an app can
# give a model about RAM - 2 GB. (PARAMETERS.md's 4.0 GB model budget "of 12-16 GB" [R] is
# stricter; the cell scenario's comment explains why it is not used for flagships.)
OS_RESERVED_GB = 2.0


def _device_class(
    name: str,
    compute_w: float,
    sustained: float,
    tau_s: float,
    src: str,
    ram_gb: float | None = None,
) -> DeviceClass:
    return DeviceClass(
        name=name,
        compute_w=compute_w,
        ambient_c=_AMBIENT_C,
        r_k_per_w=_resistance_for(compute_w, sustained),
        tau_s=tau_s,
        fair_c=_FAIR_C,
        throttle_on_c=_THROTTLE_ON_C,
        floor_c=_FLOOR_C,
        min_clock=_MIN_CLOCK,
        sources=src,
        ram_gb=ram_gb,
    )


# tau_s = 43.7 s [D]: fitted so that, from ambient under continuous load, the clock is 0.75
# (-25%) at 35 s, as an iPhone 17 Pro's MLX GPU decode measured (-10% at 5 s, -25% at 35 s;
# dev.to "iPhone on-device LLM: the GPU wins the sprint", [V2]); the test reproduces it. With
# ~10 s benchmark iterations [assumption: 258-token prompt + a few hundred output tokens at
# 40 tok/s] the model reaches its sustained 0.565 in ~6 iterations: "within 8" as measured.
_FLAGSHIP_TAU_S = 43.7
DEVICE_CLASSES: dict[str, DeviceClass] = {
    c.name: c
    for c in (
        _device_class(
            "flagship",
            compute_w=5.0,  # SoC + DRAM under LLM load [R, PARAMETERS.md §6 power_compute_w]
            sustained=22.6 / 40.0,  # = 0.565: iPhone 16 Pro 40 -> 22.6 tok/s [V2, §3a]
            tau_s=_FLAGSHIP_TAU_S,
            ram_gb=12.0,  # 12-16 GB: Galaxy S24+ 12 GB [R], OnePlus 12 16 GB (cell.yaml) [V]
            src=(
                "sustained 22.6/40 tok/s iPhone 16 Pro (arXiv 2603.23640) [V2]; 5 W [R]; "
                "R = 6.49 K/W [D] so P*clock*R puts equilibrium at 0.565; tau 43.7 s [D] from "
                "-25% at 35 s (iPhone 17 Pro MLX, dev.to) [V2]; floor 231/903 MHz S24 Ultra [V2]"
            ),
        ),
        _device_class(
            "mid-range",
            compute_w=3.5,  # [assumption] 70% of the flagship's 5 W: smaller GPU, same node class
            sustained=0.70,  # [assumption] less power into a similar chassis throttles less
            tau_s=_FLAGSHIP_TAU_S,  # [assumption] similar chassis mass
            ram_gb=8.0,  # 8 GB mid-range phones, as cell.yaml's device comment [assumption]
            src="assumption: no sourced sustained-LLM measurement of a mid-range phone found",
        ),
        _device_class(
            "budget",
            compute_w=2.5,  # [assumption] CPU-only inference on a low-power SoC
            sustained=0.80,  # [assumption] low power, little throttling, but slow to begin with
            tau_s=_FLAGSHIP_TAU_S,  # [assumption]
            # 4-6 GB budget phones (cell.yaml's device comment) [assumption]: the top of the
            # band, so the smallest change; 4 GB would hold about half the layers
            ram_gb=6.0,
            src="assumption: no sourced sustained-LLM measurement of a budget phone found",
        ),
    )
}


def thermal_compiled(asked: bool | None = None) -> bool:
    """:attr:`DeviceThermal.compiled` for its ``compiled`` argument: machine code where asked
    (None: whenever numba is there) and available, its kernels loaded now (once per process;
    an object holds no module: it deep-copies)."""
    compiled = cd.AVAILABLE if asked is None else asked and cd.AVAILABLE
    if compiled:
        try:
            cd.devices()
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
            return False
    return compiled


def run_constants(c: DeviceClass) -> tuple[float, ...]:
    """The class's constants in ``compiled_devices.thermal_run``'s argument order."""
    return (
        c.compute_w, c.ambient_c, c.r_k_per_w, c.tau_s, c.throttle_on_c, c.floor_c, c.min_clock
    )  # fmt: skip


class DeviceThermal:
    """One device's temperature over time; the environment drives it with idle and run."""

    def __init__(
        self, device_class: DeviceClass, temp_c: float | None = None, compiled: bool | None = None
    ) -> None:
        """``compiled``: :meth:`run` in machine code (the default when numba is there, see
        :mod:`~offload_rl.cell.compiled_decode`); this class's Python is the reference."""
        self.cls = device_class
        self.temp_c = device_class.ambient_c if temp_c is None else float(temp_c)
        self.compiled = thermal_compiled(compiled)
        self._constants = run_constants(device_class)

    def clock(self) -> float:
        """Clock factor now (1 = full speed)."""
        return self.cls.clock(self.temp_c)

    def os_level(self) -> int:
        """The OS's coarse level now: index into :data:`OS_LEVELS`."""
        c = self.cls
        t = self.temp_c
        if t < c.fair_c:
            return 0
        if t <= c.throttle_on_c:
            return 1
        return 2 if t < c.floor_c else 3

    def idle(self, dt_s: float) -> None:
        """Cool towards ambient for ``dt_s`` seconds with no compute."""
        if dt_s > 0:
            amb = self.cls.ambient_c
            self.temp_c = amb + (self.temp_c - amb) * math.exp(-dt_s / self.cls.tau_s)

    def idle_then_run(self, idle_s: float, work_s: float) -> tuple[float, float]:
        """:meth:`idle` for ``idle_s`` then :meth:`run` (one compiled call when compiled)."""
        if self.compiled:
            kernel = cd.devices().thermal_run
            self.temp_c, wall, joules = kernel(self.temp_c, idle_s, work_s, *self._constants)
            return wall, joules
        self.idle(idle_s)
        return self.run(work_s)

    def run(self, work_s: float) -> tuple[float, float]:
        """Run ``work_s`` full-clock seconds of inference; returns (wall seconds, joules)."""
        if self.compiled:
            kernel = cd.devices().thermal_run
            self.temp_c, wall, joules = kernel(self.temp_c, 0.0, work_s, *self._constants)
            return wall, joules
        c = self.cls
        max_step = c.tau_s / 20.0
        remaining = work_s
        wall = energy = 0.0
        temp = self.temp_c
        while remaining > 1e-12:
            f = c.clock(temp)
            h = min(remaining / f, max_step)
            power = c.compute_w * f
            steady = c.ambient_c + c.r_k_per_w * power
            temp = steady + (temp - steady) * math.exp(-h / c.tau_s)
            remaining -= f * h
            wall += h
            energy += power * h
        self.temp_c = temp
        return wall, energy


# A device's heat row in the cell's array (:func:`heat_storage`): its state (temperature, the
# time that temperature is at, the end of its queued compute), then its class's constants the
# compiled decision reads for the OS level (and whether heat is modelled at all)
(H_TEMP, H_THERMAL_T, H_BUSY, H_AMBIENT, H_TAU, H_FAIR, H_THROTTLE, H_FLOOR,
 H_THERMAL_ON) = range(9)  # fmt: skip
HEAT_COLUMNS = 9


def heat_storage(n_devices: int) -> np.ndarray:
    """Empty heat rows for ``n_devices`` devices (``H_*`` columns). A plain array: a forked
    simulator's devices deep-copy it with them (one memo), and the compiled placement and
    decision read and write a device's row by its index instead of taking it as arguments."""
    return np.zeros((n_devices, HEAT_COLUMNS), dtype=np.float64)


class RowThermal(DeviceThermal):
    """A :class:`DeviceThermal` whose temperature lives in a row of a heat array (a cell's
    device: the compiled kernels update it there); the same arithmetic, read and written as
    a Python float."""

    def __init__(
        self,
        device_class: DeviceClass,
        temp_c: float | None = None,
        heat: np.ndarray | None = None,
        row: int = 0,
    ) -> None:
        """``heat``/``row``: start in that row of a cell's heat array (a new episode's devices
        are made straight into the cell's rows: no one-row array to allocate and move from)."""
        self._heat = heat_storage(1) if heat is None else heat
        self._row = row
        super().__init__(device_class, temp_c)

    @property
    def temp_c(self) -> float:
        return float(self._heat[self._row, H_TEMP])

    @temp_c.setter
    def temp_c(self, value: float) -> None:
        self._heat[self._row, H_TEMP] = value

    def bind(self, heat: np.ndarray, row: int) -> None:
        """Keep the temperature in ``heat[row]`` from now on (its current value moved there)."""
        heat[row, H_TEMP] = self._heat[self._row, H_TEMP]
        self._heat, self._row = heat, row
