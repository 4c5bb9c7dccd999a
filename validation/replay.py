"""The replay: request streams through the real runtime, each priced by the simulator beside it.

Noise: the machine is shared. Each request stream is replayed ``repeats`` times (sessions reset
in between, later repeats replay the first run's actions); every run records how many CPUs
other processes used meanwhile, and after a contended run the replay waits a little for a
quiet moment. Requests run one after another (the edge has no other user), so the simulator
is called with no edge queue and no slowdown (:func:`validation.prediction.predict`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from offload_rl.cost_model import LinkModel, Tiers
from offload_rl.device_view import SessionMemory
from offload_rl.scenario_facts import ScenarioFacts
from offload_rl.traces import Trace
from validation.config import TraceSpec, ValidationConfig, say
from validation.cpu_load import CONTENTION_CPUS, CpuLoad
from validation.decisions import Decide, device_state
from validation.prediction import predictions
from validation.request_stream import ReplayRequest
from validation.rows import Row, split_class


class Replay:
    """Replays request streams through the runtime and prices them with the simulator."""

    def __init__(
        self,
        cfg: ValidationConfig,
        device: Any,
        tiers: dict[str, Tiers],
        primary: str,
        splits: Sequence[int],
        decide: Decide | None,
        monitor: CpuLoad,
        facts: ScenarioFacts | None = None,
    ) -> None:
        """``facts``: the scenario the decider's device plays (needed with ``decide``)."""
        from offload_rl.actions import ActionLayout

        self.cfg = cfg
        self.device = device
        self.tiers = tiers
        self.primary = primary
        self.n_layers = tiers[primary].n_layers
        self.splits = list(splits)
        self.decide = decide
        self.facts = facts
        if decide is not None and facts is None:
            raise ValueError("Replay: a decider needs the scenario facts its device plays")
        self.monitor = monitor
        self.layout = ActionLayout(self.n_layers)
        self._last_contended = False
        self.waited_s = 0.0
        self.one_way = cfg.rtt_ms / 2000.0

    def warm_up(self) -> None:
        """Two short requests per split on a fast link, not recorded: first calls pay for lazy
        initialisation (allocator, kernels, sockets)."""
        from validation.runtime.device import Turn

        fast = Trace.constant(1000.0, name="warm-up")
        self.device.set_link(fast, fast, self.one_way)
        for k in self.splits:
            for _ in range(2):
                turn = Turn(10**6, 32, 0, 4, 0.0, request_id=10**6)
                self.device.run(turn, self.layout.encode(k, 0))
        self.device.reset_sessions()

    def trace(self, spec: TraceSpec, offset: float, requests: Sequence[ReplayRequest]) -> list[Row]:
        """Every repeat of the stream on one trace; one row per request."""
        cfg = self.cfg
        self.device.set_link(spec.uplink, spec.downlink, self.one_way)
        link = LinkModel(
            uplink=spec.uplink,
            downlink=spec.downlink,
            rtt_edge_s=cfg.rtt_ms / 1000.0,
            rtt_cloud_extra_s=0.0,
            backhaul_bytes_per_s=1.25e9,
        )
        rows: list[Row] = []
        for rep in range(cfg.repeats):
            self.device.reset_sessions()
            classes: dict[int, int] = {}
            memory = SessionMemory()
            for i, req in enumerate(requests):
                trace_t = offset + req.arrival_s
                action = self._action(req, rows[i] if rep > 0 else None, classes)
                record, others = self._run(req, trace_t, action, spec.uplink, memory)
                memory.remember(req)
                if rep == 0:
                    rows.append(self._new_row(spec, req, record, trace_t))
                row = rows[i]
                self._record(row, record, others, link)
                load = "?" if others is None else f"{others:.2f}"
                say(
                    cfg,
                    f"{spec.uplink.name} repeat {rep + 1}/{cfg.repeats} request "
                    f"{i + 1}/{len(requests)}: k={record.split} measured "
                    f"{record.latency_s:.3f} s, predicted "
                    f"{row.predictions[self.primary]['latency_s']:.3f} s "
                    f"(others used {load} CPUs)",
                )
        return rows

    def _action(self, req: ReplayRequest, first: Row | None, classes: dict[int, int]) -> int | None:
        """The forced action of ``req``, or None where the decider places it: repeats replay
        the first run's action; forced runs give each session one split, round robin."""
        if first is not None:
            return self.layout.encode(first.split, int(first.keep))
        if self.decide is not None:
            return None
        idx = classes.setdefault(req.session, len(classes))
        return self.layout.encode(self.splits[idx % len(self.splits)], 1)

    def _new_row(self, spec: TraceSpec, req: ReplayRequest, record: Any, trace_t: float) -> Row:
        """The row of ``req``, with what its first run chose."""
        return Row(
            spec.uplink.name,
            req,
            record.split,
            record.keep,
            split_class(record.split, self.n_layers),
            record.decision_source,
            trace_t,
        )

    def _record(self, row: Row, record: Any, others: float | None, link: LinkModel) -> None:
        """Add one repeat's measurements to ``row`` (and, the first time, the predictions)."""
        measured = asdict(record)
        measured.pop("tokens")
        measured["others_cpus"] = others
        row.measured.append(measured)
        if not row.predictions:
            row.predictions = predictions(
                record, row.trace_t, row.request, self.tiers, link, self.primary
            )

    def _run(
        self,
        req: ReplayRequest,
        trace_t: float,
        action: int | None,
        uplink: Trace,
        memory: SessionMemory,
    ) -> tuple[Any, float | None]:
        from validation.runtime.device import Turn

        turn = Turn(
            req.session,
            req.new_tokens,
            req.context_tokens,
            req.output_tokens,
            trace_t,
            request_id=req.index,
        )
        self._wait_for_quiet()
        self.monitor.restart()
        if action is not None:
            record = self.device.run(turn, action)
        else:
            assert self.decide is not None and self.facts is not None
            cached = self.device.cached(req.session)
            state = device_state(req, uplink, trace_t, cached, self.facts, memory)
            decide = self.decide
            record = self.device.run(turn, decide=lambda _turn: decide(state))
        others = self.monitor.others()
        self._last_contended = others is not None and others > CONTENTION_CPUS
        return record, others

    def _wait_for_quiet(self) -> None:
        """After a contended request, wait (in 0.5 s windows, at most ``quiet_wait_s`` per
        request and ``quiet_budget_s`` in all) until other processes leave the CPUs alone."""
        cfg = self.cfg
        if not self._last_contended:
            return
        deadline = time.monotonic() + cfg.quiet_wait_s
        while time.monotonic() < deadline and self.waited_s < cfg.quiet_budget_s:
            start = time.monotonic()
            self.monitor.restart()
            time.sleep(0.5)
            others = self.monitor.others()
            self.waited_s += time.monotonic() - start
            if others is None or others <= CONTENTION_CPUS:
                break
        self._last_contended = False
