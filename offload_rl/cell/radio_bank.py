"""The cell's radios as flat numpy arrays, for the compiled radio kernels (numba).

:class:`~offload_rl.cell.radio.Radio` (one Python object per phone) is the reference. In
compiled mode the simulator keeps every phone's RRC state in one :class:`RadioBank` (row ``j``
= device ``j``) and each phone's ``radio`` is a :class:`BankRadio`, the same interface over its
row; the per-step work (tokens streaming down keep radios connected, the awake radios settled
and put back to sleep) is one call into :mod:`offload_rl.cell.compiled_devices` instead of
~10 Python method calls per decision. Plain arrays: a forked simulator's bank deep-copies
with its radios (one memo) and is its own.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell.radio import RADIO_STATES, RadioParams
from offload_rl.traces import _SNAP_REL as SNAP_REL  # Trace.finish_time's, for its kernel
from offload_rl.traces import BYTES_PER_MBIT, Trace

_K: ModuleType  # compiled_devices, set by the first RadioBank
_PER_MBIT = float(BYTES_PER_MBIT)

IDLE, PROMOTION, CONNECTED, TAIL = range(4)  # indices into RADIO_STATES
# One row per radio, one float array (a kernel call costs ~0.1 us per array argument):
# Radio's attributes [energy (settled), settled to, promotion start, promotion end, active
# until, promotions] from their initial values,
R_ENERGY, R_SETTLED, R_PROMO_START, R_PROMO_END, R_ACTIVE, R_PROMOTIONS = range(6)
_INITIAL = (0.0, 0.0, -1.0, -1.0, -1e18, 0.0)
# RadioParams' numbers,
P_PROMO_S, P_PROMO_W, P_BETA_W, P_ALPHA_UP, P_ALPHA_DOWN, P_TAIL_S, P_TAIL_W, P_IDLE_W = range(
    6, 14
)
# the simulator's lazy settlement [awake (1.0) or not, joules charged to the ledger, asleep
# since, index of its idle power in levels]
S_AWAKE, S_CHARGED, S_SINCE, S_LEVEL = range(14, 18)


class RadioBank:
    """Every radio of a cell, and the simulator's record of which are awake."""

    def __init__(self, params: list[RadioParams]) -> None:
        n = len(params)
        self.params = params
        # idle powers in the order the simulator's dict first met them (a power is first met
        # with a parameter set not met before), with their asleep counts
        powers: list[float] = []
        level_of: dict[float, int] = {}
        asleep: list[int] = []
        # one row per distinct parameter set (a cell has a few: its radios share them)
        row_of: dict[int, int] = {}
        rows: list[tuple[float, ...]] = []
        row_level: list[int] = []
        key = []
        for p in params:
            r = row_of.get(id(p))
            if r is None:
                w = p.idle_w
                level = level_of.get(w)
                if level is None:
                    level = level_of[w] = len(powers)
                    powers.append(w)
                    asleep.append(0)
                r = row_of[id(p)] = len(rows)
                row_level.append(level)
                rows.append(
                    (*_INITIAL, p.promo_s, p.promo_w, p.beta_w, p.alpha_up_w_per_mbps,
                     p.alpha_down_w_per_mbps, p.tail_s, p.tail_w, w, 0.0, 0.0, 0.0, level)
                )  # fmt: skip
            key.append(r)
            asleep[row_level[r]] += 1  # every radio starts asleep
        self.table = np.array(rows, dtype=np.float64).reshape(-1, 18)[key].reshape(n, 18)
        levels = list(zip(powers, asleep, strict=True))
        self.levels = np.array(levels, dtype=np.float64).reshape(-1, 2)
        self.awake = np.zeros(n + 1, dtype=np.int64)  # [count, device indices in waking order]
        # the token streams (requests whose first token came, not finished): rows (request,
        # device, first token at the device), unordered; the kernel visits them by request
        self.streams = np.zeros((max(n, 8), 3))
        # the arrays a kernel call passes that never change size (one attribute read a call)
        self.fixed = (self.table, self.awake, self.levels)
        self.n_streams = 0
        self.settled_j = 0.0  # the radio joules the compiled simulator's advances charged
        global _K
        _K = cd.devices()  # compiled once per process (the bank holds no module: it deep-copies)

    def radio(self, j: int) -> BankRadio:
        return BankRadio(self, j)

    def wake(self, j: int, last: float) -> None:
        """``CellSimulator._wake``."""
        _K.wake(self.table, self.awake, self.levels, j, last)

    def add_stream(self, request: int, device: int, first_s: float) -> int:
        """A request's tokens stream down to ``device`` from ``first_s``: its row."""
        n = self.n_streams
        if n == self.streams.shape[0]:
            self.streams = np.concatenate([self.streams, np.zeros_like(self.streams)])
        self.streams[n] = (request, device, first_s)
        self.n_streams = n + 1
        return n

    def drop_stream(self, row: int) -> int:
        """A stream ended: the last row moves into ``row``; the request it holds now (-1: none
        moved)."""
        n = self.n_streams - 1
        self.n_streams = n
        if row == n:
            return -1
        s = self.streams
        s[row] = s[n]
        return int(s[row, 0])

    def stream_and_settle(self, t: float, last: float) -> float:
        """``CellSimulator._stream_tokens`` over the streams, then ``_radio_energy``: the radio
        joules of ``(last, t]``."""
        energy: float = _K.stream_and_settle(
            self.table, self.awake, self.levels, self.streams, self.n_streams, t, last
        )
        return energy


class BankRadio:
    """:class:`~offload_rl.cell.radio.Radio`'s interface over row ``j`` of a :class:`RadioBank`."""

    def __init__(self, bank: RadioBank, j: int) -> None:
        self.bank = bank
        self.j = j
        self.params = bank.params[j]

    @property
    def energy_j(self) -> float:
        return float(self.bank.table[self.j, R_ENERGY])

    @property
    def promotions(self) -> int:
        return int(self.bank.table[self.j, R_PROMOTIONS])

    def state(self, t: float) -> str:
        return RADIO_STATES[self.state_index(t)]

    def state_index(self, t: float) -> int:
        b = self.bank
        index: int = _K.radio_state(b.table, self.j, t)
        return index

    def wake_delay(self, t: float) -> float:
        b = self.bank
        delay: float = _K.wake_delay(b.table, self.j, t)
        return delay

    def transfer(self, t: float, duration_s: float, up_mbps: float, down_mbps: float) -> float:
        b = self.bank
        start: float = _K.transfer(b.table, self.j, t, duration_s, up_mbps, down_mbps)
        return start

    def upload(
        self, uplink: Trace, origin: float, t: float, nbytes: float
    ) -> tuple[float, float, float]:
        """``Device.upload``'s transfer of ``nbytes > 0`` over ``uplink`` (device time = trace
        time - ``origin``) in one call: (first byte, last byte, achieved Mbps)."""
        b = self.bank
        out: tuple[float, float, float] = _K.upload(
            b.table, self.j, uplink.cum_bytes, uplink.mbps, _PER_MBIT, uplink.step_s,
            uplink.duration_s, uplink.total_bytes, SNAP_REL, origin, t, nbytes,
        )  # fmt: skip
        return out

    def keep_connected(self, t: float, duration_s: float) -> float:
        b = self.bank
        start: float = _K.keep_connected(b.table, self.j, t, duration_s)
        return start

    def idle_from(self) -> float:
        return float(self.bank.table[self.j, R_ACTIVE] + self.bank.table[self.j, P_TAIL_S])

    def energy_until(self, t: float) -> float:
        b = self.bank
        energy: float = _K.energy_until(b.table, self.j, t)
        return energy
