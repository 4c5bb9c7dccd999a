"""What the edge's exact state says about a request sent there now: its wait, its extra time in
the batch, and the delay it imposes on the others.

The edge runtime knows its queue (requests and prompt tokens waiting) and its running batch
(requests and KV tokens); it does not publish each request's split or remaining output, so the
others are taken as token-id requests (``k = 0``) of the batch's mean context. Iteration times
come from the edge's own :class:`~offload_rl.cell.batch_roofline.BatchRoofline` (the cost the
simulated server uses), which is linear in every sequence's context: ``n`` sequences of mean
context ``c`` cost exactly what ``n`` sequences of their own contexts cost.

The model of one request ``r`` (split ``k``, ``p`` prompt tokens to prefill on top of ``c``
cached ones, ``o`` output tokens) arriving at a batch of ``n`` decoding requests with ``W``
prompt tokens waiting, under a token budget ``B`` per iteration (vLLM's chunked prefill:
decodes first, then prompt chunks):

* **wait**: half an iteration in flight, then the waiting prompts' chunks, ``ceil(W / (B - n))``
  iterations of ``n`` decodes plus a full chunk (FCFS: they are admitted first);
* **a full batch** (``max_num_seqs`` ``S``, read from the cell config as the simulator's
  scheduler does): with ``n`` running and ``m`` waiting, the newcomer is admitted once
  ``k = n + m + 1 - S`` running requests have finished. The runtime does not publish their
  remaining outputs, so they are taken as spread evenly over ``0 .. 2R`` (``R``: the output a
  running request still owes, on average): the ``k``-th finishes after ``k * 2R / (n + 1)``
  decode iterations of the full batch, which the newcomer waits on top. From then on it runs
  beside ``S - 1`` others, not ``n`` (a slot had to free for it);
* **prefill**: ``ceil(p / (B - n))`` chunk iterations; what the batch adds to each is the
  others' decodes (and the layers and head the request alone would not run);
* **decode**: each of the ``o - 1`` iterations costs what the batch with ``r`` costs, minus
  what ``r`` alone costs: that difference is ``r``'s extra time per token;
* **externality**: every running request is slowed, per iteration it shares with ``r``, by
  what ``r`` adds to the iteration: its prefill chunks once, its decode step for
  ``min(o - 1, remaining)`` iterations; a waiting request only by the decodes (it is admitted
  before ``r``'s prefill). Summed over the others: seconds of delay ``r`` imposes.

Left out on purpose: KV-pool blocking and preemption (the pool's occupancy includes evictable
kept entries, so it does not say how close preemption is), the others' own round trips (split
requests skip iterations), requests that arrive after ``r``.
"""

from __future__ import annotations

from dataclasses import dataclass

from offload_rl.cell.batch_roofline import BatchRoofline


@dataclass(frozen=True, slots=True)
class EdgeView:
    """The edge's exact state as the runtime beside the decision service reports it."""

    n_waiting: int
    waiting_tokens: int
    n_running: int
    running_tokens: int


@dataclass(frozen=True, slots=True)
class EdgeOutlook:
    """Seconds a request sent now waits, spends extra in the batch, and costs the others."""

    wait_s: float  # before its first chunk is scheduled
    prefill_extra_s: float  # what the batch adds to its prefill (delays its first token)
    decode_extra_s: float  # what the batch adds to its decode (all o - 1 tokens)
    externality_s: float  # delay it imposes on the running and waiting requests, summed


