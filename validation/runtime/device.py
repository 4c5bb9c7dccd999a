"""The device process: places each request, runs its part, and records what really happened.

For a request and an action ``(k, keep)`` the device runs the embedding and layers ``< k`` on the
new positions, sends the hidden states (or token ids at ``k = 0``) to the edge over the paced
uplink, and receives tokens over the paced downlink; with a split strictly inside the model
every further token is a round trip (the device embeds the token, runs its layers, sends one
hidden state). ``k = L`` runs everything here. With ``keep`` both sides keep the session's KV
(the device for its layers, the edge for the rest) so the next turn prefills only its new
positions, if it uses the same split.

The action comes from the decision service through :class:`serving.client.DecisionClient`
(which falls back to a local heuristic), from a local heuristic directly, or is forced (the
validation replays chosen actions). The clock starts once the action is known: the decision's
own time is recorded apart (``decide_s``), as the simulator does not price it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offload_rl.actions import ActionLayout
from offload_rl.errors import OffloadRLError
from offload_rl.profiler import require_torch
from offload_rl.traces import Trace
from validation.runtime import protocol as wire
from validation.runtime.link import (
    HEADER_BYTES,
    Frame,
    LinkClock,
    LinkShape,
    PacedSender,
    SentFrame,
    connect,
    now,
    read_frame,
)
from validation.runtime.model import SplitModel, arch_to_json, new_cache


class EdgeProtocolError(OffloadRLError):
    """The edge failed or answered something the device did not expect."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One request of a session, as the runtime serves it."""

    session: int
    new_tokens: int
    context_tokens: int
    output_tokens: int
    trace_t: float  # trace time at which the request starts (offset + arrival)
    request_id: int = 0


@dataclass(slots=True)
class RequestRecord:
    """What really happened to one request."""

    request_id: int
    session: int
    split: int
    keep: bool
    new_tokens: int
    context_tokens: int
    output_tokens: int
    trace_t: float
    ttft_s: float = 0.0
    latency_s: float = 0.0
    cached_positions: int = 0  # positions of the kept KV this request reused (0 = miss)
    prefill_positions: int = 0
    edge_miss: bool = False  # the device expected a kept KV the edge no longer had
    kept: bool = False  # the session's KV was kept after this request
    upload_payload_bytes: int = 0  # hidden states / token ids, what the cost model counts
    upload_wire_bytes: int = 0  # + frame headers
    download_wire_bytes: int = 0
    device_compute_s: float = 0.0
    device_prefill_s: float = 0.0
    edge_compute_s: float = 0.0
    edge_prefill_s: float = 0.0
    prefill_upload_s: float = 0.0  # first byte to trace finish of the prefill upload
    decide_s: float = 0.0
    decision_source: str = "forced"
    tokens: list[int] = field(default_factory=list)


@dataclass
class DeviceSession:
    """What the device knows of a session: its tokens, and the KV kept for it (if any)."""

    history: list[int] = field(default_factory=list)
    split: int | None = None  # split of the kept KV; None = nothing kept
    positions: int = 0
    cache: Any | None = None  # the device layers' KV (k > 0)


