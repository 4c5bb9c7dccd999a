"""The edge process: runs layers ``>= k`` and the LM head, keeps sessions' KV when asked.

    python -m validation.runtime.edge [--host 127.0.0.1] [--port 0] [--threads 1]
                                  [--kv-bytes 1e12] [--report-url http://127.0.0.1:8000]

prints ``EDGE READY port=<port>`` once it listens, then serves device connections one at a
time. The device's ``HELLO`` says which model to build (architecture and seed: the weights then
equal the device's), ``LINK`` gives the downlink trace and one-way delay its token frames are
paced with. A kept session's KV stays in an LRU bounded by ``--kv-bytes`` (entry size = tokens x
the KV bytes per token of the edge's layers, as in the simulator); sessions it evicts are
reported to the device in ``DONE``, as the edge's cache facts are in a deployment. With
``--report-url`` it also reports its state to the decision service at each request's start and
end (:mod:`validation.runtime.state_report`; the service runs with ``--edge-push``).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from offload_rl.kv_cache import EdgeKVCache
from offload_rl.profiler import require_torch
from offload_rl.traces import Trace
from validation.runtime import protocol as wire
from validation.runtime.link import (
    Frame,
    LinkClosedError,
    LinkShape,
    PacedSender,
    read_frame,
)
from validation.runtime.model import SplitModel, arch_from_json, arch_to_json, new_cache
from validation.runtime.state_report import StateReporter

DEFAULT_KV_BYTES = 1e12  # validation: no evictions unless asked for


@dataclass
class EdgeSession:
    """KV of one session's edge layers ``[split, L)``, holding ``positions`` positions."""

    split: int
    positions: int
    cache: Any


def kv_bytes_per_token(model: SplitModel, split: int) -> int:
    """KV bytes per token of layers ``[split, L)`` (float32 keys and values)."""
    s = model.arch.shape
    return (model.n_layers - split) * 2 * s.n_kv_heads * s.head_dim * wire.HIDDEN_DTYPE_BYTES


class EdgeServer:
    """Listens on ``host:port`` (0 = any free port) and serves devices one at a time."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int | None = 1,
        kv_capacity_bytes: float = DEFAULT_KV_BYTES,
        reporter: StateReporter | None = None,
    ) -> None:
        self._listener = socket.create_server((host, port))
        self.reporter = reporter
        self.host, self.port = self._listener.getsockname()[:2]
        self.threads = threads
        self.kv_capacity_bytes = kv_capacity_bytes
        self._models: dict[str, SplitModel] = {}
        self._closed = False

    def serve(self, connections: int | None = None) -> None:
        """Accept and serve connections (all, or the first ``connections``)."""
        torch, _ = require_torch()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        served = 0
        while connections is None or served < connections:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                _Connection(self, sock).run()
            finally:
                sock.close()
            served += 1

    def start_thread(self, connections: int | None = None) -> threading.Thread:
        """Serve from a daemon thread (tests); torch threads are then the process's."""
        thread = threading.Thread(
            target=self.serve, args=(connections,), name="edge-server", daemon=True
        )
        thread.start()
        return thread

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def model_for(self, meta: dict[str, Any]) -> tuple[SplitModel, float]:
        """The model a ``HELLO`` asks for (built once per architecture and seed)."""
        arch = arch_from_json(meta["arch"])
        key = repr((arch_to_json(arch), meta["seed"], meta.get("init_std")))
        if key in self._models:
            return self._models[key], 0.0
        start = time.perf_counter()
        model = SplitModel.build(arch, seed=int(meta["seed"]), init_std=meta.get("init_std"))
        self._models = {key: model}  # keep one model: memory
        return model, time.perf_counter() - start


