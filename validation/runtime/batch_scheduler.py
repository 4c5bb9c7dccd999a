"""The cell edge runtime's scheduler: who runs in the next iteration, and who holds KV.

The rules are vLLM V0's (``Scheduler`` with chunked prefill), the ones
:mod:`offload_rl.cell.edge_server` simulates; this is an independent implementation that drives
real tensors, so a mistake on either side shows up as a prediction error:

1. budgets: at most ``max_num_batched_tokens`` tokens and ``max_num_seqs`` sequences per
   iteration;
2. running sequences first, in admission order: each decode takes one token; a decode whose KV
   does not fit first evicts kept sessions (least recently used), then preempts the most recently
   admitted running sequence with recompute (its KV dropped, back to the front of the queue);
   then unfinished prompts take chunks of what is left of the token budget;
3. FCFS admission (only in an iteration that preempted nobody): the head of the queue claims its
   session's kept KV, evicts kept sessions until its whole prompt's KV fits, else blocks the
   queue; a prompt larger than the whole pool is rejected;
4. the batch is fixed when the iteration starts; tokens land when it ends;
5. split sequences (first edge layer ``k > 0``) hold KV for layers ``[k, L)`` only; after each
   token they wait for their round trip (the token goes down, the device runs its layers, the
   next position's hidden state comes back: :meth:`BatchScheduler.arrived`), keeping their KV
   and their slot, while iterations go on without them; a preemption does not end the wait:
   re-admitted, the sequence recomputes the positions whose hidden states the edge holds, and
   its newest position runs as a decode once its hidden state has arrived (the simulator's
   rule, ``edge_server`` point 5).

Memory is counted by :class:`offload_rl.cell.kv_pool.KVPool` (bytes per token of the edge's
layers, as the simulator counts them): the pool is bookkeeping, the tensors live with the
sequences (:class:`~validation.runtime.packed_model.SequenceKV`) and with the kept sessions
here. A kept entry is usable only by a turn with the same split. No torch here: the tests drive
it with hand-built cases.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from offload_rl.cell.kv_pool import KVPool

WAITING, RUNNING, FINISHED, REJECTED = "waiting", "running", "finished", "rejected"


@dataclass(eq=False)
class EdgeSequence:
    """One request at the edge: its token ids, how far its KV goes, what happened to it."""

    request_id: int
    session_id: int
    ids: list[int]  # every known token: context, prompt, then what was generated
    output_tokens: int
    keep: bool
    arrival_s: float
    kv: Any = None  # the tensors (the runtime's SequenceKV); None while it holds none
    split: int = 0  # first edge layer k (0: token ids, every layer here)
    hidden: Any = None  # split: inputs of layer k for the positions that came up (boundary)
    awaiting: bool = False  # split: waiting for the next position's hidden state
    status: str = WAITING
    computed: int = 0  # tokens whose KV exists
    generated: int = 0
    cached_tokens: int = 0  # reused from a kept entry at first admission
    preemptions: int = 0
    admit_s: float = -1.0
    first_token_s: float = -1.0
    finish_s: float = -1.0
    queued_s: float = 0.0
    queued_since: float = 0.0
    batch_at_admit: int = 0

    @property
    def known(self) -> int:
        return len(self.ids)


@dataclass
class Kept:
    """A finished session's KV the edge keeps for its next turn (tokens = its length)."""

    tokens: int
    kv: Any
    split: int = 0


@dataclass
class Plan:
    """One iteration: the sequences, how many tokens each computes, and what it cost to free."""

    sequences: list[EdgeSequence] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    evicted: list[int] = field(default_factory=list)  # sessions
    preempted: list[int] = field(default_factory=list)  # request ids

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def n_tokens(self) -> int:
        return sum(self.tokens)


