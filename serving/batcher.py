"""Micro-batching of single decisions: requests that arrive together share one onnxruntime run.

Under load an event loop reads several requests in one poll and runs their handlers one after
the other. Each ``POST /v1/decide`` handler parks its state here and awaits; the first one to
park schedules :meth:`DecisionBatcher._flush` with ``loop.call_soon``, which runs after every
handler already scheduled in that turn of the loop has parked its state, and decides them all
with :meth:`~serving.policy_runtime.DecisionRuntime.decide_many` (one onnxruntime call, the
same rows as the single path). A request alone waits one turn of the loop (microseconds).

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

from offload_rl.features import StateLike
from serving.policy_runtime import Decision, DecisionRuntime

log = logging.getLogger("offload_rl.serving")

Pending = list[tuple[StateLike, "asyncio.Future[Decision]"]]


class DecisionBatcher:
    """Coalesces concurrent single decisions (per event loop) into batches of ``max_batch``
    at most. A batch that raises is decided again one state at a time, so one request's
    failure stays that request's. ``on_decisions`` sees every batch decided (metrics)."""

    def __init__(
        self,
        runtime: DecisionRuntime,
        max_batch: int = 256,
        on_decisions: Callable[[Sequence[Decision]], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.max_batch = max_batch
        self.on_decisions = on_decisions
        self._pending: dict[asyncio.AbstractEventLoop, Pending] = {}
        self.batches = 0  # flushes so far (for tests and benchmarks)
        self.decisions = 0

    async def decide(self, state: StateLike) -> Decision:
        """``runtime.decide(state)``, batched with the other requests of this loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append((state, future))
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending.pop(loop, None) or []
        live = [(s, f) for s, f in pending if not f.done()]  # a cancelled request is skipped
        try:
            for start in range(0, len(live), self.max_batch):
                self._decide(live[start : start + self.max_batch])
        except Exception as err:  # a bug here must not leave requests waiting for ever
            log.exception("micro-batch flush failed")
            for _, future in live:
                if not future.done():
                    future.set_exception(err)

    def _decide(self, batch: Pending) -> None:
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
