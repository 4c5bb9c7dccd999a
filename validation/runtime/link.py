"""Frames on a TCP socket, and a sender that paces them to a bandwidth trace.

The simulator prices a transfer of ``B`` bytes that starts at trace time ``t`` as
``Trace.finish_time(t, B) - t`` plus the one-way delay; this link makes a real socket behave
the same way, so one trace drives both:

* the sender (one thread per direction, a FIFO like a radio's transmit queue) cuts a frame into
  chunks and lets chunk ``i`` leave only when the trace's capacity since the frame started
  covers every byte up to the end of that chunk (``finish_time`` of the cumulative bytes), so the
  bytes on the wire never run ahead of the trace;
* a frame's last byte leaves at the trace's finish time; the sender stamps the frame with
  ``deliver_at`` = that instant + the one-way delay (RTT/2), and the receiver holds a complete
  frame until then (a netem-style propagation delay; sender and receiver share this machine's
  monotonic clock, so no clock sync is needed).

Trace time and wall time are tied per request by a :class:`LinkClock` (``trace_t0`` at
``wall0``): the device sets it when a request starts and tells the edge, so both directions
read the trace at the same instants the simulator does. Control frames (set-up, reset) are not
paced: they are not part of any request.
"""

from __future__ import annotations

import json
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from offload_rl.traces import Trace

# kind u8, 3 pad, request u32, a i32, b i32, aux f64, deliver_at f64, meta_len u32, payload_len u32
HEADER = struct.Struct("<B3xIiiddII")
HEADER_BYTES = HEADER.size
DEFAULT_CHUNK_BYTES = 8192
MAX_META_BYTES = 64 << 20
MAX_PAYLOAD_BYTES = 1 << 31


def now() -> float:
    """The clock both processes stamp frames with (system-wide on Linux: CLOCK_MONOTONIC)."""
    return time.monotonic()


def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on :func:`now`'s clock (no-op if it has passed)."""
    delay = deadline - now()
    if delay > 0:
        time.sleep(delay)


@dataclass(slots=True)
class Frame:
    """One message: a kind, a few integers, optional JSON metadata and a binary payload."""

    kind: int
    request: int = 0
    a: int = 0
    b: int = 0
    aux: float = 0.0
    meta: dict[str, Any] | None = None
    payload: bytes = b""
    deliver_at: float = 0.0
    arrived_at: float = 0.0  # receiver: when the last byte was read (before the hold)

    def _meta_bytes(self) -> bytes:
        return b"" if self.meta is None else json.dumps(self.meta).encode()

    def wire_size(self) -> int:
        """Bytes the frame takes on the wire (header + metadata + payload)."""
        return HEADER_BYTES + len(self._meta_bytes()) + len(self.payload)

    def encode(self) -> bytes:
        meta = self._meta_bytes()
        head = HEADER.pack(
            self.kind,
            self.request,
            self.a,
            self.b,
            self.aux,
            self.deliver_at,
            len(meta),
            len(self.payload),
        )
        return head + meta + self.payload


class LinkClosedError(ConnectionError):
    """The peer closed the connection."""


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = sock.recv_into(view[got:], n - got)
        if r == 0:
            raise LinkClosedError("peer closed the connection")
        got += r
    return bytes(buf)


def read_frame(sock: socket.socket, hold: bool = True) -> Frame:
    """Read one frame; with ``hold``, wait until its ``deliver_at`` (the propagation delay)."""
    kind, request, a, b, aux, deliver_at, meta_len, payload_len = HEADER.unpack(
        _read_exact(sock, HEADER_BYTES)
    )
    if meta_len > MAX_META_BYTES or payload_len > MAX_PAYLOAD_BYTES:
        raise ConnectionError(f"frame too large (meta {meta_len} B, payload {payload_len} B)")
    meta = json.loads(_read_exact(sock, meta_len)) if meta_len else None
    payload = _read_exact(sock, payload_len) if payload_len else b""
    frame = Frame(kind, request, a, b, aux, meta, payload, deliver_at, arrived_at=now())
    if hold and deliver_at > 0:
        sleep_until(deliver_at)
    return frame


@dataclass
class LinkClock:
    """Trace time ``trace_t0`` happens at wall time ``wall0``; time runs at the same rate."""

    trace_t0: float = 0.0
    wall0: float = 0.0

    def trace_time(self, wall: float) -> float:
        return self.trace_t0 + (wall - self.wall0)

    def wall_time(self, trace_t: float) -> float:
        return self.wall0 + (trace_t - self.trace_t0)


@dataclass
class LinkShape:
    """One direction of the emulated radio link: its capacity trace and one-way delay."""

    trace: Trace
    one_way_s: float
    clock: LinkClock = field(default_factory=LinkClock)

    def delivery(self, start_wall: float, nbytes: int) -> float:
        """Wall time at which ``nbytes`` sent from ``start_wall`` have all left the sender."""
        t = self.clock.trace_time(start_wall)
        return self.clock.wall_time(self.trace.finish_time(t, float(nbytes)))


@dataclass(slots=True)
class SentFrame:
    """What the sender did with one paced frame (wall times on :func:`now`'s clock)."""

    kind: int
    request: int
    nbytes: int
    queued_at: float
    started_at: float
    finished_at: float  # trace finish time of the last byte, as wall time
    deliver_at: float


class PacedSender:
    """Sends frames on ``sock`` from a thread, paced by ``shape`` (or at once if unpaced)."""

    def __init__(
        self,
        sock: socket.socket,
        shape: LinkShape | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        on_sent: Callable[[SentFrame], None] | None = None,
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        self.sock = sock
        self.shape = shape
        self.chunk_bytes = chunk_bytes
        self.on_sent = on_sent
        self._queue: queue.Queue[tuple[Frame, bool, float] | None] = queue.Queue()
        self._link_free_at = 0.0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="paced-sender", daemon=True)
        self._thread.start()

    def send(self, frame: Frame, paced: bool = True) -> None:
        """Queue ``frame`` (FIFO); paced frames follow the trace and carry ``deliver_at``."""
        if self._error is not None:
            raise ConnectionError(f"link sender failed: {self._error}") from self._error
        self._queue.put((frame, paced and self.shape is not None, now()))

    def close(self) -> None:
        """Send what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30.0)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            frame, paced, queued_at = item
            try:
                if paced:
                    self._send_paced(frame, queued_at)
                else:
                    frame.deliver_at = 0.0
                    self.sock.sendall(frame.encode())
            except OSError as err:
                self._error = err
                return

    def _send_paced(self, frame: Frame, queued_at: float) -> None:
        shape = self.shape
        assert shape is not None
        start = max(now(), self._link_free_at)
        # The header carries deliver_at, which depends only on the frame's size.
        nbytes = frame.wire_size()
        finish = shape.delivery(start, nbytes)
        frame.deliver_at = finish + shape.one_way_s
        data = memoryview(frame.encode())
        t_start = shape.clock.trace_time(start)
        trace = shape.trace
        clock = shape.clock
        sent = 0
        while sent < nbytes:
            end = min(sent + self.chunk_bytes, nbytes)
            sleep_until(clock.wall_time(trace.finish_time(t_start, float(end))))
            self.sock.sendall(data[sent:end])
            sent = end
        self._link_free_at = finish
        if self.on_sent is not None:
            self.on_sent(
                SentFrame(
                    frame.kind, frame.request, nbytes, queued_at, start, finish, frame.deliver_at
                )
            )


def connect(host: str, port: int, timeout: float = 60.0) -> socket.socket:
    """A TCP connection with Nagle off (small token frames must not wait for an ACK)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