class DeviceRuntime:
    """The device side, connected to one edge."""

    def __init__(
        self,
        model: SplitModel,
        host: str,
        port: int,
        *,
        threads: int | None = 1,
        seed: int = 0,
        chunk_bytes: int = 8192,
        connect_timeout_s: float = 120.0,
    ) -> None:
        torch, _ = require_torch()
        if threads is not None:
            torch.set_num_threads(threads)
        self.model = model
        self.layout = ActionLayout(model.n_layers)
        self.seed = seed
        self.chunk_bytes = chunk_bytes
        self.sessions: dict[int, DeviceSession] = {}
        self.clock = LinkClock()
        self.uplink: LinkShape | None = None
        self._sent: list[SentFrame] = []
        self.sock = connect(host, port, timeout=connect_timeout_s)
        self.sender = PacedSender(self.sock)
        hello = {"arch": arch_to_json(model.arch), "seed": model.seed, "init_std": model.init_std}
        self.sender.send(Frame(wire.HELLO, meta=hello), paced=False)
        ready = self._expect(wire.READY)
        self.edge_info: dict[str, Any] = ready.meta or {}

    # -- set-up -----------------------------------------------------------------------------

    def set_link(self, uplink: Trace, downlink: Trace, one_way_s: float) -> None:
        """Shape both directions: the uplink here, the downlink at the edge (same clock)."""
        self.uplink = LinkShape(uplink, one_way_s, self.clock)
        meta = {
            "mbps": downlink.mbps.tolist(),
            "step_s": downlink.step_s,
            "name": downlink.name,
            "one_way_s": one_way_s,
            "chunk_bytes": self.chunk_bytes,
        }
        self.sender.send(Frame(wire.LINK, meta=meta), paced=False)
        self.sender.close()
        self.sender = PacedSender(self.sock, self.uplink, self.chunk_bytes, self._sent.append)

    def reset_sessions(self) -> None:
        """Forget every session on both sides (a fresh episode)."""
        self.sessions.clear()
        self.sender.send(Frame(wire.RESET), paced=False)
        self._expect(wire.RESET_OK)

    def close(self) -> None:
        try:
            self.sender.send(Frame(wire.BYE), paced=False)
            self.sender.close()
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> DeviceRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the device knows ----------------------------------------------------------------

    def cached(self, session: int) -> tuple[int | None, int]:
        """Split and positions of the session's kept KV, as the device believes."""
        entry = self.sessions.get(session)
        if entry is None or entry.split is None:
            return None, 0
        return entry.split, entry.positions

    def prompt_ids(self, turn: Turn) -> list[int]:
        """The prompt token ids of ``turn`` (random, fixed by the seed and the turn)."""
        rng = np.random.default_rng([self.seed, turn.session, turn.context_tokens, turn.request_id])
        vocab = self.model.arch.shape.vocab_size
        return rng.integers(0, vocab, size=turn.new_tokens).tolist()

    # -- serving ------------------------------------------------------------------------------

    def run(
        self,
        turn: Turn,
        action: int | None = None,
        decide: Callable[[Turn], tuple[int, str]] | None = None,
    ) -> RequestRecord:
        """Serve ``turn`` with ``action`` (joint index) or the one ``decide`` returns."""
        decide_s = 0.0
        source = "forced"
        if action is None:
            if decide is None:
                raise ValueError("give an action or a decide function")
            start = time.perf_counter()
            action, source = decide(turn)
            decide_s = time.perf_counter() - start
        k, keep = self.layout.decode(action)
        L = self.model.n_layers
        if k > L:
            raise EdgeProtocolError("the cloud tier is not part of the reference runtime")
        positions = turn.context_tokens + turn.new_tokens + turn.output_tokens
        if positions > self.model.arch.max_positions:
            raise EdgeProtocolError(
                f"request of {positions} positions exceeds the model's "
                f"{self.model.arch.max_positions}"
            )
        session = self.sessions.setdefault(turn.session, DeviceSession())
        history = session.history
        if len(history) != turn.context_tokens:
            # the stream began mid-session, or truncated the context: what was kept is stale
            rng = np.random.default_rng([self.seed, turn.session, 7])
            missing = max(turn.context_tokens - len(history), 0)
            pad = rng.integers(0, self.model.arch.shape.vocab_size, size=missing).tolist()
            history = (pad + history)[-turn.context_tokens :] if turn.context_tokens else []
            session.history = history
            self._forget(session)
        record = RequestRecord(
            request_id=turn.request_id,
            session=turn.session,
            split=k,
            keep=bool(keep),
            new_tokens=turn.new_tokens,
            context_tokens=turn.context_tokens,
            output_tokens=turn.output_tokens,
            trace_t=turn.trace_t,
            decide_s=decide_s,
            decision_source=source,
        )
        sequence = history + self.prompt_ids(turn)
        hit = session.split == k and 0 < session.positions <= turn.context_tokens
        if not hit:
            self._forget(session)
        torch, _ = require_torch()
        with torch.inference_mode():
            wall0 = now()
            self.clock.trace_t0 = turn.trace_t
            self.clock.wall0 = wall0
            self._sent.clear()
            if k == L:
                tokens = self._run_local(session, sequence, turn, record, wall0)
            else:
                tokens = self._run_remote(session, sequence, turn, k, bool(keep), record, wall0)
        record.tokens = tokens
        session.history = sequence + tokens
        record.kept = bool(keep) and (k == L or record.kept)
        if record.kept:
            session.split = k
            session.positions = len(sequence) + len(tokens) - 1
        else:
            self._forget(session)
        return record

    def _forget(self, session: DeviceSession) -> None:
        session.split = None
        session.positions = 0
        session.cache = None

    def _run_local(
        self,
        session: DeviceSession,
        sequence: list[int],
        turn: Turn,
        record: RequestRecord,
        wall0: float,
    ) -> list[int]:
        torch, _ = require_torch()
        model = self.model
        L = model.n_layers
        past = session.positions if session.split == L else 0
        cache = session.cache if past else new_cache()
        record.cached_positions = past
        record.prefill_positions = len(sequence) - past
        start = time.perf_counter()
        hidden = model.embed(torch.tensor([sequence[past:]]), past)
        hidden = model.run_layers(hidden, 0, L, cache, past)
        token = model.next_token(hidden)
        record.device_prefill_s = time.perf_counter() - start
        record.ttft_s = now() - wall0
        tokens = [token]
        pos = len(sequence)
        for _ in range(1, turn.output_tokens):
            hidden = model.embed(torch.tensor([[token]]), pos)
            hidden = model.run_layers(hidden, 0, L, cache, pos)
            token = model.next_token(hidden)
            tokens.append(token)
            pos += 1
        record.latency_s = now() - wall0
        record.device_compute_s = time.perf_counter() - start
        session.cache = cache
        return tokens

    def _run_remote(
        self,
        session: DeviceSession,
        sequence: list[int],
        turn: Turn,
        k: int,
        keep: bool,
        record: RequestRecord,
        wall0: float,
    ) -> list[int]:
        past = session.positions if session.split == k else 0
        while True:
            tokens = self._attempt(session, sequence, turn, k, keep, past, record, wall0)
            if tokens is not None:
                return tokens
            # the edge lost the KV (evicted): prefill everything, the time already spent counts
            record.edge_miss = True
            self._forget(session)
            past = 0

    def _attempt(
        self,
        session: DeviceSession,
        sequence: list[int],
        turn: Turn,
        k: int,
        keep: bool,
        past: int,
        record: RequestRecord,
        wall0: float,
    ) -> list[int] | None:
        model = self.model
        rid = turn.request_id
        cache = (session.cache if past else new_cache()) if k > 0 else None
        new_ids = sequence[past:]
        start = time.perf_counter()
        if k == 0:
            payload = wire.ids_to_bytes(new_ids)
        else:
            hidden = model.device_layers(new_ids, k, cache, past)
            payload = wire.hidden_to_bytes(hidden)
        prefill_s = time.perf_counter() - start
        record.device_prefill_s += prefill_s
        record.device_compute_s += prefill_s
        meta = {
            "session": turn.session,
            "k": k,
            "keep": keep,
            "past": past,
            "out": turn.output_tokens,
            "trace_t0": self.clock.trace_t0,
            "wall0": self.clock.wall0,
        }
        begin = Frame(wire.BEGIN, request=rid, a=len(new_ids), meta=meta, payload=payload)
        self.sender.send(begin)
        record.upload_payload_bytes += len(payload)
        record.upload_wire_bytes += begin.wire_size()
        first = self._expect(wire.TOKEN, wire.MISS, request=rid)
        record.download_wire_bytes += HEADER_BYTES
        if first.kind == wire.MISS:
            return None
        record.cached_positions = past
        record.prefill_positions = len(new_ids)
        record.ttft_s = now() - wall0
        record.edge_prefill_s = first.aux
        record.edge_compute_s += first.aux
        if self._sent:
            record.prefill_upload_s = self._sent[0].finished_at - self._sent[0].started_at
        tokens = self._decode(turn, k, cache, first.a, len(sequence), record)
        record.latency_s = now() - wall0
        self._settle(rid, record)
        session.cache = cache
        return tokens

    def _decode(
        self, turn: Turn, k: int, cache: Any, token: int, pos: int, record: RequestRecord
    ) -> list[int]:
        """The tokens after the first: with a split inside the model each is a round trip
        (embed, device layers, one hidden state up); at ``k = 0`` the edge streams them."""
        model = self.model
        rid = turn.request_id
        tokens = [token]
        for i in range(1, turn.output_tokens):
            if k > 0:
                start = time.perf_counter()
                hidden = model.device_layers([token], k, cache, pos)
                payload = wire.hidden_to_bytes(hidden)
                record.device_compute_s += time.perf_counter() - start
                step = Frame(wire.STEP, request=rid, a=pos, payload=payload)
                self.sender.send(step)
                record.upload_payload_bytes += len(payload)
                record.upload_wire_bytes += step.wire_size()
            reply = self._expect(wire.TOKEN, request=rid)
            record.download_wire_bytes += HEADER_BYTES
            if reply.b != i:
                raise EdgeProtocolError(f"edge sent token {reply.b}, expected {i}")
            record.edge_compute_s += reply.aux
            token = reply.a
            tokens.append(token)
            pos += 1
        return tokens

    def _settle(self, rid: int, record: RequestRecord) -> None:
        """The edge's DONE: whether it kept the session, and whose split KV it evicted."""
        done = self._expect(wire.DONE, request=rid)
        info = done.meta or {}
        for evicted in info.get("evicted", []):
            other = self.sessions.get(int(evicted))
            if other is not None and other.split is not None and other.split < self.model.n_layers:
                self._forget(other)
        record.kept = bool(info.get("kept", False))  # False also when it did not fit

    def _expect(self, *kinds: int, request: int | None = None) -> Frame:
        frame = read_frame(self.sock)
        if frame.kind == wire.ERROR:
            raise EdgeProtocolError(str((frame.meta or {}).get("message", "edge error")))
        if frame.kind not in kinds or (request is not None and frame.request != request):
            names = "/".join(wire.KIND_NAMES.get(k, str(k)) for k in kinds)
            got = wire.KIND_NAMES.get(frame.kind, str(frame.kind))
            raise EdgeProtocolError(f"expected {names} of request {request}, got {got}")
        return frame


def start_edge_process(
    threads: int = 1, kv_bytes: float | None = None, timeout_s: float = 180.0
) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -m validation.runtime.edge`` on a free loopback port; returns it, its port."""
    cmd = [sys.executable, "-m", "validation.runtime.edge", "--threads", str(threads)]
    if kv_bytes is not None:
        cmd += ["--kv-bytes", repr(float(kv_bytes))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("EDGE READY port="):
            return proc, int(line.strip().split("=", 1)[1])
    proc.kill()
    raise EdgeProtocolError(f"the edge process did not start (exit status {proc.poll()})")