class _Connection:
    """One device connection: its model, downlink, and the sessions the edge keeps."""

    def __init__(self, server: EdgeServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.model: SplitModel | None = None
        self.shape: LinkShape | None = None
        self.sender = PacedSender(sock)
        self.sessions: dict[int, EdgeSession] = {}
        self.kv = EdgeKVCache(int(server.kv_capacity_bytes))

    def run(self) -> None:
        torch, _ = require_torch()
        try:
            with torch.inference_mode():
                while True:
                    try:
                        frame = read_frame(self.sock)
                    except LinkClosedError:
                        return
                    if frame.kind == wire.BYE:
                        return
                    self._dispatch(frame)
        except Exception as err:  # report to the device, then drop the connection
            message = f"edge: {type(err).__name__}: {err}"
            traceback.print_exc(file=sys.stderr)
            self.sender.send(Frame(wire.ERROR, meta={"message": message}), paced=False)
        finally:
            self.sender.close()

    def _dispatch(self, frame: Frame) -> None:
        if frame.kind == wire.HELLO:
            assert frame.meta is not None
            self.model, build_s = self.server.model_for(frame.meta)
            self._reset()
            torch, _ = require_torch()
            info = {"build_s": build_s, "threads": torch.get_num_threads()}
            self.sender.send(Frame(wire.READY, meta=info), paced=False)
        elif frame.kind == wire.LINK:
            assert frame.meta is not None
            meta = frame.meta
            trace = Trace.from_steps(
                np.asarray(meta["mbps"], dtype=float), float(meta["step_s"]), name=meta["name"]
            )
            self.shape = LinkShape(trace, float(meta["one_way_s"]))
            self.sender.close()
            self.sender = PacedSender(self.sock, self.shape, int(meta["chunk_bytes"]))
        elif frame.kind == wire.RESET:
            self._reset()
            self.sender.send(Frame(wire.RESET_OK), paced=False)
        elif frame.kind == wire.BEGIN:
            self._request(frame)
        else:
            raise ValueError(f"unexpected {wire.KIND_NAMES.get(frame.kind, frame.kind)} frame")

    def _reset(self) -> None:
        self.sessions.clear()
        self.kv.clear()

    def _drop(self, sid: int) -> None:
        self.sessions.pop(sid, None)
        self.kv.drop(sid)

    def _report(self, running: int, running_tokens: int = 0) -> None:
        """The edge's state to the decision service (serving one device: nothing waits)."""
        reporter, model = self.server.reporter, self.model
        if reporter is None or model is None:
            return
        per_token = kv_bytes_per_token(model, 0)  # a token of every layer
        pool_tokens = self.kv.capacity_bytes // per_token if per_token else None
        sessions = {
            str(sid): {"tokens": e.tokens, "split": e.split, "recency_rank": rank}
            for rank, (sid, e) in enumerate(self.kv.by_recency())
        }
        used = self.kv.used_bytes + running_tokens * per_token
        reporter.report(
            n_running=running,
            n_waiting=0,
            kv_usage=used / self.kv.capacity_bytes if self.kv.capacity_bytes else 1.0,
            pool_tokens=pool_tokens,
            running_tokens=running_tokens,
            sessions=sessions,
        )

    def _request(self, frame: Frame) -> None:
        torch, _ = require_torch()
        model = self.model
        if model is None:
            raise ValueError("BEGIN before HELLO")
        meta = frame.meta or {}
        sid, k, keep = int(meta["session"]), int(meta["k"]), bool(meta["keep"])
        past, n_out = int(meta["past"]), int(meta["out"])
        if self.shape is not None:
            self.shape.clock.trace_t0 = float(meta["trace_t0"])
            self.shape.clock.wall0 = float(meta["wall0"])
        L = model.n_layers
        self._report(running=1, running_tokens=past)
        entry = self.sessions.get(sid)
        if past > 0:
            if entry is None or entry.split != k or entry.positions != past:
                self._drop(sid)
                self.sender.send(Frame(wire.MISS, request=frame.request))
                return
            self.kv.lookup(sid, k)  # most recently used
            cache = entry.cache
        else:
            self._drop(sid)
            cache = new_cache()
        start = time.perf_counter()
        if k == 0:
            hidden = model.embed(wire.ids_from_bytes(frame.payload), past)
        else:
            hidden = wire.hidden_from_bytes(frame.payload, model.d_model)
        prefill = int(hidden.shape[1])
        hidden = model.run_layers(hidden, k, L, cache, past)
        token = model.next_token(hidden)
        compute = time.perf_counter() - start
        total_compute = compute
        self.sender.send(Frame(wire.TOKEN, request=frame.request, a=token, b=0, aux=compute))
        pos = past + prefill
        for i in range(1, n_out):
            if k == 0:
                start = time.perf_counter()
                hidden = model.embed(torch.tensor([[token]]), pos)
            else:
                step = read_frame(self.sock)
                if step.kind != wire.STEP or step.request != frame.request:
                    raise ValueError(f"expected STEP of request {frame.request}")
                start = time.perf_counter()
                hidden = wire.hidden_from_bytes(step.payload, model.d_model)
            hidden = model.run_layers(hidden, k, L, cache, pos)
            token = model.next_token(hidden)
            pos += 1
            compute = time.perf_counter() - start
            total_compute += compute
            self.sender.send(Frame(wire.TOKEN, request=frame.request, a=token, b=i, aux=compute))
        kept = False
        evicted: list[int] = []
        if keep:
            before = list(self.sessions)
            nbytes = pos * kv_bytes_per_token(model, k)
            kept = self.kv.store(sid, k, pos, nbytes)
            if kept:
                self.sessions[sid] = EdgeSession(k, pos, cache)
            else:
                self._drop(sid)
            evicted = [s for s in before if s != sid and s not in self.kv]
            for s in evicted:
                self.sessions.pop(s, None)
        else:
            self._drop(sid)
        done = {
            "prefill": prefill,
            "past": past,
            "positions": pos,
            "kept": kept,
            "evicted": evicted,
            "compute_s": total_compute,
        }
        self.sender.send(Frame(wire.DONE, request=frame.request, meta=done), paced=False)
        self._report(running=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.runtime.edge", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--kv-bytes", type=float, default=DEFAULT_KV_BYTES)
    parser.add_argument("--connections", type=int, default=None, help="exit after N devices")
    parser.add_argument(
        "--report-url",
        default=None,
        help="decision service to report the edge's state to (POST /v1/edge/state)",
    )
    parser.add_argument("--report-token", default=None, help="that service's bearer token")
    args = parser.parse_args(argv)
    reporter = StateReporter(args.report_url, args.report_token) if args.report_url else None
    server = EdgeServer(args.host, args.port, args.threads, args.kv_bytes, reporter)
    require_torch()  # import before saying READY: the first request must not pay for it
    print(f"EDGE READY port={server.port}", flush=True)
    try:
        server.serve(args.connections)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if reporter is not None:
            reporter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
