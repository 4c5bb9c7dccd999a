"""Network bandwidth traces: loading, resampling and fast cyclic queries.

A :class:`Trace` is link capacity, piecewise constant on a fixed step (``DEFAULT_STEP_S``).
The environment asks it two questions on every step — how many bytes fit in ``[t0, t1]``
(:meth:`Trace.bytes_between`) and when ``n`` bytes started at ``t0`` finish
(:meth:`Trace.finish_time`) — so both are exact integrals of the piecewise-constant capacity
computed with float arithmetic and one ``bisect`` on a precomputed cumulative-bytes list, never a
loop over samples.

Time is cyclic, as in Pensieve's simulator: a trace of period ``T`` repeats forever, so any time
``t`` is valid and a long transfer may wrap several times. A trace with zero total capacity is
rejected, since nothing would ever finish on it.

File formats (see ``../shared/README.md``):

* **cooked** — ``time_s Mbps`` per line, whitespace-separated, time non-decreasing. Sample ``i``
  holds on ``(t[i-1], t[i]]`` (Pensieve's convention). The first sample has no interval before
  it: we follow Pensieve's simulator, which never uses it (its pointer starts at 1 and wraps back
  to 1), so the trace spans ``[t[0], t[-1]]`` and time is shifted to start at 0. This is also the
  convention under which the per-family table in ``../shared/README.md`` is reproduced to its
  printed precision (giving sample 0 a median-step interval instead moves e.g. Ghent's p10 from
  9.8 to 9.7 Mbps and NYC's p90 from 18.2 to 18.1 Mbps).
* **mahimahi** — one integer millisecond timestamp per line, each an opportunity to deliver one
  1500-byte packet (``.up``/``.down`` files). The period is the last timestamp, as in mahimahi's
  link emulator, which replays the schedule shifted by that amount. A packet at ``t`` ms is
  delivered during the millisecond ``[t, t+1)``, taken modulo the period (so the last timestamp
  lands in the first millisecond of the next cycle).
* **csv** — a header naming a time column (``time_s``/``time``/``timestamp_s``) and a rate
  column (``mbps``/``throughput_mbps``/``bandwidth_mbps``); rows follow the cooked convention.

Resampling to the fixed step integrates bytes into bins, so total bytes are conserved. When the
period is not a whole number of steps, the last, partial bin's bytes are spread over a full step
(the period grows by less than one step; bytes stay exact).
"""

from __future__ import annotations

import csv
import io
import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from offload_rl.errors import DataFileError

TraceFormat = Literal["auto", "cooked", "mahimahi", "csv"]
TRACE_FORMATS: tuple[str, ...] = get_args(TraceFormat)

DEFAULT_STEP_S: float = 0.1
"""Resampling step of loaded traces, in seconds."""

BYTES_PER_MBIT: float = 125_000.0
"""1 Mbit/s sustained for one second delivers this many bytes."""

MAHIMAHI_PACKET_BYTES: int = 1500
"""Bytes per delivery opportunity (one line) in a mahimahi trace."""

CSV_TIME_COLUMNS: tuple[str, ...] = ("time_s", "time", "timestamp_s")
CSV_RATE_COLUMNS: tuple[str, ...] = ("mbps", "throughput_mbps", "bandwidth_mbps")

