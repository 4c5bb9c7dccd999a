"""The tables the compiled placements read (:mod:`offload_rl.cell.compiled_dispatch`).

A decision placed at the edge or a split, on the device (``k = L``) or in the cloud is one
kernel call in compiled mode; the kernels read the device tier's and the cloud's profiles and
each device's and the cell's constants from flat float tables built here, once per episode (a
reset builds new devices; :attr:`EdgeTables.devices` says whose). Plain numpy arrays and list
references: a forked (deep-copied) simulator's tables are its own and point at its own
devices (the kernels the tables bind are looked up again in a copy).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.device import Device
from offload_rl.compiled_profile import CompiledProfile
from offload_rl.workloads import Request

# the device tier's profile, one row per quantity over the boundary k = 0..L (prefix sums as
# CompiledProfile keeps them), then the embedding's and the LM head's constants
P_C0, P_C1, P_C2, D_C0, D_C1, ACT, EMBED, HEAD = range(8)
EMBED_PREFILL, EMBED_DECODE = 0, 3  # EMBED and HEAD rows: prefill (a, b, c), then decode (0, 1)
# one row per device: its class's thermal constants (thermal_run's argument order), whether
# heat is modelled, its uplink trace's step, period and bytes per period (its trace's arrays and
# offset travel with each call: a replay moves the offset, and may relink a device, see
# EdgeTables.relink), then the cell's constants the placement reads (the same in every row: a
# call passes fewer arguments): the edge RTT and the reward's energy and latency weights
(C_COMPUTE_W, C_AMBIENT, C_R, C_TAU, C_THROTTLE, C_FLOOR, C_MIN_CLOCK, C_THERMAL_ON,
 C_STEP, C_PERIOD, C_BYTES_PER_PERIOD, C_RTT, C_W_ENERGY, C_W_LATENCY, C_W_SLO,
 C_W_COST) = range(16)  # fmt: skip
N_DEVICE_COLUMNS = 16
# room a call needs in each ledger (latency heap, spreads heap, lumps) so that none overflows
# and each is left with the room the reference keeps after every call (two rows, one lump)
ROOM_LATENCY, ROOM_SPREADS, ROOM_LUMPS = 3, 6, 3
ROOM_HEAP = max(ROOM_LATENCY, ROOM_SPREADS)  # what make_room asks of both heaps

KERNELS = "compiled_dispatch"
_BOUND = ("place", "place_local", "place_cloud")  # EdgeTables' kernels (left out of copies)


def kernels() -> ModuleType:
    """:mod:`offload_rl.cell.compiled_dispatch`, compiled (or loaded from numba's cache) at the
    first call; raises one of :data:`~offload_rl.cell.compiled_decode.COMPILE_ERRORS`."""
    return cd.kernels(KERNELS)


def profile_table(dev: CompiledProfile) -> np.ndarray:
    """The device tier's prefix sums, activation bytes and embedding constants, as the kernel
    reads them (the same doubles: the kernel repeats the profile's operations on them)."""
    width = max(dev.n_layers + 1, 5)
    table = np.zeros((HEAD + 1, width))
    for row, values in (
        (P_C0, dev.prefill_c0), (P_C1, dev.prefill_c1), (P_C2, dev.prefill_c2),
        (D_C0, dev.decode_c0), (D_C1, dev.decode_c1),
        (ACT, [float(b) for b in dev.activation_bytes_per_token]),
        (EMBED, [*dev.embed_prefill, *dev.embed_decode]),
        (HEAD, [*dev.head_prefill, *dev.head_decode]),
    ):  # fmt: skip
        table[row, : len(values)] = values
    return table


def device_table(devices: list[Device], *cell: float) -> np.ndarray:
    """Each device's thermal constants, whether heat is modelled and its uplink's constants,
    then the cell's (``cell``: the edge RTT and the reward's energy, latency, SLO and cost
    weights; zeros where not given): the kernel's ``C_*`` columns."""
    given = (*cell, *[0.0] * (N_DEVICE_COLUMNS - C_RTT - len(cell)))
    rows = []
    for d in devices:
        c, up = d.cls, d.uplink
        rows.append(
            (c.compute_w, c.ambient_c, c.r_k_per_w, c.tau_s, c.throttle_on_c, c.floor_c,
             c.min_clock, 1.0 if d.thermal_on else 0.0, up.step_s, up._period, up._total,
             *given)
        )  # fmt: skip
    return np.array(rows, dtype=np.float64).reshape(len(devices), -1)


def _read_only(values: np.ndarray) -> np.ndarray:
    """A read-only view of ``values`` (the array itself keeps its flags)."""
    view = values.view()
    view.flags.writeable = False
    return view


class EdgeTables:
    """One episode's flat tables for the compiled edge placement (``usable`` False: none, the
    episode's placements run in Python)."""

    place: Callable[..., Any]  # place_edge: its dispatcher, then its entry point (pin)
    pinned: bool
    traces: list[tuple[np.ndarray, np.ndarray]]  # per device: its uplink's cum bytes, rates

    def __init__(
        self,
        devices: list[Device],
        requests: list[Request],
        profile: CompiledProfile | None,
        cell: tuple[float, ...] = (),
        cloud: CompiledProfile | None = None,
        episode_arrays: tuple[np.ndarray, ...] = (),
    ) -> None:
        """``profile``: the device tier's, None where the episode is not compiled; ``cell``:
        the edge RTT and the reward's energy, latency, SLO and cost weights; ``cloud``: the
        cloud tier's profile (its placement compiled where it has the device's layers and no
        sliding-window layers: :attr:`cloud` is None otherwise); ``episode_arrays``: the radio
        bank's table, awake list and levels, the cell's heat rows and its samples' times,
        values and counts, which with the profile and device tables lead
        :func:`~offload_rl.cell.compiled_dispatch.place_edge`'s arguments as :attr:`leading`
        (one tuple for the episode: no attribute reads per call)."""
        self.devices = devices  # the episode's lists (a reset makes new ones): whose tables
        self.requests = requests
        self.usable = profile is not None and not profile.windowed
        if profile is None or not self.usable:
            return
        try:  # compiled (or loaded) now, so a placement never meets a failed compile
            module = kernels()
            self._bind(module)
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
            self.usable = False
            return
        self.profile = profile_table(profile)
        self.table = device_table(devices, *cell)
        self.cloud = None
        if cloud is not None and not cloud.windowed and cloud.n_layers == profile.n_layers:
            self.cloud = profile_table(cloud)
        self.uplinks = [d.uplink for d in devices]  # whose constants the table's rows hold
        self._trace_views()
        if episode_arrays:
            r, awake, levels, heat, times, values, counts = episode_arrays
            self.leading = (r, awake, levels, self.profile, self.table, heat, times, values,
                            counts)  # fmt: skip
        # per split, whether an upload always has bytes (prefill >= 1 new token): its sample
        # is certain, so the caller may draw its noise before the call
        self.sends = [int(b) > 0 for b in self.profile[ACT, : profile.n_layers + 1]]

    def relink(self, device: Device) -> None:
        """The device's uplink changed since the table was built: its row's trace constants
        follow (the placement checks ``uplinks[j] is device.uplink`` at every call)."""
        up, row = device.uplink, self.table[device.index]
        row[C_STEP], row[C_PERIOD], row[C_BYTES_PER_PERIOD] = up.step_s, up._period, up._total
        self.uplinks[device.index] = up
        self.traces[device.index] = _read_only(up.cum_bytes), _read_only(up.mbps)

    def _trace_views(self) -> None:
        """Each uplink's cumulative bytes and rates as :func:`~offload_rl.cell.
        compiled_dispatch.place_edge` takes them: read-only views, as a recorded trace's
        arrays are and a deep copy's are not, so that the kernel holds one specialization
        (:meth:`pin`)."""
        self.traces = [(_read_only(up.cum_bytes), _read_only(up.mbps)) for up in self.uplinks]

    def pin(self) -> None:
        """After the episode's first edge placement, which numba's dispatcher typed: call
        :func:`~offload_rl.cell.compiled_dispatch.place_edge`'s one specialization straight
        (:func:`~offload_rl.cell.kernel_jit.entry_point`: ~1-2 us a call less, measured); its
        caller passes the same types at every call (the traces from :attr:`traces`)."""
        from offload_rl.cell.kernel_jit import entry_point  # imports numba: compiled only

        self.place = entry_point(self.place)
        self.pinned = True

    def __getstate__(self) -> dict[str, object]:
        """A copy (the cell oracle deep-copies the simulator) leaves the compiled kernels out
        (numba's dispatcher is not copied) and the trace views (a copy of a view is a
        writable array): :meth:`__setstate__` makes them again."""
        state = self.__dict__.copy()
        for name in (*_BOUND, "traces"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        if self.usable:
            self._bind(kernels())
            self._trace_views()

    def _bind(self, module: ModuleType) -> None:
        """The placement kernels, as attributes (looked up once per episode, not per call);
        the edge placement's through numba's dispatcher until :meth:`pin`."""
        self.place = module.place_edge
        self.pinned = False
        self.place_local = module.place_local
        self.place_cloud = module.place_cloud

    def serves(self, devices: list[Device], requests: list[Request]) -> bool:
        """These tables are the episode's (built from these lists)."""
        return self.devices is devices and self.requests is requests
