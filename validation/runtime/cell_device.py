"""One device of the cell runtime: its own link, its own sessions, one request at a time.

    python -m validation.runtime.cell_device --job JOB.json --out RECORDS.json

The job (:class:`DeviceJob`, written by the validation) names the edge, the model (architecture
and seed: the edge builds the same weights), this device's uplink/downlink trace and its offset,
the decision service, and the requests with their target start times. Per request the device
waits for its target time (or the end of its previous request: a phone serves its user's turns
one after the other), asks the decision service for the action with what it knows
(:func:`validation.decisions.device_state`; through :class:`serving.client.DecisionClient`,
which falls back to local greedy), then sends the session's token ids the edge does not hold
over its paced uplink and reads the tokens over its paced downlink. The clock of a request starts
once its action is known (``decide_s`` is recorded apart), as in the single-device runtime.

The cell validation's devices hold no layer of the model (``device_memory_layers = 0``) and
their sessions are private (no cloud): every placement is the edge with or without keeping the
session's KV, so the devices need no compute of their own and leave the CPU to the edge.
The device believes a session's KV is kept when the edge's ``DONE`` said so, until an
``EVICTED`` notice arrives; it uploads the ids after what it believes is kept.
Prints ``REQ <i>`` after each request (the validation's progress bar).
"""

from __future__ import annotations

import argparse
import json
import select
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offload_rl.actions import ActionLayout
from offload_rl.device_view import SessionMemory
from offload_rl.traces import Trace
from validation.runtime import protocol as wire
from validation.runtime.link import (
    Frame,
    LinkClock,
    LinkShape,
    PacedSender,
    connect,
    now,
    read_frame,
)


@dataclass
class JobRequest:
    """One request of the device's stream (``target_s``: seconds after the run's start)."""

    request_id: int
    session: int
    turn: int
    new_tokens: int
    context_tokens: int
    output_tokens: int
    target_s: float

    @property
    def session_id(self) -> int:
        return self.session

    @property
    def arrival_s(self) -> float:
        return self.target_s


@dataclass
class DeviceJob:
    """Everything one device process needs (JSON in, see the module docstring)."""

    index: int
    host: str
    port: int
    arch: dict[str, Any]
    seed: int
    init_std: float | None
    n_layers: int
    vocab_size: int
    uplink: dict[str, Any]  # {"mbps": [...], "step_s": s, "name": n}
    downlink: dict[str, Any]
    offset_s: float
    one_way_s: float
    t0: float  # the run's start on the shared monotonic clock (< 0: read from stdin)
    requests: list[JobRequest]
    service_url: str | None
    service_timeout_s: float
    profile_path: str
    traces: list[str]
    rtt_ms: float
    chunk_bytes: int = 8192

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> DeviceJob:
        data = json.loads(path.read_text())
        data["requests"] = [JobRequest(**r) for r in data["requests"]]
        return cls(**data)


@dataclass
class _Session:
    history: list[int] = field(default_factory=list)
    kept: int = 0  # positions of KV the device believes the edge keeps


def _trace(spec: dict[str, Any]) -> Trace:
    return Trace.from_steps(np.asarray(spec["mbps"], float), float(spec["step_s"]), spec["name"])