# Relative slack when deciding whether a period is a whole number of steps (float noise).
_STEP_SLACK = 1e-9
# Relative slack (of the bytes involved) under which finish_time treats two byte counts as equal.
_SNAP_REL = 1e-12

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Trace:
    """Link capacity in Mbps, piecewise constant on ``[i*step_s, (i+1)*step_s)``, repeating.

    ``cum_bytes[i]`` is the number of bytes deliverable in ``[0, i*step_s]`` (length ``n+1``);
    it is derived in ``__post_init__``. ``mbps`` is copied and made read-only so the cache
    cannot go stale. Equality compares the metadata and the samples.
    """

    name: str
    family: str
    source: str
    step_s: float
    mbps: FloatArray = field(repr=False)
    cum_bytes: FloatArray = field(init=False, repr=False, compare=False)
    # Plain-Python copies for the hot path: float math on lists beats numpy scalars.
    _cum: list[float] = field(init=False, repr=False, compare=False)
    _bps: list[float] = field(init=False, repr=False, compare=False)
    _rates: list[float] = field(init=False, repr=False, compare=False)
    _period: float = field(init=False, repr=False, compare=False)
    _total: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        step = float(self.step_s)
        if not (math.isfinite(step) and step > 0.0):
            raise ValueError(f"trace {self.name!r}: step_s must be a positive number, got {step}")
        rates = np.array(self.mbps, dtype=np.float64)
        if rates.ndim != 1 or rates.size == 0:
            raise ValueError(f"trace {self.name!r}: mbps must be a non-empty 1-D sequence")
        if not np.all(np.isfinite(rates)):
            raise ValueError(f"trace {self.name!r}: mbps contains NaN or infinity")
        if np.any(rates < 0.0):
            raise ValueError(f"trace {self.name!r}: mbps contains a negative rate")
        rates.flags.writeable = False
        bytes_per_s = rates * BYTES_PER_MBIT
        cum = np.empty(rates.size + 1, dtype=np.float64)
        cum[0] = 0.0
        np.cumsum(bytes_per_s * step, out=cum[1:])
        cum.flags.writeable = False
        total = float(cum[-1])
        if not total > 0.0:
            raise ValueError(
                f"trace {self.name!r}: total capacity is zero, nothing would ever finish"
            )
        set_ = object.__setattr__
        set_(self, "step_s", step)
        set_(self, "mbps", rates)
        set_(self, "cum_bytes", cum)
        set_(self, "_cum", cum.tolist())
        set_(self, "_bps", bytes_per_s.tolist())
        set_(self, "_rates", rates.tolist())
        set_(self, "_period", rates.size * step)
        set_(self, "_total", total)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (
            self.name == other.name
            and self.family == other.family
            and self.source == other.source
            and self.step_s == other.step_s
            and np.array_equal(self.mbps, other.mbps)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.family, self.source, self.step_s, self.mbps.size))

    # -- queries -----------------------------------------------------------------------------

    @property
    def duration_s(self) -> float:
        """The period: the trace repeats after this many seconds."""
        return self._period

    @property
    def total_bytes(self) -> float:
        """Bytes deliverable in one period."""
        return self._total

    def capacity_mbps(self, t: float) -> float:
        """Capacity at time ``t`` (cyclic)."""
        x = t % self._period
        i = int(x / self.step_s)
        rates = self._rates
        return rates[i] if i < len(rates) else rates[-1]

    def _cycle_bytes(self, x: float) -> float:
        """Bytes deliverable in ``[0, x]`` for ``0 <= x <= period`` (up to float noise)."""
        i = int(x / self.step_s)
        bps = self._bps
        if i >= len(bps):
            return self._total
        return self._cum[i] + bps[i] * (x - i * self.step_s)

    def bytes_between(self, t0: float, t1: float) -> float:
        """Bytes deliverable in ``[t0, t1]``, integrating across capacity changes and wraps."""
        if t1 < t0:
            raise ValueError(f"bytes_between: t1={t1} is before t0={t0}")
        period = self._period
        k0 = math.floor(t0 / period)
        k1 = math.floor(t1 / period)
        return (k1 - k0) * self._total + (
            self._cycle_bytes(t1 - k1 * period) - self._cycle_bytes(t0 - k0 * period)
        )

    def finish_time(self, t0: float, nbytes: float) -> float:
        """Absolute time at which ``nbytes`` are delivered when sending starts at ``t0``.

        The earliest ``t >= t0`` with ``bytes_between(t0, t) == nbytes``; it may lie several
        periods later. Zero bytes finish at ``t0``.
        """
        if nbytes <= 0.0:
            if nbytes == 0.0:
                return t0
            raise ValueError(f"finish_time: nbytes must be >= 0, got {nbytes}")
        period = self._period
        total = self._total
        step = self.step_s
        cum = self._cum
        k0 = math.floor(t0 / period)
        # Byte offset of the finish, counted from the start of cycle k0.
        r = self._cycle_bytes(t0 - k0 * period) + nbytes
        k = math.floor(r / total)
        r -= k * total
        # Rounding slack: a finish within `tol` bytes of the end of an outage (a flat stretch
        # of `cum`) belongs before the outage, not after it.
        tol = _SNAP_REL * (total + nbytes)
        if r <= tol and k > 0:
            # Finishing at a cycle boundary: the earliest instant is in the previous cycle,
            # at the end of its last non-zero step.
            k -= 1
            r += total
        if r > total:
            r = total
        j = bisect_left(cum, r - tol)
        if j == 0:
            x = 0.0
        else:
            i = j - 1
            x = i * step + (r - cum[i]) / self._bps[i]
        t = (k0 + k) * period + x
        return t if t > t0 else t0

    def mean_mbps(self, t0: float, t1: float) -> float:
        """Average capacity over ``[t0, t1]`` — what a throughput measurement would report."""
        if t1 == t0:
            return self.capacity_mbps(t0)
        return self.bytes_between(t0, t1) / (BYTES_PER_MBIT * (t1 - t0))

    # -- construction ------------------------------------------------------------------------

    def scaled(self, factor: float) -> Trace:
        """The same trace with every rate multiplied by ``factor`` (e.g. uplink = 0.3 x down)."""
        if not (math.isfinite(factor) and factor > 0.0):
            raise ValueError(f"scale factor must be a positive number, got {factor}")
        return Trace(self.name, self.family, self.source, self.step_s, self.mbps * factor)

    @classmethod
    def constant(
        cls,
        mbps: float,
        duration_s: float = 60.0,
        step_s: float = DEFAULT_STEP_S,
        name: str = "constant",
    ) -> Trace:
        """A flat link, for tests and for scenarios without a trace."""
        if not (math.isfinite(duration_s) and duration_s > 0.0):
            raise ValueError(f"duration_s must be a positive number, got {duration_s}")
        n = max(1, round(duration_s / step_s))
        return cls(name, "constant", f"constant:{mbps:g}", step_s, np.full(n, float(mbps)))

    @classmethod
    def from_steps(
        cls,
        mbps: Sequence[float] | FloatArray,
        step_s: float,
        name: str = "steps",
        family: str = "steps",
    ) -> Trace:
        """A trace from per-step rates given on ``step_s`` (no resampling)."""
        return cls(name, family, f"steps:{name}", step_s, np.asarray(mbps, dtype=np.float64))