class BatchScheduler:
    """Continuous batching over one KV pool of ``pool_bytes`` (see the module docstring)."""

    def __init__(
        self,
        pool_bytes: int,
        kv_bytes_per_token: int,
        max_num_batched_tokens: int,
        max_num_seqs: int,
        new_kv: Any = None,
        n_layers: int = 1,
    ) -> None:
        """``kv_bytes_per_token``: a token's KV over all ``n_layers`` layers (what a token-id
        sequence holds); a split sequence holds its layers' share."""
        if kv_bytes_per_token < 1 or max_num_batched_tokens < 1 or max_num_seqs < 1:
            raise ValueError("kv_bytes_per_token and both budgets must be >= 1")
        if n_layers < 1 or kv_bytes_per_token % n_layers:
            raise ValueError(f"kv_bytes_per_token must be a multiple of n_layers={n_layers}")
        self.pool = KVPool(pool_bytes)
        self.bpt = int(kv_bytes_per_token)
        self.n_layers = int(n_layers)
        self.max_num_batched_tokens = int(max_num_batched_tokens)
        self.max_num_seqs = int(max_num_seqs)
        self.new_kv = new_kv if new_kv is not None else (lambda: None)
        self.waiting: deque[EdgeSequence] = deque()
        self.running: list[EdgeSequence] = []  # admission order
        self.kept: dict[int, Kept] = {}
        self.finished: list[EdgeSequence] = []
        self.preemptions = 0
        self.evictions = 0

    # --- the runtime's interface -----------------------------------------------------------

    def submit(self, seq: EdgeSequence, t: float) -> None:
        if not 0 <= seq.split < self.n_layers:
            raise ValueError(f"split {seq.split} does not run at the edge (0..{self.n_layers - 1})")
        seq.status = WAITING
        seq.queued_since = t
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def has_ready(self) -> bool:
        """Whether an iteration could run now: something queued, or a running sequence not
        waiting for its round trip."""
        return bool(self.waiting) or any(
            not r.awaiting or r.known - r.computed > 1 for r in self.running
        )

    @staticmethod
    def computable(r: EdgeSequence) -> int:
        """Tokens of ``r`` whose inputs the edge holds: all it has not computed, less the newest
        while its hidden state is on its way up (a split sequence preempted in its round trip)."""
        return r.known - r.computed - r.awaiting

    def seq_bpt(self, r: EdgeSequence) -> int:
        """KV bytes per token of ``r``'s edge layers ``[split, L)``."""
        return self.bpt // self.n_layers * (self.n_layers - r.split)

    def arrived(self, r: EdgeSequence) -> None:
        """A split sequence's round trip ended: its next position can run."""
        r.awaiting = False

    def drop_session(self, session_id: int) -> None:
        """The session moved to another placement: its kept entry is useless (not an eviction,
        as the simulator's dispatch drops it)."""
        self.pool.drop(session_id)
        self.kept.pop(session_id, None)

    def schedule(self, s: float) -> Plan:
        """The next iteration's batch at time ``s`` (may be empty: a blocked queue)."""
        plan = Plan()
        budget = self.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0 and len(plan) < self.max_num_seqs:
            r = self.running[i]
            i += 1
            if r.awaiting or r.known - r.computed != 1:
                continue
            grow = (r.computed + 1) * self.seq_bpt(r) - self.pool.held_by(r.request_id)
            if grow > 0:
                if not self._make_room(r, grow, s, plan):
                    continue
                self.pool.grow(r.request_id, grow)
            plan.sequences.append(r)
            plan.tokens.append(1)
            budget -= 1
        for r in self.running:
            if budget <= 0 or len(plan) >= self.max_num_seqs:
                break
            if r.known - r.computed > 1:
                n = min(self.computable(r), budget)
                plan.sequences.append(r)
                plan.tokens.append(n)
                budget -= n
        if not plan.preempted or not plan.sequences:
            self._admit(s, budget, plan)
        return plan

    def complete(self, plan: Plan, sampled: list[int | None], e: float) -> list[EdgeSequence]:
        """The iteration ended at ``e``: KV grew, sampled tokens join their sequences; the
        sequences that got a token (in plan order), finished ones moved to :attr:`finished`."""
        got = []
        for r, n, token in zip(plan.sequences, plan.tokens, sampled, strict=True):
            r.computed += n
            if r.computed != r.known:
                continue
            if token is None:
                raise ValueError(f"request {r.request_id} ended its prompt without a token")
            r.ids.append(token)
            r.generated += 1
            if r.first_token_s < 0:
                r.first_token_s = e
            got.append(r)
            if r.generated >= r.output_tokens:
                self._finish(r, e)
            elif r.split > 0:
                r.awaiting = True
        return got

    def chunk_ids(self, r: EdgeSequence, n: int) -> list[int]:
        """The token ids ``r`` computes next (``n`` of them from ``computed``)."""
        return r.ids[r.computed : r.computed + n]

    def chunk_hidden(self, r: EdgeSequence, n: int) -> Any:
        """A split sequence's boundary hidden states it computes next (rows ``computed..``)."""
        return r.hidden[r.computed : r.computed + n]

    # --- admission, room, finishing --------------------------------------------------------

    def _admit(self, s: float, budget: int, plan: Plan) -> None:
        pool = self.pool
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            if len(plan) >= self.max_num_seqs:
                return
            r = self.waiting[0]
            bpt = self.seq_bpt(r)
            if r.known * bpt > pool.capacity_bytes:
                self.waiting.popleft()
                r.status = REJECTED
                r.finish_s = s
                r.queued_s += s - r.queued_since
                self.finished.append(r)
                continue
            hit = pool.claim(r.session_id, r.split, r.request_id, r.known - 1)
            if hit:
                entry = self.kept.pop(r.session_id)
                r.kv, r.computed = entry.kv, hit
                if r.admit_s < 0:
                    r.cached_tokens = hit
            need = (r.known - r.computed) * bpt
            while pool.free_bytes < need:
                sid = pool.evict_lru()
                if sid is None:
                    break
                self._evicted(sid, plan)
            if pool.free_bytes < need:  # head-of-line blocking: give the entry back
                if hit:
                    pool.keep(r.request_id, r.session_id, r.split, hit)
                    self.kept[r.session_id] = Kept(hit, r.kv, r.split)
                    r.kv, r.computed = None, 0
                return
            self.waiting.popleft()
            pool.grow(r.request_id, need)
            if r.kv is None:
                r.kv = self.new_kv()
            r.status = RUNNING
            r.queued_s += s - r.queued_since
            if r.admit_s < 0:
                r.admit_s = s
                r.batch_at_admit = len(self.running)
            self.running.append(r)
            n = min(self.computable(r), budget)
            if n:  # 0: a preempted split sequence's only missing input is still on its way
                plan.sequences.append(r)
                plan.tokens.append(n)
                budget -= n

    def _make_room(self, r: EdgeSequence, nbytes: int, s: float, plan: Plan) -> bool:
        """Evict kept sessions, then preempt the newest admissions; False if ``r`` was one."""
        while self.pool.free_bytes < nbytes:
            sid = self.pool.evict_lru()
            if sid is not None:
                self._evicted(sid, plan)
                continue
            victim = self._victim()
            self._preempt(victim, s, plan)
            if victim is r:
                return False
        return True

    def _victim(self) -> EdgeSequence:
        """The running sequence a full pool preempts: the most recently admitted (vLLM V0)."""
        return self.running.pop()

    def _evicted(self, session_id: int, plan: Plan) -> None:
        self.kept.pop(session_id, None)
        self.evictions += 1
        plan.evicted.append(session_id)

    def _preempt(self, r: EdgeSequence, s: float, plan: Plan) -> None:
        """Recompute preemption: the KV is dropped, the sequence goes back to the queue's front
        with every token it knows (prompt and generated) to prefill again; a split sequence
        keeps waiting for the hidden state still on its way (``awaiting`` stays)."""
        self.pool.release(r.request_id)
        if r in plan.sequences:  # scheduled earlier in this iteration: take it out
            j = plan.sequences.index(r)
            del plan.sequences[j], plan.tokens[j]
        r.kv, r.computed = None, 0
        r.status = WAITING
        r.preemptions += 1
        r.queued_since = s
        self.preemptions += 1
        plan.preempted.append(r.request_id)
        self.waiting.appendleft(r)

    def _finish(self, r: EdgeSequence, e: float) -> None:
        self.running.remove(r)
        if r.keep:
            self.pool.keep(r.request_id, r.session_id, r.split, r.computed)
            self.kept[r.session_id] = Kept(r.computed, r.kv, r.split)
        else:
            self.pool.release(r.request_id)
        r.kv = None
        r.status = FINISHED
        r.finish_s = e
        self.finished.append(r)
