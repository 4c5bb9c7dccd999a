"""The paced link: bytes never run ahead of the trace, and frames carry the one-way delay."""

from __future__ import annotations

import socket
import threading

import pytest

from offload_rl.traces import Trace
from validation.runtime.link import (
    Frame,
    LinkClock,
    LinkShape,
    PacedSender,
    SentFrame,
    now,
    read_frame,
)

TOLERANCE_S = 0.003  # timer and scheduling slack; sleeping only ever makes things later
# Upper bound on the wall time of a paced transfer: expected x 1.3 + 50 ms (a loaded 2-core
# machine can delay the sender's wake-ups; pacing at half the rate takes expected x 2).
UPPER_SLACK, UPPER_SLACK_S = 0.3, 0.05


def _progress(sock: socket.socket, nbytes: int) -> list[tuple[float, int]]:
    """Read ``nbytes`` raw bytes, noting (time, bytes so far) after every read."""
    got = 0
    seen: list[tuple[float, int]] = []
    while got < nbytes:
        chunk = sock.recv(65536)
        assert chunk, "sender closed early"
        got += len(chunk)
        seen.append((now(), got))
    return seen


@pytest.mark.parametrize(
    ("trace", "trace_t0"),
    [
        (Trace.constant(2.0, duration_s=10.0), 3.0),  # 250 kB/s
        # two steps: 0.5 Mbps for 0.2 s, then 4 Mbps; start inside the slow step
        (Trace.from_steps([0.5, 0.5, 4.0, 4.0, 4.0, 4.0], step_s=0.1, name="two-step"), 0.05),
    ],
)
def test_paced_transfer_is_no_faster_than_the_trace(trace: Trace, trace_t0: float) -> None:
    left, right = socket.socketpair()
    try:
        shape = LinkShape(trace, one_way_s=0.0, clock=LinkClock())
        sent: list[SentFrame] = []
        sender = PacedSender(left, shape, chunk_bytes=2048, on_sent=sent.append)
        payload = bytes(60_000)
        frame = Frame(kind=4, payload=payload)
        nbytes = len(frame.encode())
        shape.clock.trace_t0 = trace_t0
        start = now()
        shape.clock.wall0 = start
        sender.send(frame)
        seen = _progress(right, nbytes)
        sender.close()
        expected = trace.finish_time(trace_t0, nbytes) - trace_t0
        assert seen[-1][0] - start >= expected - TOLERANCE_S
        # and at every instant, no more bytes than the trace could have carried by then
        for t, got in seen:
            allowed = trace.bytes_between(trace_t0, trace_t0 + (t - start) + TOLERANCE_S)
            assert got <= allowed + 2048  # at most the chunk in flight
        # no slower either: the schedule is the trace's to the microsecond, and the bytes
        # arrive within a loose bound of it (a link paced at half the trace's rate fails)
        [frame_sent] = sent
        assert frame_sent.nbytes == nbytes
        t_sent = shape.clock.trace_time(frame_sent.started_at)
        scheduled = trace.finish_time(t_sent, nbytes) - t_sent
        assert frame_sent.finished_at - frame_sent.started_at == pytest.approx(scheduled, abs=1e-6)
        assert seen[-1][0] - start <= expected * (1 + UPPER_SLACK) + UPPER_SLACK_S
    finally:
        left.close()
        right.close()


def test_receiver_holds_a_frame_for_the_one_way_delay() -> None:
    left, right = socket.socketpair()
    try:
        trace = Trace.constant(8.0, duration_s=10.0)  # 1 MB/s
        shape = LinkShape(trace, one_way_s=0.05)
        shape.clock.trace_t0, shape.clock.wall0 = 0.0, now()
        sender = PacedSender(left, shape)
        start = now()
        sender.send(Frame(kind=6, a=42, payload=bytes(10_000)))
        frame = read_frame(right)
        done = now()
        sender.close()
        assert frame.a == 42
        transfer = trace.finish_time(start - shape.clock.wall0, len(frame.encode()))
        assert done - start >= (transfer - (start - shape.clock.wall0)) + 0.05 - TOLERANCE_S
        assert done >= frame.deliver_at
    finally:
        left.close()
        right.close()


def test_unpaced_and_paced_frames_stay_in_order() -> None:
    left, right = socket.socketpair()
    try:
        shape = LinkShape(Trace.constant(50.0), one_way_s=0.0)
        shape.clock.wall0 = now()
        sender = PacedSender(left, shape)
        for i in range(5):
            sender.send(Frame(kind=5, a=i, payload=bytes(3000)), paced=i % 2 == 0)
        got = [read_frame(right).a for _ in range(5)]
        sender.close()
        assert got == [0, 1, 2, 3, 4]
    finally:
        left.close()
        right.close()


def test_frame_round_trip_keeps_every_field() -> None:
    left, right = socket.socketpair()
    try:
        frame = Frame(7, request=3, a=-1, b=9, aux=0.25, meta={"x": [1, 2]}, payload=b"abc")
        threading.Thread(target=lambda: left.sendall(frame.encode())).start()
        back = read_frame(right, hold=False)
        assert (back.kind, back.request, back.a, back.b, back.aux) == (7, 3, -1, 9, 0.25)
        assert back.meta == {"x": [1, 2]} and back.payload == b"abc"
    finally:
        left.close()
        right.close()
