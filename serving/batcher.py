"""Micro-batching of single decisions: requests that arrive together share one onnxruntime run.

Under load an event loop reads several requests in one poll and runs their handlers one after
the other. Each ``POST /v1/decide`` handler parks its request body here and awaits; the first
one to park schedules the flush two turns of the loop later (``loop.call_soon`` twice): by then
every handler scheduled in this turn has parked, and so has every handler of the requests read
by the poll between the two turns. Without that second turn a closed-loop load of 8 connections
settles into two waves of ~4 requests; with it, into one batch of 8 (measured in the decision
service under ``wrk``: 3.9 -> 8.0 requests per batch, and a third less CPU per decision).
The flush then parses the bodies one after the other (validation errors go to their own
request) and decides them all with
:meth:`~serving.policy_runtime.DecisionRuntime.decide_many` (one onnxruntime call, the same
rows as the single path). A request alone waits two turns of the loop (microseconds).

This matters more than it seems: inside a busy server, onnxruntime's code is cold in the CPU
caches at every call, so one run costs several times what a warm benchmark loop shows, and a
batch of eight costs little more than one. A row's answer does not depend on its batch: with
the CPU provider a row's logits came out the same, bit for bit, at every batch size tried
(1 to 256), and the tests compare batched with single decisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from serving.policy_runtime import Decision

log = logging.getLogger("offload_rl.serving")

Pending = list[tuple[Any, "asyncio.Future[Decision]"]]
Decided = list[tuple[Any, "asyncio.Future[Decision]"]]  # a state, or what parse made


class Decides(Protocol):
    """What the batcher decides with: the runtime, or an edge-aware decider wrapping it."""

    def decide(self, item: Any) -> Decision: ...
    def decide_many(self, items: Sequence[Any]) -> list[Decision]: ...


class DecisionBatcher:
    """Coalesces concurrent single decisions (per event loop) into batches of ``max_batch``
    at most. ``parse`` turns what a request parks (its body) into a state, in the flush, where
    parsing one body after another is cheaper than in each handler; what it raises is that
    request's answer (``None``: requests park states). A batch that raises is decided again one
    state at a time, so one request's failure stays that request's. ``on_decisions`` sees every
    batch decided (metrics), ``on_batch`` the size of every micro-batch formed (before it is
    decided, so a batch that falls back to one-by-one still counts once)."""

    def __init__(
        self,
        runtime: Decides,
        max_batch: int = 256,
        on_decisions: Callable[[Sequence[Decision]], None] | None = None,
        parse: Callable[[Any], Any] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.max_batch = max_batch
        self.on_decisions = on_decisions
        self.parse = parse
        self.on_batch = on_batch
        self._pending: dict[asyncio.AbstractEventLoop, Pending] = {}
        self.batches = 0  # flushes so far (for tests and benchmarks)
        self.decisions = 0

    async def decide(self, item: Any) -> Decision:
        """``runtime.decide(parse(item))``, batched with the requests that arrive with it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._next_turn, loop)
        pending.append((item, future))
        return await future

    def _next_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        # a callback scheduled from a callback runs after the loop's next poll for I/O
        loop.call_soon(self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending.pop(loop, None) or []
        live: Decided = []
        parse = self.parse
        for item, future in pending:
            if future.done():  # a cancelled request is skipped
                continue
            if parse is None:
                live.append((item, future))
                continue
            try:
                live.append((parse(item), future))
            except Exception as err:  # e.g. a validation error: that request's answer
                future.set_exception(err)
        try:
            for start in range(0, len(live), self.max_batch):
                batch = live[start : start + self.max_batch]
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                self._decide(batch)
        except Exception as err:  # a bug here must not leave requests waiting for ever
            log.exception("micro-batch flush failed")
            for _, future in live:
                if not future.done():
                    future.set_exception(err)

    def _decide(self, batch: Decided) -> None:
        self.batches += 1
        self.decisions += len(batch)
        rt = self.runtime
        try:
            if len(batch) == 1:
                decisions = [rt.decide(batch[0][0])]
            else:
                decisions = rt.decide_many([s for s, _ in batch])
        except Exception as err:
            if len(batch) == 1:  # the request's handler raises it (and it is logged there)
                batch[0][1].set_exception(err)
                return
            log.warning("a batch of %d decisions failed (%s); one by one", len(batch), err)
            for item in batch:
                self._decide([item])
            return
        for (_, future), d in zip(batch, decisions, strict=True):
            future.set_result(d)
        if self.on_decisions is not None:
            self.on_decisions(decisions)