class CellDevice:
    """The device side of one job."""

    def __init__(self, job: DeviceJob) -> None:
        self.job = job
        self.layout = ActionLayout(job.n_layers)
        self.uplink = _trace(job.uplink)
        self.clock = LinkClock()
        self.sessions: dict[int, _Session] = {}
        self.memory = SessionMemory()
        self.sock = connect(job.host, job.port, timeout=120.0)
        sender = PacedSender(self.sock)
        hello = {"arch": job.arch, "seed": job.seed, "init_std": job.init_std}
        sender.send(Frame(wire.HELLO, meta=hello), paced=False)
        link = {**job.downlink, "one_way_s": job.one_way_s, "chunk_bytes": job.chunk_bytes}
        sender.send(Frame(wire.LINK, meta=link), paced=False)
        sender.close()
        self._expect(wire.READY)
        shape = LinkShape(self.uplink, job.one_way_s, self.clock)
        self.sender = PacedSender(self.sock, shape, job.chunk_bytes)
        self.decide = self._decider()

    def _decider(self) -> Any:
        """The decision service's client for this validation's scenario (the mask, the
        fallback), and the facts the device state reads."""
        from offload_rl.scenario_facts import scenario_facts
        from validation.decisions import validation_scenario

        scenario = validation_scenario(
            Path(self.job.profile_path), self.job.traces, self.job.rtt_ms
        )
        self.facts = scenario_facts(scenario)
        if self.job.service_url is None:
            return None
        from serving.client import DecisionClient

        return DecisionClient(
            self.job.service_url, timeout=self.job.service_timeout_s, scenario=scenario
        )

    def run(self) -> list[dict[str, Any]]:
        records = []
        for req in self.job.requests:
            sleep_until = self.job.t0 + req.target_s
            while now() < sleep_until:
                self._drain(max(sleep_until - now(), 0.0))
            self._drain(0.0)
            records.append(self._serve(req))
            print(f"REQ {req.request_id}", flush=True)
        self.sender.send(Frame(wire.BYE), paced=False)
        self.sender.close()
        return records

    def _action(self, req: JobRequest, trace_t: float, kept: int) -> tuple[int, bool, str]:
        from validation.decisions import device_state

        if self.decide is None:
            return 0, True, "forced"
        state = device_state(
            req,  # type: ignore[arg-type]  # a RequestView: the fields device_view reads
            self.uplink,
            trace_t,
            (0, kept) if kept else (None, 0),
            self.facts,
            self.memory,
            private=True,
            device_memory_layers=0,
        )
        decision = self.decide.decide(state)
        k, keep = self.layout.decode(decision.action)
        return k, bool(keep), f"{decision.source}:{decision.policy_version}"

    def _serve(self, req: JobRequest) -> dict[str, Any]:
        job = self.job
        session = self.sessions.setdefault(req.session, _Session())
        if len(session.history) != req.context_tokens:
            session.history = self._pad(req, session.history)
            session.kept = 0
        kept = min(session.kept, req.context_tokens)
        start_decide = now()
        k, keep, source = self._action(req, job.offset_s + start_decide - job.t0, kept)
        decide_s = now() - start_decide
        if k != 0:
            raise ValueError(
                f"the decision placed request {req.request_id} at split {k}: the "
                "cell validation's devices hold no layer (only k = 0 is valid)"
            )
        rng = np.random.default_rng([job.seed, req.session, req.turn, req.request_id])
        prompt = rng.integers(0, job.vocab_size, size=req.new_tokens).tolist()
        sequence = session.history + prompt
        wall0 = now()
        trace_t = job.offset_s + (wall0 - job.t0)
        self.clock.trace_t0, self.clock.wall0 = trace_t, wall0
        payload = wire.ids_to_bytes(sequence[kept:])
        meta = {
            "session": req.session,
            "keep": keep,
            "past": kept,
            "known": len(sequence),
            "out": req.output_tokens,
            "trace_t0": trace_t,
            "wall0": wall0,
        }
        self.sender.send(Frame(wire.BEGIN, request=req.request_id, meta=meta, payload=payload))
        tokens: list[int] = []
        ttft = -1.0
        while True:
            frame = self._expect(wire.TOKEN, wire.DONE, request=req.request_id)
            if frame.kind == wire.DONE:
                break
            if not tokens:
                ttft = now() - wall0
            tokens.append(frame.a)
        latency = now() - wall0
        done = frame.meta or {}
        session.history = sequence + tokens
        session.kept = int(done["positions"]) if done.get("kept") else 0
        self.memory.remember(req)
        return {
            "request_id": req.request_id,
            "device": job.index,
            "session": req.session,
            "turn": req.turn,
            "new_tokens": req.new_tokens,
            "context_tokens": req.context_tokens,
            "output_tokens": req.output_tokens,
            "target_s": req.target_s,
            "start_s": wall0 - job.t0,
            "decide_s": decide_s,
            "decision_source": source,
            "split": k,
            "keep": keep,
            "believed_cached": kept,
            "upload_tokens": len(sequence) - kept,
            "ttft_s": ttft,
            "latency_s": latency,
            "tokens": len(tokens),
            **{f"edge_{key}": value for key, value in done.items()},
        }

    def _pad(self, req: JobRequest, history: list[int]) -> list[int]:
        """A history of ``context_tokens`` ids (the stream restarted or began mid-session)."""
        rng = np.random.default_rng([self.job.seed, req.session, 7])
        missing = max(req.context_tokens - len(history), 0)
        pad = rng.integers(0, self.job.vocab_size, size=missing).tolist()
        return (pad + history)[-req.context_tokens :] if req.context_tokens else []

    def _drain(self, wait_s: float) -> None:
        """Read control frames that arrive while idle (``EVICTED``), waiting up to ``wait_s``."""
        ready, _, _ = select.select([self.sock], [], [], wait_s)
        if ready:
            self._on_control(read_frame(self.sock))

    def _on_control(self, frame: Frame) -> None:
        if frame.kind == wire.EVICTED:
            entry = self.sessions.get(frame.a)
            if entry is not None:
                entry.kept = 0
            return
        if frame.kind == wire.ERROR:
            raise ConnectionError(str((frame.meta or {}).get("message", "edge error")))
        raise ConnectionError(f"unexpected {wire.KIND_NAMES.get(frame.kind)} frame while idle")

    def _expect(self, *kinds: int, request: int | None = None) -> Frame:
        while True:
            frame = read_frame(self.sock)
            if frame.kind in kinds and (request is None or frame.request == request):
                return frame
            self._on_control(frame)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.runtime.cell_device")
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    job = DeviceJob.load(args.job)
    device = CellDevice(job)
    if job.t0 < 0:  # the run starts once every device is connected: its start on stdin
        print("CONNECTED", flush=True)
        job.t0 = float(sys.stdin.readline())
    records = device.run()
    args.out.write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