# -- resampling --------------------------------------------------------------------------------


def resample_bytes(edges_s: FloatArray, interval_bytes: FloatArray, step_s: float) -> FloatArray:
    """Integrate bytes given on intervals ``[edges[i], edges[i+1])`` into Mbps bins of ``step_s``.

    ``edges_s`` is non-decreasing (zero-width intervals carry no bytes); time is shifted to start
    at ``edges_s[0]``. Bytes are conserved exactly; a trailing partial bin is spread over a full
    step.
    """
    span = float(edges_s[-1] - edges_s[0])
    n = max(1, math.ceil(span / step_s - _STEP_SLACK))
    cum = np.concatenate(([0.0], np.cumsum(interval_bytes, dtype=np.float64)))
    bounds = np.minimum(edges_s[0] + np.arange(n + 1, dtype=np.float64) * step_s, edges_s[-1])
    bounds[-1] = edges_s[-1]
    cum_at = np.interp(bounds, edges_s, cum)
    per_bin = np.maximum(np.diff(cum_at), 0.0)
    return per_bin / (BYTES_PER_MBIT * step_s)


# -- parsing -------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataFileError(path, "no such file")
    if path.is_dir():
        raise DataFileError(path, "is a folder, not a trace file (use load_traces for folders)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(path, f"not a text file ({err.reason})") from None
    except OSError as err:
        raise DataFileError(path, f"cannot read: {err.strerror or err}") from None
    if not text.strip():
        raise DataFileError(path, "empty file")
    return text


def _data_lines(text: str) -> list[tuple[int, str]]:
    """Non-blank, non-comment lines with their 1-based line numbers."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append((number, line))
    return out


def _parse_float(path: Path, token: str, what: str, line: int) -> float:
    try:
        value = float(token)
    except ValueError:
        raise DataFileError(path, f"{what} is not a number: {token!r}", line=line) from None
    if not math.isfinite(value):
        raise DataFileError(path, f"{what} is not finite: {token!r}", line=line)
    return value


def _check_sample(path: Path, t: float, rate: float, prev_t: float | None, line: int) -> None:
    if t < 0.0:
        raise DataFileError(path, f"negative time {t:g} s", line=line)
    if prev_t is not None and t < prev_t:
        raise DataFileError(path, f"time goes backwards ({t:g} s after {prev_t:g} s)", line=line)
    if rate < 0.0:
        raise DataFileError(path, f"negative rate {rate:g} Mbps", line=line)


def _samples_to_mbps(
    path: Path, times: list[float], rates: list[float], step_s: float
) -> FloatArray:
    """Resample cooked-convention samples (sample i on ``(t[i-1], t[i]]``; sample 0 unused)."""
    if len(times) < 2:
        raise DataFileError(path, "needs at least 2 samples (sample 0 only marks the start)")
    t = np.asarray(times, dtype=np.float64)
    r = np.asarray(rates, dtype=np.float64)
    if not t[-1] > t[0]:
        raise DataFileError(path, "zero duration: all samples have the same time")
    interval_bytes = r[1:] * np.diff(t) * BYTES_PER_MBIT
    return resample_bytes(t, interval_bytes, step_s)


def _parse_cooked(path: Path, text: str, step_s: float) -> FloatArray:
    times: list[float] = []
    rates: list[float] = []
    prev: float | None = None
    for line, content in _data_lines(text):
        parts = content.split()
        if len(parts) != 2:
            raise DataFileError(
                path, f"expected 2 columns (time_s Mbps), got {len(parts)}", line=line
            )
        t = _parse_float(path, parts[0], "time", line)
        rate = _parse_float(path, parts[1], "rate", line)
        _check_sample(path, t, rate, prev, line)
        times.append(t)
        rates.append(rate)
        prev = t
    return _samples_to_mbps(path, times, rates, step_s)


def _parse_mahimahi(path: Path, text: str, step_s: float) -> FloatArray:
    stamps: list[int] = []
    prev = 0
    for line, content in _data_lines(text):
        if " " in content or "\t" in content:
            raise DataFileError(
                path,
                f"expected 1 column (ms timestamp), got {len(content.split())}",
                line=line,
            )
        try:
            ms = int(content)
        except ValueError:
            raise DataFileError(
                path, f"timestamp is not an integer number of ms: {content!r}", line=line
            ) from None
        if ms < 0:
            raise DataFileError(path, f"negative timestamp {ms} ms", line=line)
        if ms < prev:
            raise DataFileError(path, f"time goes backwards ({ms} ms after {prev} ms)", line=line)
        stamps.append(ms)
        prev = ms
    if not stamps:
        raise DataFileError(path, "no timestamps (only comments)")
    period_ms = stamps[-1]
    if period_ms <= 0:
        raise DataFileError(path, "zero duration: the last timestamp (the period) is 0 ms")
    slots = np.asarray(stamps, dtype=np.int64) % period_ms
    per_ms_bytes = np.bincount(slots, minlength=period_ms).astype(np.float64)
    per_ms_bytes *= MAHIMAHI_PACKET_BYTES
    edges = np.arange(period_ms + 1, dtype=np.float64) / 1000.0
    return resample_bytes(edges, per_ms_bytes, step_s)


def _parse_csv(path: Path, text: str, step_s: float) -> FloatArray:
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    header_line = 0
    time_col = rate_col = -1
    times: list[float] = []
    rates: list[float] = []
    prev: float | None = None
    for row in rows:
        line = rows.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            header_line = line
            time_col = next((header.index(c) for c in CSV_TIME_COLUMNS if c in header), -1)
            rate_col = next((header.index(c) for c in CSV_RATE_COLUMNS if c in header), -1)
            if time_col < 0 or rate_col < 0:
                missing = "time" if time_col < 0 else "rate"
                accepted = CSV_TIME_COLUMNS if time_col < 0 else CSV_RATE_COLUMNS
                raise DataFileError(
                    path,
                    f"header has no {missing} column (accepted: {', '.join(accepted)})",
                    line=line,
                )
            continue
        if len(row) != len(header):
            raise DataFileError(
                path,
                f"expected {len(header)} columns as in the header (line {header_line}), "
                f"got {len(row)}",
                line=line,
            )
        t = _parse_float(path, row[time_col].strip(), "time", line)
        rate = _parse_float(path, row[rate_col].strip(), "rate", line)
        _check_sample(path, t, rate, prev, line)
        times.append(t)
        rates.append(rate)
        prev = t
    return _samples_to_mbps(path, times, rates, step_s)


def detect_format(path: str | Path, text: str | None = None) -> str:
    """Guess a file's format: by suffix (``.up``/``.down``, ``.csv``), else by its first line."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".up", ".down"):
        return "mahimahi"
    if suffix == ".csv":
        return "csv"
    if text is None:
        text = _read_text(p)
    lines = _data_lines(text)
    if not lines:
        raise DataFileError(p, "empty file")
    line, first = lines[0]
    if "," in first:
        return "csv"
    tokens = first.split()
    numeric = True
    for token in tokens:
        try:
            float(token)
        except ValueError:
            numeric = False
    if not numeric and any(t.lower() in CSV_TIME_COLUMNS + CSV_RATE_COLUMNS for t in tokens):
        return "csv"
    if len(tokens) == 1:
        return "mahimahi"
    if len(tokens) == 2:
        return "cooked"
    raise DataFileError(
        p,
        f"cannot tell the format: {len(tokens)} columns (cooked has 2, mahimahi 1, csv a header)",
        line=line,
    )


_PARSERS = {"cooked": _parse_cooked, "mahimahi": _parse_mahimahi, "csv": _parse_csv}


def load_trace(
    path: str | Path, fmt: TraceFormat = "auto", step_s: float = DEFAULT_STEP_S
) -> Trace:
    """Load one trace file and resample it to ``step_s``; its family is its folder's name."""
    if fmt not in TRACE_FORMATS:
        raise ValueError(f"unknown trace format {fmt!r}; expected one of {TRACE_FORMATS}")
    if not (math.isfinite(step_s) and step_s > 0.0):
        raise ValueError(f"step_s must be a positive number, got {step_s}")
    p = Path(path)
    text = _read_text(p)
    kind = detect_format(p, text) if fmt == "auto" else fmt
    mbps = _PARSERS[kind](p, text, step_s)
    if not float(mbps.sum()) > 0.0:
        raise DataFileError(p, "total capacity is zero: nothing would ever finish")
    return Trace(
        name=p.name,
        family=p.resolve().parent.name,
        source=str(p),
        step_s=step_s,
        mbps=mbps,
    )


def trace_files(folder: str | Path) -> list[Path]:
    """The trace files of a folder: regular, non-hidden files, sorted by name."""
    d = Path(folder)
    files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
    if not files:
        raise DataFileError(d, "folder has no trace files")
    return files


def load_traces(
    paths: Sequence[str | Path], fmt: TraceFormat = "auto", step_s: float = DEFAULT_STEP_S
) -> list[Trace]:
    """Load files and folders (a folder expands to its sorted, non-hidden files)."""
    out: list[Trace] = []
    for path in paths:
        p = Path(path)
        files = trace_files(p) if p.is_dir() else [p]
        out.extend(load_trace(f, fmt=fmt, step_s=step_s) for f in files)
    return out


def write_cooked(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` as a cooked file that :func:`load_trace` reads back to the same steps.

    Line 0 (``0.0``) only marks the start; its rate repeats the first step's for readability.
    """
    p = Path(path)
    step = trace.step_s
    rates: list[float] = trace.mbps.tolist()
    lines = [f"0.0\t{rates[0]!r}"]
    # Times rounded to 1 ns so that 3 * 0.1 is written 0.3, not 0.30000000000000004.
    lines.extend(f"{round((i + 1) * step, 9)!r}\t{rate!r}" for i, rate in enumerate(rates))
    try:
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as err:
        raise DataFileError(p, f"cannot write: {err.strerror or err}") from None
