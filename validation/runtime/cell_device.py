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

The job's ``splits`` say where the device may place a request: the forced policy draws each
session's split from them (:func:`validation.decisions.forced_split`), and the device tells the
decision service it holds ``max(splits)`` layers (0 by default: every placement is then the edge
with token ids, keeping the session's KV or not). The scenario puts the cloud out of reach
(:func:`validation.cell_run.cell_scenario`). A split request (``0 < k < L``) runs the embedding
and layers ``< k`` here (the single-device runtime's
:meth:`~validation.runtime.model.SplitModel.device_layers`, one torch thread), uploads their
hidden states, and answers every token but the last with the next position's hidden state
(``STEP``), as the single-device runtime's device does; with keep it keeps its layers' KV for
the session's next turn at the same split. A local turn (``k = L``, the mask's only choice in a
link outage) runs the whole model here, and the simulator prices it on the device tier. The
model is built once, before the run starts, when a split or local turn is possible.
The device believes a session's KV is kept when the edge's ``DONE`` said so, until an
``EVICTED`` notice arrives; it uploads what comes after what it believes is kept. A decision
that moves a session off the split its KV is kept for sends ``DROP`` (the edge frees it then,
as the simulator does at the decision).
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
    scenario_path: str  # the validation's scenario (YAML): the client's mask and fallback
    chunk_bytes: int = 8192
    splits: list[int] = field(default_factory=lambda: [0])  # where requests may be placed

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
    kept_split: int = 0  # the split that KV was kept with
    device_cache: Any = None  # its layers' KV here (a split turn with keep)
    local_positions: int = 0  # positions of the KV kept here (a local turn with keep)
    local_cache: Any = None


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
        self._model: Any = None
        self._import_torch()

    @staticmethod
    def _import_torch() -> None:
        """Import torch and transformers before the run starts: imported on a request's first
        use they cost seconds inside its measured latency (and delay its upload), which no
        deployed device pays and the simulator does not model (run F: the first request of
        three devices reached the edge 2.8-3.3 s after its start, against 10-14 ms predicted)."""
        from offload_rl.profiler import require_torch

        require_torch()

    def _decider(self) -> Any:
        """The decision service's client for this validation's scenario (the mask, the
        fallback), and the facts the device state reads."""
        from offload_rl.scenario import load_scenario
        from offload_rl.scenario_facts import scenario_facts

        scenario = load_scenario(Path(self.job.scenario_path))
        self.facts = scenario_facts(scenario)
        if self.job.service_url is None:
            return None
        from serving.client import DecisionClient

        return DecisionClient(
            self.job.service_url, timeout=self.job.service_timeout_s, scenario=scenario
        )

    def run(self) -> list[dict[str, Any]]:
        if max(self.job.splits) > 0:
            self._local_model()  # built before the run: a split turn must not pay for it
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

    def _action(
        self, req: JobRequest, trace_t: float, cached: tuple[int | None, int]
    ) -> tuple[int, bool, str]:
        from validation.decisions import device_state, forced_split

        if self.decide is None:
            return forced_split(self.job.seed, req.session, self.job.splits), True, "forced"
        state = device_state(
            req,  # type: ignore[arg-type]  # a RequestView: the fields device_view reads
            self.uplink,
            trace_t,
            cached,
            self.facts,
            self.memory,
            device_memory_layers=max(self.job.splits),
        )
        decision = self.decide.decide(state)
        k, keep = self.layout.decode(decision.action)
        return k, bool(keep), f"{decision.source}:{decision.policy_version}"

    def _serve(self, req: JobRequest) -> dict[str, Any]:
        job = self.job
        L = job.n_layers
        session = self.sessions.setdefault(req.session, _Session())
        if len(session.history) != req.context_tokens:
            session.history = self._pad(req, session.history)
            session.kept, session.local_positions, session.local_cache = 0, 0, None
        kept = min(session.kept, req.context_tokens)
        if kept:
            cached: tuple[int | None, int] = (session.kept_split, kept)
        elif session.local_cache is not None:
            cached = (L, session.local_positions)
        else:
            cached = (None, 0)
        start_decide = now()
        k, keep, source = self._action(req, job.offset_s + start_decide - job.t0, cached)
        decide_s = now() - start_decide
        if k != L and not 0 <= k <= max(job.splits):
            raise ValueError(
                f"the decision placed request {req.request_id} at split {k}: the cell "
                f"validation's devices hold {max(job.splits)} layers (or all {L} in an outage)"
            )
        if kept and session.kept_split != k:  # the session moves: its kept KV is useless
            self.sender.send(Frame(wire.DROP, a=req.session), paced=False)
            kept = session.kept = 0
            session.device_cache = None
        rng = np.random.default_rng([job.seed, req.session, req.turn, req.request_id])
        prompt = rng.integers(0, job.vocab_size, size=req.new_tokens).tolist()
        sequence = session.history + prompt
        if k > 0:
            self._local_model()  # built once, before the request's clock starts
        wall0 = now()
        if k == L:
            tokens, ttft, done = self._run_local(session, sequence, req, keep)
            upload = 0
        else:
            session.local_positions, session.local_cache = 0, None  # the session moved
            tokens, ttft, done = self._run_edge(session, sequence, req, k, keep, kept, wall0)
            upload = len(sequence) - kept
        latency = now() - wall0
        session.history = sequence + tokens
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
            "upload_tokens": upload,
            "ttft_s": ttft,
            "latency_s": latency,
            "tokens": len(tokens),
            **{f"edge_{key}": value for key, value in done.items()},
        }

    def _run_edge(
        self,
        session: _Session,
        sequence: list[int],
        req: JobRequest,
        k: int,
        keep: bool,
        kept: int,
        wall0: float,
    ) -> tuple[list[int], float, dict[str, Any]]:
        """Token ids up (those after what the edge keeps), tokens down: tokens, TTFT, DONE.

        With a split (``k > 0``) the device runs its layers first and sends hidden states, then
        answers each token but the last with the next position's hidden state."""
        from offload_rl.profiler import require_torch
        from validation.runtime.model import new_cache

        torch, _ = require_torch()
        trace_t = self.job.offset_s + (wall0 - self.job.t0)
        self.clock.trace_t0, self.clock.wall0 = trace_t, wall0
        model, cache = None, None
        if k == 0:
            payload = wire.ids_to_bytes(sequence[kept:])
        else:
            model = self._local_model()
            cache = session.device_cache if kept else new_cache()
            with torch.inference_mode():
                hidden = model.device_layers(sequence[kept:], k, cache, kept)
            payload = wire.hidden_to_bytes(hidden)
        meta = {
            "session": req.session,
            "k": k,
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
            if model is not None and len(tokens) < req.output_tokens:
                pos = len(sequence) + len(tokens) - 1
                with torch.inference_mode():
                    hidden = model.device_layers([frame.a], k, cache, pos)
                step = Frame(wire.STEP, request=req.request_id, a=pos)
                step.payload = wire.hidden_to_bytes(hidden)
                self.sender.send(step)
        done = frame.meta or {}
        session.kept = int(done["positions"]) if done.get("kept") else 0
        session.kept_split = k
        session.device_cache = cache if session.kept else None
        return tokens, ttft, done

    def _run_local(
        self, session: _Session, sequence: list[int], req: JobRequest, keep: bool
    ) -> tuple[list[int], float, dict[str, Any]]:
        """The whole model here (the mask leaves only this in a link outage): tokens, TTFT.

        The model is built on first use (one torch thread), so a run without an outage
        never loads it on the devices."""
        from offload_rl.profiler import require_torch
        from validation.runtime.model import new_cache

        torch, _ = require_torch()
        model = self._local_model()
        L = model.n_layers
        wall0 = now()
        past = session.local_positions if session.local_cache is not None else 0
        cache = session.local_cache if past else new_cache()
        with torch.inference_mode():
            token = model.next_token(model.device_layers(sequence[past:], L, cache, past))
            ttft = now() - wall0
            tokens = [token]
            pos = len(sequence)
            for _ in range(1, req.output_tokens):
                token = model.next_token(model.device_layers([token], L, cache, pos))
                tokens.append(token)
                pos += 1
        session.local_positions, session.local_cache = (pos, cache) if keep else (0, None)
        return tokens, ttft, {"local": True, "cached_tokens": past}

    def _local_model(self) -> Any:
        if self._model is None:
            from offload_rl.profiler import require_torch
            from validation.runtime.model import SplitModel, arch_from_json

            torch, _ = require_torch()
            torch.set_num_threads(1)
            job = self.job
            self._model = SplitModel.build(
                arch_from_json(job.arch), seed=job.seed, init_std=job.init_std
            )
        return self._model

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
                entry.kept, entry.device_cache = 0, None
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