class EdgeBatchModel:
    """Iteration times of the running batch plus one request, from the edge's roofline."""

    def __init__(
        self, cost: BatchRoofline, max_num_batched_tokens: int, max_num_seqs: int | None = None
    ) -> None:
        self.cost = cost
        self.budget = int(max_num_batched_tokens)
        # None: no limit on the batch's sequences (the token budget alone)
        self.max_seqs = int(max_num_seqs) if max_num_seqs is not None else None
        self._last_view: tuple[EdgeView, float] | None = None
        self._last_batch: tuple[int, float, float] = (0, 0.0, 0.0)

    def _others_s(self, n: int, mean_context: int) -> float:
        """The running batch's decode steps, one token each (split 0, mean context)."""
        return n * self.cost.sequence_s(0, 1, mean_context, True) if n else 0.0

    def _fixed_s(self, n_others: int, split: int, samples: bool) -> float:
        """Weights and overheads of an iteration: ``n_others`` id requests, one at ``split``."""
        if n_others:
            return self.cost.fixed_s(0, True, True)
        return self.cost.fixed_s(split, split == 0, samples)

    def chunks(self, n_running: int, tokens: int) -> list[int]:
        """Prompt chunk sizes of ``tokens`` next to ``n_running`` decodes (decodes go first)."""
        room = max(self.budget - n_running, 1)
        full, rest = divmod(max(int(tokens), 0), room)
        return [room] * full + ([rest] if rest else [])

    def outlook(
        self,
        edge: EdgeView,
        split: int,
        prefill_tokens: int,
        cached_tokens: int,
        output_tokens: int,
        others_remaining: float,
    ) -> EdgeOutlook:
        """See the module docstring; ``others_remaining`` = output tokens the others still owe."""
        cost = self.cost
        n, others, wait = self._batch(edge, others_remaining)
        # prefill: the request's chunks, with and without the batch beside them
        prefill_extra = 0.0
        ext_prefill = 0.0
        done = cached_tokens
        chunks = self.chunks(n, prefill_tokens)
        alone_chunks = self.chunks(0, prefill_tokens)
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            mine = cost.sequence_s(split, chunk, done, last)
            prefill_extra += others + mine + self._fixed_s(n, split, last)
            if n:  # what the chunk adds to the iteration the others are in
                ext_prefill += mine + self._fixed_s(n, split, last) - self._fixed_s(n - 1, 0, True)
            done += chunk
        done = cached_tokens
        for i, chunk in enumerate(alone_chunks):
            last = i == len(alone_chunks) - 1
            prefill_extra -= cost.sequence_s(split, chunk, done, last) + self._fixed_s(
                0, split, last
            )
            done += chunk
        # decode: o - 1 steps at contexts ctx .. ctx + o - 2 (linear in the context)
        n_dec = max(int(output_tokens) - 1, 0)
        ctx0 = cached_tokens + prefill_tokens
        mine_sum = self._decode_sum(split, ctx0, n_dec)
        with_batch = n_dec * (others + self._fixed_s(n, split, True)) + mine_sum
        alone = n_dec * self._fixed_s(0, split, True) + mine_sum
        decode_extra = with_batch - alone
        overlap = min(float(n_dec), max(others_remaining, 0.0))
        mean_step = mine_sum / n_dec if n_dec else 0.0
        step_add = mean_step + self._fixed_s(n, split, True) - self._fixed_s(max(n - 1, 0), 0, True)
        # each running request is delayed once by the prefill chunks, and every request in the
        # system by the decode steps it shares with this one
        ext_total = n * ext_prefill + (n + max(int(edge.n_waiting), 0)) * overlap * step_add
        return EdgeOutlook(
            wait_s=wait,
            prefill_extra_s=max(prefill_extra, 0.0),
            decode_extra_s=max(decode_extra, 0.0),
            externality_s=ext_total,
        )

    def _batch(self, edge: EdgeView, others_remaining: float) -> tuple[int, float, float]:
        """(requests running beside the newcomer, their decode steps' seconds per iteration, the
        wait before its first chunk): the same for every placement of one decision, so kept."""
        key = (edge, others_remaining)
        if key == self._last_view:
            return self._last_batch
        cost = self.cost
        n = max(int(edge.n_running), 0)
        c_bar = round(edge.running_tokens / n) if n else 0
        others = self._others_s(n, c_bar)
        step = others + self._fixed_s(n - 1, 0, True) if n else 0.0  # a decode iteration
        wait = 0.5 * step
        if edge.waiting_tokens > 0:
            for chunk in self.chunks(n, edge.waiting_tokens):
                wait += others + cost.sequence_s(0, chunk, 0, False) + cost.fixed_s(0, True, True)
        full = self.max_seqs is not None and n + max(int(edge.n_waiting), 0) >= self.max_seqs
        if full and n:
            assert self.max_seqs is not None
            k = n + max(int(edge.n_waiting), 0) + 1 - self.max_seqs  # finishes it waits for
            wait += k * 2.0 * max(others_remaining, 0.0) / (n + 1) * step
            n = min(n, self.max_seqs - 1)  # it runs beside the ones left
            others = self._others_s(n, c_bar)
        self._last_view, self._last_batch = key, (n, others, wait)
        return self._last_batch

    def _decode_sum(self, split: int, ctx0: int, n_dec: int) -> float:
        """Sum of one sequence's decode steps at contexts ``ctx0 .. ctx0 + n_dec - 1``."""
        if n_dec <= 0:
            return 0.0
        a = self.cost.sequence_s(split, 1, ctx0, True)
        b = self.cost.sequence_s(split, 1, ctx0 + 1, True) - a  # per token of context
        return n_dec * a + b * n_dec * (n_dec - 1) / 2.0
