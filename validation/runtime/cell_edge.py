"""The cell's edge process: K devices, one model, continuous batching over real layers.

    python -m validation.runtime.cell_edge --devices K --pool-bytes B --log LOG.json
        [--max-num-batched-tokens 256] [--max-num-seqs 64] [--threads 1]
        [--report-url http://127.0.0.1:8000]

prints ``EDGE READY port=<port>``, accepts ``K`` device connections (``HELLO``: the model to
build, the same weights as the device's; ``LINK``: that device's downlink trace), then serves
them all at once until every device said ``BYE``, and writes ``LOG.json``: every iteration (its
start, measured seconds, each sequence's new tokens, context and whether it sampled, and the
request ids in that order) and every request's edge-side times, preemptions and cache hits,
all relative to ``t0`` (logged: the monotonic clock the devices' frames are stamped with).

One thread computes (``--threads`` torch threads; one per process in the validation); each
connection has a reader thread that holds a frame until its ``deliver_at`` (the link's
propagation delay) and a paced sender for its downlink, as in the single-device runtime. A
request that arrives during an iteration joins the next one. Scheduling and KV accounting are
:class:`~validation.runtime.batch_scheduler.BatchScheduler`'s; the batched forward is
:class:`~validation.runtime.packed_model.PackedModel`'s. With ``--report-url`` the edge pushes
its state to the decision service after every iteration (latest only, from a daemon thread:
:class:`~validation.runtime.state_report.StateReporter`).

Split requests (``BEGIN`` with ``k > 0``): the payload is the hidden states after the device's
layers ``< k``; the sequence's rows run layers ``[k, L)`` inside the same packed iteration as the
token-id rows, and hold KV for those layers only. After each token the sequence waits for the
device's ``STEP`` (its next position's hidden state) and iterations go on without it. The edge
keeps a split sequence's boundary hidden states in host memory (as the simulator assumes): a
preempted one re-prefills from them (its newest position once its hidden state has come up), and
so does a turn whose kept entry was evicted between its decision and its arrival (the device then
sent only the new positions). A ``DROP`` from a device (the session moved off its kept split)
drops the session's kept entry.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offload_rl.profiler import require_torch
from offload_rl.traces import Trace
from validation.runtime import protocol as wire
from validation.runtime.batch_scheduler import REJECTED, BatchScheduler, EdgeSequence, Plan
from validation.runtime.link import Frame, LinkClosedError, LinkShape, PacedSender, now, read_frame
from validation.runtime.model import SplitModel, arch_from_json
from validation.runtime.packed_model import Chunk, PackedModel, SequenceKV
from validation.runtime.state_report import StateReporter

IDLE_WAIT_S = 0.05  # the loop's wait for a frame while nothing can run


def full_kv_bytes_per_token(model: SplitModel) -> int:
    """KV bytes of one token over every layer (float32 keys and values): what a token-id
    request holds at the edge, as the simulator counts it."""
    s = model.arch.shape
    return model.n_layers * 2 * s.n_kv_heads * s.head_dim * wire.HIDDEN_DTYPE_BYTES


@dataclass
class _Device:
    """One device connection: its socket, paced downlink, and the sessions it owns."""

    index: int
    sock: socket.socket
    sender: PacedSender
    shape: LinkShape | None = None
    open: bool = True


class CellEdge:
    """The edge of the cell runtime (see the module docstring)."""

    def __init__(
        self,
        n_devices: int,
        pool_bytes: int,
        max_num_batched_tokens: int,
        max_num_seqs: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int | None = 1,
        reporter: StateReporter | None = None,
    ) -> None:
        self.n_devices = n_devices
        self.pool_bytes = pool_bytes
        self.budgets = (max_num_batched_tokens, max_num_seqs)
        self.threads = threads
        self.reporter = reporter
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._inbox: queue.Queue[tuple[int, Frame | None]] = queue.Queue()
        self.devices: list[_Device] = []
        self.owner: dict[int, int] = {}  # session -> device index
        self.history: dict[int, list[int]] = {}  # session -> every token id the edge has seen
        self.boundary: dict[int, tuple[int, Any]] = {}  # session -> (split, its hidden states)
        self.by_request: dict[int, EdgeSequence] = {}  # running or queued, by request id
        self.iterations: list[dict[str, Any]] = []
        self._idle_s = 0.0  # seconds blocked waiting for a frame since the last iteration
        self.requests: list[dict[str, Any]] = []
        # when the loop took each frame that changes the schedule (validation.schedule_diff):
        # request id -> its BEGIN; [request id, position, t] per STEP; [session, t] per DROP
        self.taken: dict[int, float] = {}
        self.steps: list[list[float]] = []
        self.drops: list[list[float]] = []
        self.empty_schedules: list[dict[str, Any]] = []  # ran nothing, but preempted/evicted
        self.model: SplitModel | None = None
        self.t0 = 0.0

    # --- set-up ----------------------------------------------------------------------------

    def accept_all(self) -> None:
        """Accept every device; build the model from the first ``HELLO``."""
        torch, _ = require_torch()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        for i in range(self.n_devices):
            sock, _ = self._listener.accept()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hello = read_frame(sock)
            if hello.kind != wire.HELLO or hello.meta is None:
                raise ValueError(f"device {i}: expected HELLO")
            if self.model is None:
                meta = hello.meta
                self.model = SplitModel.build(
                    arch_from_json(meta["arch"]), seed=int(meta["seed"]), init_std=meta["init_std"]
                )
            device = _Device(i, sock, PacedSender(sock))
            device.sender.send(Frame(wire.READY, meta={"threads": torch.get_num_threads()}), False)
            link = read_frame(sock)
            if link.kind != wire.LINK or link.meta is None:
                raise ValueError(f"device {i}: expected LINK")
            m = link.meta
            trace = Trace.from_steps(np.asarray(m["mbps"], float), float(m["step_s"]), m["name"])
            device.shape = LinkShape(trace, float(m["one_way_s"]))
            device.sender.close()
            device.sender = PacedSender(sock, device.shape, int(m["chunk_bytes"]))
            self.devices.append(device)
        self._listener.close()
        for device in self.devices:
            threading.Thread(
                target=self._read, args=(device,), name=f"edge-read-{device.index}", daemon=True
            ).start()

    def _read(self, device: _Device) -> None:
        """Frames of one device into the inbox, each once delivered (None: it is gone)."""
        try:
            while True:
                frame = read_frame(device.sock)
                self._inbox.put((device.index, frame))
                if frame.kind == wire.BYE:
                    return
        except (LinkClosedError, OSError):
            self._inbox.put((device.index, None))

    # --- serving ---------------------------------------------------------------------------

    def serve(self) -> None:
        """Run iterations until every device has left."""
        torch, _ = require_torch()
        assert self.model is not None
        packed = PackedModel(self.model)
        sched = BatchScheduler(
            self.pool_bytes,
            full_kv_bytes_per_token(self.model),
            *self.budgets,
            new_kv=SequenceKV,
            n_layers=self.model.n_layers,
        )
        self.t0 = now()
        with torch.inference_mode():
            while any(d.open for d in self.devices) or sched.has_work():
                self._drain(sched, block=not sched.has_ready())
                if not sched.has_ready():
                    continue
                s = now()
                plan = sched.schedule(s)
                self._notify_evictions(plan)
                if not plan.sequences:  # rejected, or blocked (a preemption may have freed room)
                    if plan.preempted or plan.evicted:
                        self.empty_schedules.append(
                            {"start_s": s - self.t0, "preempted": len(plan.preempted),
                             "evicted": len(plan.evicted)}
                        )  # fmt: skip
                    self._finish(sched)
                    self._drain(sched, block=True)
                    continue
                rows = zip(plan.sequences, plan.tokens, strict=True)
                chunks = [self._chunk(sched, r, n) for r, n in rows]
                shape = [
                    (n, r.computed, c.samples)
                    for r, n, c in zip(plan.sequences, plan.tokens, chunks, strict=True)
                ]
                start = time.perf_counter()
                sampled = packed.forward(chunks)
                took = time.perf_counter() - start
                e = now()
                got = sched.complete(plan, sampled, e)
                self._log_iteration(s, took, shape, plan)
                self.iterations[-1]["splits"] = [r.split for r in plan.sequences]
                for r in got:
                    self._send_token(r)
                self._finish(sched)
                self._report(sched)

    def _chunk(self, sched: BatchScheduler, r: EdgeSequence, n: int) -> Chunk:
        """``r``'s part of the iteration: token ids, or (split) its boundary hidden states (the
        scheduler schedules only positions whose hidden states have arrived, a split sequence
        preempted during its round trip included)."""
        samples = r.computed + n == r.known
        if r.split == 0:
            return Chunk(sched.chunk_ids(r, n), r.kv, samples)
        if r.hidden.shape[0] < r.computed + n:
            raise RuntimeError(
                f"request {r.request_id}: scheduled position {r.computed + n - 1} before its "
                f"hidden state arrived ({r.hidden.shape[0]} positions here)"
            )
        return Chunk([], r.kv, samples, first_layer=r.split, hidden=sched.chunk_hidden(r, n))

    def _drain(self, sched: BatchScheduler, block: bool) -> None:
        """Take the frames that have arrived (waiting a little for one when ``block``)."""
        waited = time.perf_counter()
        try:
            item = self._inbox.get(timeout=IDLE_WAIT_S) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        finally:
            if block:
                self._idle_s += time.perf_counter() - waited
        while True:
            self._handle(sched, *item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, sched: BatchScheduler, index: int, frame: Frame | None) -> None:
        device = self.devices[index]
        if frame is None or frame.kind == wire.BYE:
            device.open = False
            return
        if frame.kind == wire.STEP:
            self._step(sched, frame)
            self.steps.append([frame.request, frame.a, now() - self.t0])
            return
        if frame.kind == wire.DROP:
            self.drops.append([frame.a, now() - self.t0])
            sched.drop_session(frame.a)
            self.boundary.pop(frame.a, None)
            return
        if frame.kind != wire.BEGIN or frame.meta is None:
            raise ValueError(f"device {index}: unexpected {wire.KIND_NAMES.get(frame.kind)}")
        meta = frame.meta
        sid, past = int(meta["session"]), int(meta["past"])
        if device.shape is not None:
            device.shape.clock.trace_t0 = float(meta["trace_t0"])
            device.shape.clock.wall0 = float(meta["wall0"])
        self.owner[sid] = index
        split = int(meta.get("k", 0))
        hidden = None
        if split == 0:
            known = self.history.get(sid, [])
            if len(known) < past:
                raise ValueError(
                    f"session {sid}: the device assumes {past} tokens, edge has {len(known)}"
                )
            ids = known[:past] + wire.ids_from_bytes(frame.payload)[0].tolist()
        else:
            hidden = self._boundary(sid, split, past, frame.payload)
            ids = [0] * int(hidden.shape[0])  # the device's ids: not sent, only their count
        if len(ids) != int(meta["known"]):
            raise ValueError(f"request {frame.request}: {len(ids)} ids, expected {meta['known']}")
        seq = EdgeSequence(
            request_id=frame.request,
            session_id=sid,
            ids=ids,
            output_tokens=int(meta["out"]),
            keep=bool(meta["keep"]),
            arrival_s=frame.deliver_at or now(),
            split=split,
            hidden=hidden,
        )
        self.by_request[frame.request] = seq
        taken = now()
        self.taken[frame.request] = taken - self.t0
        sched.submit(seq, taken)

    def _boundary(self, sid: int, split: int, past: int, payload: bytes) -> Any:
        """A split request's hidden states ``[known, d]``: the session's kept boundary states
        for the ``past`` positions the device did not send, then the payload's."""
        torch, _ = require_torch()
        assert self.model is not None
        new = wire.hidden_from_bytes(payload, self.model.d_model)[0]
        if not past:
            return new
        kept = self.boundary.get(sid)
        if kept is None or kept[0] != split or kept[1].shape[0] < past:
            raise ValueError(f"session {sid}: the device assumes {past} positions at split {split}")
        return torch.cat([kept[1][:past], new])

    def _step(self, sched: BatchScheduler, frame: Frame) -> None:
        """A split sequence's round trip ended: the hidden state of its next position."""
        torch, _ = require_torch()
        assert self.model is not None
        r = self.by_request.get(frame.request)
        if r is None or frame.a != r.hidden.shape[0]:
            raise ValueError(f"request {frame.request}: unexpected STEP for position {frame.a}")
        row = wire.hidden_from_bytes(frame.payload, self.model.d_model)[0]
        r.hidden = torch.cat([r.hidden, row])
        sched.arrived(r)

    def _send_token(self, r: EdgeSequence) -> None:
        device = self.devices[self.owner[r.session_id]]
        token = Frame(wire.TOKEN, request=r.request_id, a=r.ids[-1], b=r.generated - 1)
        device.sender.send(token)

    def _notify_evictions(self, plan: Plan) -> None:
        """Tell each evicted session's device; one that has left (said ``BYE``, or closed
        while the notice was on its way) has no use for it."""
        for sid in plan.evicted:
            device = self.devices[self.owner[sid]]
            if device.open:
                with contextlib.suppress(ConnectionError):
                    device.sender.send(Frame(wire.EVICTED, a=sid), paced=False)

    def _finish(self, sched: BatchScheduler) -> None:
        for r in sched.finished:
            rejected = r.status == REJECTED
            self.by_request.pop(r.request_id, None)
            if r.split == 0:
                self.history[r.session_id] = list(r.ids)
            elif r.keep and not rejected:
                self.boundary[r.session_id] = (r.split, r.hidden[: r.computed])
            done = {
                "kept": r.keep and not rejected,
                "positions": r.computed,
                "rejected": rejected,
                "preemptions": r.preemptions,
                "cached_tokens": r.cached_tokens,
                "queued_s": r.queued_s,
            }
            device = self.devices[self.owner[r.session_id]]
            device.sender.send(Frame(wire.DONE, request=r.request_id, meta=done), paced=False)
            self.requests.append(
                {
                    "request_id": r.request_id,
                    "session": r.session_id,
                    "device": device.index,
                    "split": r.split,
                    "arrival_s": r.arrival_s - self.t0,
                    "taken_s": self.taken.pop(r.request_id, None),
                    "admit_s": r.admit_s - self.t0 if r.admit_s >= 0 else None,
                    "first_token_s": r.first_token_s - self.t0 if r.first_token_s >= 0 else None,
                    "finish_s": r.finish_s - self.t0,
                    "batch_at_admit": r.batch_at_admit,
                    **done,
                }
            )
        sched.finished.clear()

    def _log_iteration(
        self, s: float, took: float, shape: list[tuple[int, int, bool]], plan: Plan
    ) -> None:
        self.iterations.append(
            {
                "start_s": s - self.t0,
                "measured_s": took,
                "sequences": [list(x) for x in shape],
                "requests": [r.request_id for r in plan.sequences],  # for schedule_diff
                "preempted": len(plan.preempted),
                "evicted": len(plan.evicted),
                # blocked waiting for frames since the previous iteration: idle, not the loop
                "idle_before_s": self._idle_s,
            }
        )
        self._idle_s = 0.0

    def _report(self, sched: BatchScheduler) -> None:
        if self.reporter is None:
            return
        pool = sched.pool
        sessions = {
            str(sid): {"tokens": kept.tokens, "split": kept.split, "recency_rank": rank}
            for rank, (sid, kept) in enumerate(reversed(list(sched.kept.items())))
        }
        self.reporter.report(
            n_running=len(sched.running),
            n_waiting=len(sched.waiting),
            kv_usage=pool.occupancy(),
            pool_tokens=pool.capacity_bytes // sched.bpt,
            running_tokens=sum(r.computed for r in sched.running),
            sessions=sessions,
        )

    def close(self) -> None:
        for device in self.devices:
            device.sender.close()
            device.sock.close()
        with contextlib.suppress(OSError):
            self._listener.close()

    def log(self) -> dict[str, Any]:
        return {
            "t0": self.t0,  # the times above are from here, on the machine's monotonic clock
            "pool_bytes": self.pool_bytes,
            "max_num_batched_tokens": self.budgets[0],
            "max_num_seqs": self.budgets[1],
            "iterations": self.iterations,
            "requests": self.requests,
            "steps": self.steps,
            "drops": self.drops,
            "empty_schedules": self.empty_schedules,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.runtime.cell_edge")
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--pool-bytes", type=int, required=True)
    parser.add_argument("--max-num-batched-tokens", type=int, required=True)
    parser.add_argument("--max-num-seqs", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--report-url", default=None)
    args = parser.parse_args(argv)
    reporter = StateReporter(args.report_url) if args.report_url else None
    edge = CellEdge(
        args.devices,
        args.pool_bytes,
        args.max_num_batched_tokens,
        args.max_num_seqs,
        threads=args.threads,
        reporter=reporter,
    )
    require_torch()
    print(f"EDGE READY port={edge.port}", flush=True)
    try:
        edge.accept_all()
        edge.serve()
    except Exception:
        traceback.print_exc(file=sys.stderr)
        for device in edge.devices:
            device.sender.send(Frame(wire.ERROR, meta={"message": "edge failed"}), paced=False)
        return 1
    finally:
        edge.close()
        if reporter is not None:
            reporter.close()
    args.log.write_text(json.dumps(edge.log()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
