"""The edge server's scheduler: iteration-level continuous batching with chunked prefill.

One class decides *who runs next* (vLLM V0's ``Scheduler``); memory is held by
:class:`~offload_rl.cell.kv_pool.KVPool` (vLLM's block manager). The model, iteration by iteration:

1. **Budgets** (named as in vLLM): at most ``max_num_batched_tokens`` tokens and
   ``max_num_seqs`` sequences per iteration. Defaults 2048 / 256 are vLLM's for
   ``vllm serve`` on a GPU under 70 GiB (``engine/arg_utils.py``; "a balance between ITL and
   TTFT"), which covers the L4 edge.
2. **Running requests first, decodes before prefill chunks** (vLLM's chunked-prefill policy): each
   ready decode takes one token; a decode that needs a token of KV that is not free first evicts
   kept sessions (LRU), then **preempts the most recently admitted running request** with
   recompute (its KV freed, it goes back to the *front* of the queue and re-prefills its prompt
   and the tokens it already generated; a split request's newest position waits for its input,
   point 5); if the victim is the request itself, it stops there.
   Unfinished prompts continue with chunks of what is left of the token budget.
3. **Admission, FCFS**: the head of the queue is admitted while budget and sequence slots remain
   and its whole prompt's KV fits after evicting kept sessions (vLLM allocates the whole prompt
   at admission and never preempts for a newcomer); a head that does not fit blocks the queue.
   A session's kept entry made with the same split is claimed on admission (a hit skips those
   tokens). A prompt larger than the whole pool is rejected (vLLM's ``FINISHED_IGNORED``).
4. **Iteration time** from :class:`~offload_rl.cell.batch_roofline.BatchRoofline`; the batch is
   fixed when the iteration starts and its tokens land when it ends, so a request submitted
   mid-iteration waits for the next one, as in a real engine loop.
5. **Split requests** (first edge layer ``k > 0``) hold KV for layers ``[k, L)`` only and pay
   only those layers. After each token they leave the ready set for ``round_trip_s``: the token
   goes down, the device runs its layers and the next token's activations come back up (RTT +
   device time + upload, which the environment knows and sets). They keep their KV and slot
   meanwhile; iterations go on without them. Token-id requests (``k = 0``) stream tokens down
   without waiting. A split request **preempted** (step 2) keeps its ``ready_at``: the newest
   position's activation is still on its way up and no scheduler can make it arrive sooner.
   It goes back to the front of the queue as any victim and is admitted by the same FCFS rule
   (its whole KV reserved); its recompute covers only the positions whose activations the edge
   holds, and the newest position joins as a decode once ``ready_at`` has passed (so it is
   never computed before its input can exist). The alternative, not admitting the head before
   its ``ready_at``, would block every request behind it for up to a round trip while the edge
   could already recompute. Under this rule the requests behind it wait only as behind any
   head (FCFS, for room in the pool); once admitted it holds its KV and a slot until its
   activation arrives, as any running split request in its round trip does.

Accounting per request (:class:`EdgeRequest`): arrival, first admission, first token, finish,
preemptions, seconds queued (over all admissions), batch size at admission. The server also
integrates the number of requests in the system over time (Little's law, Decima's reward).

Speed: in the cell almost every iteration is decode-only. Those stretches run in one loop over
plain floats that performs the general scheduler's float operations in its order. While nothing
but token-id requests is ready the batch is fixed and an iteration's time is affine in the
iteration count (each sequence's context grows by one), so ``k`` iterations take
``k * d0 + g * k(k-1)/2``: the loop jumps in closed form to the next event (a finish, the horizon,
a full pool, a split request's round trip ending), which changes times only by float summation
order (a few ulps per iteration). ``EdgeServer(..., fast=False)`` runs every iteration through
the general scheduler: the reference ``tests/offload_rl/cell/test_edge_server_fast.py`` and
``tests/envs/test_edge_cell_fast_edge.py`` compare to (discrete events equal, times within 1e-9).
With numba installed (the ``fast`` extra) the server keeps its requests and its pool in flat
arrays it owns (:class:`~offload_rl.cell.sequence_table.SequenceTable`) and each
:meth:`EdgeServer.advance` runs whole in machine code on them, in place
(:mod:`offload_rl.cell.compiled_scheduler`), bit for bit as the Python scheduler, which stays the
reference (``EdgeServer(..., compiled=False)`` or ``OFFLOAD_RL_COMPILED=0``;
``tests/offload_rl/cell/test_compiled_decode.py`` compares them with ``==``). Then ``pool`` is a
:class:`~offload_rl.cell.sequence_table.TablePool` (KVPool's read side), the requests still in
the server have their fields written on :meth:`EdgeServer.sync_requests` (and when ``running``
or ``waiting`` is read).

Left out on purpose: swapping (recompute only, vLLM's default), priorities, the 1% free-block
watermark, speculative decoding. On recompute a split request re-prefills from the boundary
activations, which the edge is assumed to keep in host memory: the device is not asked to send
them again, so preempting split requests is priced a little low.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from offload_rl.cell import compiled_decode as cd
from offload_rl.cell import sequence_table as tab
from offload_rl.cell.batch_roofline import BatchRoofline
from offload_rl.cell.compiled_decode import JUMP_MIN, affine_iterations
from offload_rl.cell.kv_pool import KVPool
from offload_rl.cell.sequence_table import SequenceTable, TablePool

# vLLM engine/arg_utils.py defaults for `vllm serve` on GPUs under 70 GiB (code search, 2025).
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
DEFAULT_MAX_NUM_SEQS = 256

WAITING, RUNNING, FINISHED, REJECTED = "waiting", "running", "finished", "rejected"

# a compiled server's scalars, read from its table when asked instead of copied onto the server
# after every kernel call (see EdgeServer.__getattr__): the float ones by their index in gf, the
# integer ones by their index in gi
_GF_SCALARS = {
    "clock": tab.CLOCK, "busy_s": tab.BUSY, "_iter_end": tab.ITER_END, "_area": tab.AREA,
    "_area_t": tab.AREA_T,
}  # fmt: skip
_GI_SCALARS = {
    "iterations": tab.ITERATIONS, "closed_form_iterations": tab.CLOSED_FORM,
    "preemptions": tab.PREEMPTIONS_TOTAL, "last_batch_size": tab.LAST_SIZE,
    "last_batch_tokens": tab.LAST_TOKENS, "_in_flight": tab.IN_FLIGHT,
    "_n_in_system": tab.N_IN_SYSTEM,
}  # fmt: skip
# EdgeServer.decision_view: pool used and capacity bytes, waiting requests and tokens, running
# requests and tokens, the session's kept split (-1: none), tokens, bytes and recency rank
# (-1: none), and the busy seconds so far
DecisionView = tuple[int, int, int, int, int, int, int, int, int, int, float]


@dataclass(frozen=True, slots=True, eq=False)
class CostFacts:
    """What a server derives from its :class:`BatchRoofline` (frozen: the same for every
    server of one cost, so made once per cost, :func:`cost_facts`)."""

    # KV bytes per token of a request by its split (the layers the edge runs)
    kv_bytes: tuple[int, ...]
    # fixed_s of a decode-only iteration by its lowest split (the fast path's table)
    decode_fixed_s: tuple[float, ...]
    # d(sequence_s)/d(context) of a token-id decode
    decode_slope: float
    # a decode's terms of sequence_s, read once (the fast path prices every iteration)
    decode_terms: tuple[float, float, float, float, float, float, int]
    # the compiled scheduler's cost arrays: its coefficients (compiled_scheduler's C_*
    # order) and decode_fixed_s; read-only by use (no kernel writes them)
    arrays: tuple[np.ndarray, np.ndarray]


def _derive_facts(cost: BatchRoofline) -> CostFacts:
    kv_bytes = tuple(
        (cost.n_layers - k) * cost.kv_bytes_per_token_layer for k in range(cost.n_layers)
    )
    decode_fixed_s = tuple(cost.fixed_s(k, k == 0, True) for k in range(cost.n_layers + 1))
    slope = cost.n_layers * (cost.kv_s_per_token + 2 * cost.attn_s_unit)
    terms = (
        cost.kv_s_per_token,
        cost.linear_s_per_token,
        cost.attn_s_unit,
        cost.head_s_per_token,
        cost.embed_s_per_token,
        cost.head_s_per_sample,
        cost.n_layers,
    )
    coefficients = np.array(
        [
            *terms[:6],
            *(cost.layer_fixed_s, cost.head_fixed_s, cost.embed_fixed_s),
            *(slope, cost.n_layers),
        ]
    )
    return CostFacts(
        kv_bytes, decode_fixed_s, slope, terms, (coefficients, np.array(decode_fixed_s))
    )


# the last cost's facts: a simulator makes one server per episode on the same cost
_last_facts: tuple[BatchRoofline, CostFacts] | None = None


def cost_facts(cost: BatchRoofline) -> CostFacts:
    """``cost``'s :class:`CostFacts`, derived again only for another cost object (one
    cached: a :class:`BatchRoofline` is frozen, so its facts never change)."""
    global _last_facts
    hit = _last_facts
    if hit is None or hit[0] is not cost:
        hit = _last_facts = (cost, _derive_facts(cost))
    return hit[1]


@dataclass(slots=True, eq=False)
class EdgeRequest:
    """One request at the edge: what the device sent, and what happened to it."""

    request_id: int
    session_id: int
    split: int  # first edge layer k (0 = token ids, the edge runs every layer)
    arrival_s: float  # when its prompt (ids or activations) reached the edge
    context_tokens: int  # session tokens before this turn
    new_tokens: int
    output_tokens: int
    keep: bool = False  # leave the session's KV in the pool when done
    round_trip_s: float = 0.0  # per-token device round trip of a split request
    # --- state and accounting (the server writes these) ---
    status: str = WAITING
    known: int = 0  # tokens whose identity is known: prompt + generated
    computed: int = 0  # tokens whose KV exists at the edge
    generated: int = 0
    cached_tokens: int = 0  # reused from a kept entry at first admission
    kv_bytes_per_token: int = 0
    ready_at: float = 0.0
    admit_s: float = -1.0
    first_token_s: float = -1.0
    finish_s: float = -1.0
    preemptions: int = 0
    queued_s: float = 0.0
    queued_since: float = 0.0
    batch_at_admit: int = 0


@dataclass(slots=True)
class EdgeEvent:
    """What the environment may need to hear of: ``evicted``, ``preempted``, ``rejected``."""

    time_s: float
    kind: str
    session_id: int
    request_id: int = -1


@dataclass(slots=True)
class EdgeState:
    """What the edge runtime knows about itself at one moment (the observation's edge part)."""

    time_s: float
    n_waiting: int
    waiting_tokens: int  # prompt tokens still to prefill, summed over the queue
    n_running: int
    running_tokens: int  # tokens of KV held by running requests
    last_batch_size: int
    last_batch_tokens: int
    pool_capacity_bytes: int
    pool_used_bytes: int
    running_bytes: int
    kept_bytes: int
    n_kept: int
    preemptions: int
    evictions: int


class EdgeServer:
    """Continuous batching over one KV pool; see the module docstring for the rules."""

    def __init__(
        self,
        cost: BatchRoofline,
        pool_bytes: int,
        max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS,
        max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
        fast: bool = True,
        compiled: bool | None = None,
    ) -> None:
        if max_num_batched_tokens < 1 or max_num_seqs < 1:
            raise ValueError(
                f"budgets must be >= 1, got max_num_batched_tokens={max_num_batched_tokens}, "
                f"max_num_seqs={max_num_seqs}"
            )
        self.cost = cost
        self._kv = KVPool(pool_bytes)  # the Python scheduler's pool
        self.pool: KVPool | TablePool = self._kv
        self.max_num_batched_tokens = int(max_num_batched_tokens)
        self.max_num_seqs = int(max_num_seqs)
        # False: the general scheduler for every iteration (the reference); also with measured
        # steps, which price a whole batch (not a sum over sequences, as the fast path does)
        self.fast = fast and cost.steps is None
        self._waiting: deque[EdgeRequest] = deque()
        # submissions for the next advance (schedule), in order: (time, request)
        self._scheduled: deque[tuple[float, EdgeRequest]] = deque()
        self._running: list[EdgeRequest] = []  # admission order: last = most recently admitted
        self.clock = 0.0  # simulated up to here (end of the last iteration, or an idle instant)
        self.busy_s = 0.0
        self.iterations = 0
        self.preemptions = 0
        self.last_batch_size = 0
        self.last_batch_tokens = 0
        self._in_flight = False
        self._iter_end = 0.0
        self._sched: list[EdgeRequest] = []
        self._sched_n: list[int] = []
        self._finished: list[EdgeRequest] = []
        # a compiled server's first tokens in the order they came, when a caller asks for them
        # (sets a list here and empties it: the compiled simulator's token streams)
        self.first_tokens: list[EdgeRequest] | None = None
        self._events: list[EdgeEvent] = []
        self._n_in_system = 0
        self._area = 0.0  # integral of requests in system over time
        self._area_t = 0.0
        self.closed_form_iterations = 0  # iterations the fast path ran in closed form
        facts = cost_facts(cost)
        self._kv_bytes = facts.kv_bytes
        self._decode_fixed_s = facts.decode_fixed_s
        self._decode_slope = facts.decode_slope
        self._decode_terms = facts.decode_terms
        # whole advance calls in machine code on a SequenceTable (None: whenever numba is
        # there and OFFLOAD_RL_COMPILED is not 0); the Python scheduler is the reference
        self.compiled = self.fast and (
            cd.AVAILABLE if compiled is None else compiled and cd.AVAILABLE
        )
        if self.compiled:
            self._start_compiled(pool_bytes)

    def _start_compiled(self, pool_bytes: int) -> None:
        """Load the compiled scheduler (or fall back to Python for good) and make its table."""
        try:
            cd.scheduler()  # compiled once per process (the server holds no module: it deep-copies)
        except cd.COMPILE_ERRORS as err:
            cd.disable(str(err).splitlines()[0] if str(err) else type(err).__name__)
            self.compiled = False
            return
        self._table = SequenceTable.fresh(
            pool_bytes, self.max_num_batched_tokens, self.max_num_seqs
        )
        self.pool = TablePool(self._table)
        # the cost arrays in a kernel's argument order (one attribute read a call); shared by
        # the servers of one cost: the kernels only read them
        self._cost_arrays = cost_facts(self.cost).arrays
        self._cost_terms, self._decode_fixed_array = self._cost_arrays
        for name in (*_GF_SCALARS, *_GI_SCALARS):  # read from the table now (__getattr__)
            del self.__dict__[name]
        self.__class__ = TableEdgeServer

    # --- the environment's interface ---------------------------------------------------------

    def submit(self, req: EdgeRequest, t: float) -> None:
        """A request reaches the edge at ``t`` (call :meth:`advance` to ``t`` first)."""
        self._check(req)
        if t < self.clock and not self._in_flight:
            raise ValueError(f"submit at {t} is before the server's clock {self.clock}")
        if self.compiled:
            self._submit_compiled(req, t)
            return
        self._count(t, +1)
        self._arrive(req, t)
        if not self._in_flight and t > self.clock:
            self.clock = t
        self._waiting.append(req)

    def schedule(self, req: EdgeRequest, t: float, cell: tab.CellFacts = tab.NO_CELL) -> None:
        """A request that reaches the edge at ``t``, submitted by the next :meth:`advance` to
        ``t`` or later: that call first runs to ``t`` and submits it (``advance(t)`` then
        ``submit(req, t)``), for each scheduled request in the order of these calls. A
        compiled server does a decision's arrivals and its advance in one kernel call;
        ``cell``: what the compiled simulator reads of the request when it finishes."""
        self._check(req)
        if self.compiled:
            self._arrive(req, t)
            self._table.schedule(req, t, cell)
        else:
            self._scheduled.append((t, req))

    def _check(self, req: EdgeRequest) -> None:
        """Refuse a request the edge cannot run (before anything changes)."""
        if not 0 <= req.split < self.cost.n_layers:
            raise ValueError(
                f"split {req.split} does not run at the edge (0..{self.cost.n_layers - 1})"
            )
        if req.output_tokens < 1 or req.new_tokens < 1 or req.context_tokens < 0:
            raise ValueError(f"request {req.request_id}: needs >= 1 new and output token")

    def _arrive(self, req: EdgeRequest, t: float) -> None:
        """The request's fields as it joins the queue at ``t`` (its split checked)."""
        req.arrival_s = t
        req.status = WAITING
        req.known = req.context_tokens + req.new_tokens
        req.kv_bytes_per_token = self._kv_bytes[req.split]
        req.queued_since = t

    def _submit_compiled(self, req: EdgeRequest, t: float) -> None:
        """:meth:`submit` on the table: the row written, then counted and queued by the
        kernel's ``submit`` (as :meth:`advance` does the scheduled ones)."""
        self._arrive(req, t)
        table = self._table
        j = table.stage(req)
        cd.scheduler().submit(table.ints, table.floats, table.gi, table.gf, table.wait, j, t)

    def set_round_trip(self, req: EdgeRequest, round_trip_s: float) -> None:
        """Update a split request's per-token round trip (the link changed)."""
        req.round_trip_s = round_trip_s
        if self.compiled:
            j = self._table.row_of.get(req.request_id)
            if j is not None:
                self._table.floats[j, tab.ROUND_TRIP] = round_trip_s

    def advance(self, t: float) -> None:
        """Run the iterations that start before ``t``; one ending after ``t`` stays in flight.
        The requests :meth:`schedule` gave are submitted on the way, each at its time."""
        if self.compiled:
            self._advance_compiled(t)
            return
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= t:
            when, req = scheduled.popleft()
            self._advance_python(when)
            try:
                self.submit(req, when)
            except ValueError:
                scheduled.clear()  # as a compiled server drops the ones it did not take
                raise
        self._advance_python(t)

    def _advance_python(self, t: float) -> None:
        """:meth:`advance` without scheduled submissions (the reference scheduler)."""
        while True:
            if self._in_flight:
                if self._iter_end > t:
                    return
                self._complete_iteration()
                continue
            if self.fast and not self._waiting and self._decode_run(t):
                return
            start = self._next_start()
            if start is None or start >= t:
                if start is None and t > self.clock:
                    self.clock = t
                return
            self.clock = start
            if not self._start_iteration(start):
                later = [r.ready_at for r in self._running if r.ready_at > start]
                if not later or min(later) >= t:
                    self.clock = t  # idle until a round trip ends or a request arrives
                    return
                self.clock = min(later)

    def pop_finished(self) -> list[EdgeRequest]:
        """Requests that finished (or were rejected) since the last call, in finishing order."""
        done, self._finished = self._finished, []
        return done

    def pop_events(self) -> list[EdgeEvent]:
        """Evictions, preemptions and rejections since the last call."""
        events, self._events = self._events, []
        return events

    def state(self) -> EdgeState:
        """The runtime's exact view of itself (O(requests); once per decision)."""
        if self.compiled:
            return self._table_state()
        pool = self.pool
        waiting_tokens = sum(r.known - r.computed for r in self._waiting)
        running_tokens = sum(r.computed for r in self._running)
        return EdgeState(
            time_s=self.clock,
            n_waiting=len(self._waiting),
            waiting_tokens=waiting_tokens,
            n_running=len(self._running),
            running_tokens=running_tokens,
            last_batch_size=self.last_batch_size,
            last_batch_tokens=self.last_batch_tokens,
            pool_capacity_bytes=pool.capacity_bytes,
            pool_used_bytes=pool.used_bytes,
            running_bytes=pool.running_bytes,
            kept_bytes=pool.kept_bytes,
            n_kept=pool.n_kept,
            preemptions=self.preemptions,
            evictions=pool.evictions,
        )

    def queue_view(self) -> tuple[int, int, int, int, int, int]:
        """The fields of :meth:`state` a decision reads: pool used and capacity bytes, waiting
        requests and tokens, running requests and tokens (a compiled server reads them from
        its table without building an :class:`EdgeState`: once per decision)."""
        if self.compiled:
            t = self._table
            waiting_tokens, running_tokens = cd.scheduler().totals(t.ints, t.gi, t.run, t.wait)
            g = t.gi.tolist()
            return (
                g[tab.RUNNING_BYTES] + g[tab.KEPT_BYTES], g[tab.CAPACITY], g[tab.N_WAITING],
                waiting_tokens, g[tab.N_RUNNING], running_tokens,
            )  # fmt: skip
        es = self.state()
        return (
            es.pool_used_bytes, es.pool_capacity_bytes, es.n_waiting, es.waiting_tokens,
            es.n_running, es.running_tokens,
        )  # fmt: skip

    def decision_view(self, session_id: int) -> DecisionView:
        """What a decision reads of the edge, once per decision: :meth:`queue_view`'s fields,
        the session's kept entry (split -1 if none, its tokens and bytes), its
        :meth:`KVPool.recency_rank` and :attr:`busy_s` (a compiled server: one kernel call)."""
        if self.compiled:
            t = self._table
            row = t.kept_row(session_id)
            return cd.scheduler().decision_view(t.ints, t.gi, t.gf, t.run, t.wait, t.kept, row)
        entry = self.pool.peek(session_id)
        split, tokens, nbytes = (entry.split, entry.tokens, entry.nbytes) if entry else (-1, 0, 0)
        rank = self.pool.recency_rank(session_id)
        return (*self.queue_view(), split, tokens, nbytes, rank, self.busy_s)

    @property
    def running(self) -> list[EdgeRequest]:
        """The running requests, admission order (last = most recently admitted); a compiled
        server writes their fields first (:meth:`sync_requests`)."""
        if self.compiled:
            self._table.sync()
            return self._table.running()
        return self._running

    @property
    def waiting(self) -> deque[EdgeRequest]:
        """The queue, head first; a compiled server writes their fields first."""
        if self.compiled:
            self._table.sync()
            return self._table.waiting()
        return self._waiting

    @property
    def n_waiting(self) -> int:
        """``len(waiting)`` without building the queue."""
        return int(self._table.gi[tab.N_WAITING]) if self.compiled else len(self._waiting)

    @property
    def n_in_system(self) -> int:
        return self._n_in_system

    def area_in_system(self, t: float) -> float:
        """Integral over ``[0, t]`` of the number of requests in the system (queued or running)."""
        return self._area + self._n_in_system * (t - self._area_t)

    # --- one iteration -------------------------------------------------------------------------

    def _count(self, t: float, delta: int) -> None:
        self._area += self._n_in_system * (t - self._area_t)
        self._area_t = t
        self._n_in_system += delta

    def _next_start(self) -> float | None:
        """When the next iteration can start: now if anything is ready or queued."""
        if self._waiting:
            return self.clock
        if not self._running:
            return None
        # a prefill (more than one token to compute) can always go on now: its inputs are here
        first_ready = min(r.ready_at if r.known - r.computed == 1 else 0.0 for r in self._running)
        return max(self.clock, first_ready)

    def _start_iteration(self, s: float) -> bool:
        """Schedule a batch at ``s`` (decodes, then prefill chunks, then admissions)."""
        self._sched.clear()
        self._sched_n.clear()
        budget = self.max_num_batched_tokens
        preempted_before = self.preemptions
        i = 0
        while i < len(self._running) and budget > 0 and len(self._sched) < self.max_num_seqs:
            r = self._running[i]
            i += 1
            if r.ready_at > s or r.known - r.computed != 1:
                continue
            # a decode's token needs new KV; a prompt's last token had it reserved at admission
            grow = (r.computed + 1) * r.kv_bytes_per_token - self._kv.held_by(r.request_id)
            if grow > 0:
                if not self._make_room(r, grow, s):
                    continue
                self._kv.grow(r.request_id, grow)
            self._sched.append(r)
            self._sched_n.append(1)
            budget -= 1
        for r in self._running:
            if budget <= 0 or len(self._sched) >= self.max_num_seqs:
                break
            need = r.known - r.computed
            if need > 1:
                n = min(self._computable(r, s), budget)
                self._sched.append(r)
                self._sched_n.append(n)
                budget -= n
        if self.preemptions == preempted_before or not self._sched:
            self._admit(s, budget)  # vLLM admits no prompt in a step that had to preempt
        if not self._sched:
            return False
        self._in_flight = True
        self._iter_end = s + self._batch_time()
        return True

    def _admit(self, s: float, budget: int) -> None:
        """FCFS admissions into what is left of the budgets (step 3 of the module docstring)."""
        pool = self._kv
        while self._waiting and budget > 0 and len(self._running) < self.max_num_seqs:
            if len(self._sched) >= self.max_num_seqs:
                return
            r = self._waiting[0]
            if r.known * r.kv_bytes_per_token > pool.capacity_bytes:
                self._waiting.popleft()
                self._reject(r, s)
                continue
            hit = pool.claim(r.session_id, r.split, r.request_id, r.known - 1)
            if hit:
                r.computed = hit
                if r.admit_s < 0:
                    r.cached_tokens = hit
            need = (r.known - r.computed) * r.kv_bytes_per_token
            while pool.free_bytes < need:
                sid = pool.evict_lru()
                if sid is None:
                    break
                self._events.append(EdgeEvent(s, "evicted", sid))
            if pool.free_bytes < need:  # head-of-line blocking; give the entry back
                if hit:
                    pool.keep(r.request_id, r.session_id, r.split, hit)
                    r.computed = 0
                return
            self._waiting.popleft()
            pool.grow(r.request_id, need)
            r.status = RUNNING
            r.queued_s += s - r.queued_since
            if r.admit_s < 0:
                r.admit_s = s
                r.batch_at_admit = len(self._running)
            self._running.append(r)
            n = min(self._computable(r, s), budget)
            if n:  # 0: a preempted split request's only missing input is still on its way
                self._sched.append(r)
                self._sched_n.append(n)
                budget -= n

    @staticmethod
    def _computable(r: EdgeRequest, s: float) -> int:
        """Tokens of ``r`` whose inputs the edge holds at ``s``: all it has not computed, less
        the newest while its activation is still on the way up (a split request preempted during
        its round trip, point 5 of the module docstring)."""
        need = r.known - r.computed
        return need - 1 if r.ready_at > s else need

    def _make_room(self, r: EdgeRequest, nbytes: int, s: float) -> bool:
        """Free ``nbytes`` for ``r``: evict kept entries, then preempt the newest admissions.

        False if ``r`` itself had to be preempted.
        """
        pool = self._kv
        while pool.free_bytes < nbytes:
            sid = pool.evict_lru()
            if sid is not None:
                self._events.append(EdgeEvent(s, "evicted", sid))
                continue
            victim = self._running.pop()
            self._preempt(victim, s)
            if victim is r:
                return False
        return True

    def _preempt(self, r: EdgeRequest, s: float) -> None:
        """Recompute preemption: free the KV, back to the front of the queue (``ready_at`` kept)."""
        self._kv.release(r.request_id)
        r.computed = 0
        r.status = WAITING
        r.preemptions += 1
        r.queued_since = s  # ready_at stays: a split request's next activation is still out
        self.preemptions += 1
        self._waiting.appendleft(r)
        self._events.append(EdgeEvent(s, "preempted", r.session_id, r.request_id))

    def _reject(self, r: EdgeRequest, s: float) -> None:
        r.status = REJECTED
        r.finish_s = s
        r.queued_s += s - r.queued_since
        self._count(s, -1)
        self._finished.append(r)
        self._events.append(EdgeEvent(s, "rejected", r.session_id, r.request_id))

    def _batch_time(self) -> float:
        """Seconds of the scheduled batch (plain floats, no allocation)."""
        cost = self.cost
        if cost.steps is not None:
            self.last_batch_size = len(self._sched)
            self.last_batch_tokens = sum(self._sched_n)
            return cost.steps.iteration_s(
                [
                    (r.split, n, r.computed, r.computed + n == r.known)
                    for r, n in zip(self._sched, self._sched_n, strict=True)
                ]
            )
        total = 0.0
        tokens = 0
        min_split = cost.n_layers
        any_ids = any_samples = False
        for r, n in zip(self._sched, self._sched_n, strict=True):
            samples = r.computed + n == r.known
            total += cost.sequence_s(r.split, n, r.computed, samples)
            tokens += n
            min_split = min(min_split, r.split)
            any_ids = any_ids or r.split == 0
            any_samples = any_samples or samples
        self.last_batch_size = len(self._sched)
        self.last_batch_tokens = tokens
        return total + cost.fixed_s(min_split, any_ids, any_samples)

    def _complete_iteration(self) -> None:
        """The batch's tokens land at the iteration's end: KV grows, tokens are sampled."""
        e = self._iter_end
        self._in_flight = False
        self.busy_s += e - self.clock
        self.clock = e
        self.iterations += 1
        for r, n in zip(self._sched, self._sched_n, strict=True):
            r.computed += n
            if r.computed != r.known:
                continue
            r.generated += 1
            r.known += 1
            if r.first_token_s < 0:
                r.first_token_s = e
            if r.generated >= r.output_tokens:
                self._finish(r, e)
            elif r.split > 0:
                r.ready_at = e + r.round_trip_s

    # --- the compiled server: whole advance calls on the SequenceTable ----------------------------

    def sync_requests(self) -> None:
        """Write the state of the requests still in a compiled server into their objects
        (finished ones are written as they leave, first-token times as they land on
        :meth:`advance`, not on the compiled simulator's advance; a no-op in Python)."""
        if self.compiled:
            self._table.sync()

    def _advance_compiled(self, t: float) -> None:
        """:meth:`advance` in machine code (:func:`compiled_scheduler.advance`), in place on the
        table; what it logged is then handed to the objects and the lists (the scalars stay in
        the table: ``__getattr__``)."""
        table = self._table
        advance = cd.scheduler().advance
        while True:
            paused = advance(*table.args, self._cost_terms, self._decode_fixed_array, t)
            self._drain()
            if not paused:
                break
        if table.gi[tab.SUB_ERROR]:
            t_sub = float(table.sub_t[0])
            table.unschedule()
            raise ValueError(f"submit at {t_sub} is before the server's clock {self.clock}")

    def _table_state(self) -> EdgeState:
        """:meth:`state` of a compiled server, read from its table's scalars."""
        t = self._table
        waiting_tokens, running_tokens = cd.scheduler().totals(t.ints, t.gi, t.run, t.wait)
        g = t.gi.tolist()
        return EdgeState(
            time_s=self.clock,
            n_waiting=g[tab.N_WAITING],
            waiting_tokens=waiting_tokens,
            n_running=g[tab.N_RUNNING],
            running_tokens=running_tokens,
            last_batch_size=self.last_batch_size,
            last_batch_tokens=self.last_batch_tokens,
            pool_capacity_bytes=g[tab.CAPACITY],
            pool_used_bytes=g[tab.RUNNING_BYTES] + g[tab.KEPT_BYTES],
            running_bytes=g[tab.RUNNING_BYTES],
            kept_bytes=g[tab.KEPT_BYTES],
            n_kept=g[tab.N_KEPT],
            preemptions=g[tab.PREEMPTIONS_TOTAL],
            evictions=g[tab.EVICTIONS],
        )

    def _drain(self) -> None:
        """The kernel's log, in its order: first tokens, finishes, rejections, events (per
        decision ~0.8 first tokens and ~0.8 finishes at N = 32: those two inline)."""
        table = self._table
        gi = table.gi
        n = int(gi[tab.N_OUT])
        if not n:
            return
        gi[tab.N_OUT] = 0
        reqs, firsts, finished = table.requests, self.first_tokens, self._finished
        out_first, out_done = tab.OUT_FIRST, tab.OUT_DONE
        for (code, j), t in zip(table.out_i[:n].tolist(), table.out_t[:n].tolist(), strict=True):
            if code == out_first:
                r = reqs[j]
                if isinstance(r, tab.Deferred):  # table.request(j), inlined
                    r = r.edge
                r.first_token_s = t
                if firsts is not None:
                    firsts.append(r)
            elif code == out_done:
                finished.append(table.release(j))
            else:
                self._drain_event(code, j, t)

    def _drain_event(self, code: int, j: int, t: float) -> None:
        """A rejection, preemption or eviction in the kernel's log (row ``j``, at ``t``)."""
        table = self._table
        if code == tab.OUT_REJECTED:
            r = table.release(j)
            self._finished.append(r)
            self._events.append(EdgeEvent(t, "rejected", r.session_id, r.request_id))
        elif code == tab.OUT_PREEMPTED:
            r = table.request(j)  # type: ignore[assignment]
            self._events.append(EdgeEvent(t, "preempted", r.session_id, r.request_id))
        else:
            self._events.append(EdgeEvent(t, "evicted", table.session_ids[j]))

    # --- the fast path: decode-only stretches ---------------------------------------------------

    def _decode_run(self, t: float) -> bool:
        """Run decode-only iterations in one tight loop; True when it stopped at the horizon.

        With nothing queued and every running request one token short (a decode), an iteration
        is: the ready requests in admission order up to the budgets, one token each, and no
        eviction when the pool has room for all of them. Nothing inside such a stretch can queue
        a request or start a prefill, so the loop checks that once, then performs exactly the
        float operations of :meth:`_start_iteration`, :meth:`_batch_time` and
        :meth:`_complete_iteration` in their order (who is ready: :meth:`_ready_decodes`; the
        decode's :meth:`BatchRoofline.sequence_s` term by term: :meth:`_price_decodes`; the
        iteration's :meth:`BatchRoofline.fixed_s` from a table). A batch of token-id requests
        only, with nobody else ready and nobody cut by the budgets, stays the same until a
        finish, a full pool, the horizon or a round trip's end: that many iterations run at
        once (:func:`~offload_rl.cell.compiled_decode.affine_iterations`). It hands back to the
        general scheduler (False) before an iteration it cannot run: a pool without room for
        every decode, or an empty server. The pool's growth is counted locally and settled per
        request (:meth:`_settle`) before a request finishes and when the loop stops. With numba
        the same loop runs compiled (``compiled_scheduler._decode_stretch``); this one is its
        reference.
        """
        if not self._decodes_only():
            return False
        running = self._running
        pool = self._kv
        fixed = self._decode_fixed_s
        slope = self._decode_slope
        cap = min(self.max_num_batched_tokens, self.max_num_seqs)  # decodes take 1 token each
        charged = {r.request_id: r.computed for r in running}  # tokens the pool holds KV for
        clock, busy, iterations = self.clock, self.busy_s, self.iterations
        last = 0  # size of the last batch started here (0: none)
        pending = 0  # bytes grown here and not yet settled into the pool
        free = pool.free_bytes
        at_horizon = False
        while running:
            s, batch, first = self._ready_decodes(clock)
            if s >= t:
                at_horizon = True
                break
            whole = len(batch) <= cap
            if not whole:
                del batch[cap:]
            need, total, min_split, max_split = self._price_decodes(batch)
            if need > free:
                clock = s  # the general path starts this iteration at s too
                break  # eviction or preemption: the general scheduler decides
            d0 = total + fixed[min_split]
            if not max_split and whole and first - s > JUMP_MIN * d0:
                # token ids only, nobody else ready: the batch stays as it is (step 1 in
                # _fixed_batch_run); first is when the earliest round trip ends
                n, e = self._jump(batch, s, d0, len(batch) * slope, free // need, t, first)
                if n >= JUMP_MIN:
                    free -= n * need
                    pending += n * need
                    busy += e - s
                    clock = e
                    iterations += n
                    self.closed_form_iterations += n
                    last = len(batch)
                    continue
            free -= need
            pending += need
            e = s + d0
            last = len(batch)
            if e > t:
                self._sched[:] = batch
                self._sched_n[:] = [1] * last
                self._in_flight, self._iter_end = True, e
                clock, at_horizon = s, True
                break
            busy += e - s
            clock = e
            iterations += 1
            for r in batch:
                r.computed += 1
                r.generated += 1
                r.known += 1
                if r.first_token_s < 0:
                    r.first_token_s = e
                if r.generated >= r.output_tokens:
                    pending -= self._settle(r, charged)
                    self._finish(r, e)
                    free = pool.free_bytes - pending
                elif r.split > 0:
                    r.ready_at = e + r.round_trip_s
        self.clock, self.busy_s, self.iterations = clock, busy, iterations
        if last:
            self.last_batch_size = self.last_batch_tokens = last
        self._end_decode_run(charged)
        return at_horizon

    def _ready_decodes(self, clock: float) -> tuple[float, list[EdgeRequest], float]:
        """When the next decode iteration starts, who is ready then (admission order), and when
        the earliest round trip still out ends (inf: none)."""
        first = float("inf")
        earliest = self._running[0]  # the request whose round trip ends first (first)
        tie = False  # another one ends at the same instant
        batch = []
        for r in self._running:
            x = r.ready_at
            if x <= clock:
                batch.append(r)
            elif x < first:
                first, earliest, tie = x, r, False
            elif x == first:
                tie = True
        if batch:
            return clock, batch, first  # someone became ready while the last iteration ran
        # the server idles until the first round trip ends
        batch = [r for r in self._running if r.ready_at <= first] if tie else [earliest]
        return first, batch, first

    def _price_decodes(self, batch: list[EdgeRequest]) -> tuple[int, float, int, int]:
        """(KV bytes, seconds of the sequences' own work, lowest and highest split) of one decode
        for each of ``batch``: :meth:`BatchRoofline.sequence_s` written out term by term."""
        kv, lin, attn, head_tok, embed, head_smp, n_layers = self._decode_terms
        need = 0
        total = 0.0
        min_split = n_layers
        max_split = 0
        for r in batch:
            need += r.kv_bytes_per_token
            c = r.computed
            k = r.split
            seq = (n_layers - k) * (kv * (c + 1) + lin + attn * (2 * c + 2)) + head_tok
            if k == 0:
                seq += embed
            total += seq + head_smp
            if k < min_split:
                min_split = k
            if k > max_split:
                max_split = k
        return need, total, min_split, max_split

    def _decodes_only(self) -> bool:
        """Whether :meth:`_decode_run` may start: nothing queued, every running request one token
        short of a decode and holding exactly its computed tokens' KV (not prefilling, not a
        prompt's reserved last token)."""
        if not self._running or self._waiting:
            return False
        held = self._kv.held_by
        return all(
            r.known - r.computed == 1 and held(r.request_id) == r.computed * r.kv_bytes_per_token
            for r in self._running
        )

    def _jump(
        self,
        batch: list[EdgeRequest],
        s: float,
        d0: float,
        g: float,
        room: int,
        t: float,
        first: float,
    ) -> tuple[int, float]:
        """``n`` iterations of a fixed token-id batch at once, and their end, when ``n`` reaches
        ``JUMP_MIN`` (else ``n`` and nothing done): the first iteration takes ``d0`` from ``s``,
        each next one ``g`` more (every context grows by one); bounded by the first finish, the
        pool's room for ``room`` more decodes, the horizon ``t`` and the first round trip's end."""
        n = min(min(r.output_tokens - r.generated for r in batch) - 1, room)
        n = affine_iterations(s, d0, g, n, t, first)
        if n < JUMP_MIN:
            return n, s
        e = s + (n * d0 + g * (n * (n - 1) // 2))
        for r in batch:
            r.computed += n
            r.generated += n
            r.known += n
            if r.first_token_s < 0:
                r.first_token_s = s + d0
        return n, e

    def _end_decode_run(self, charged: dict[int, int]) -> None:
        """Settle the pool shares :meth:`_decode_run` counted; a batch left in flight holds its
        new tokens' KV, as at an iteration's start."""
        for r in self._running:
            self._settle(r, charged)
        if self._in_flight:
            for r in self._sched:
                self._kv.grow(r.request_id, r.kv_bytes_per_token)

    def _settle(self, r: EdgeRequest, charged: dict[int, int]) -> int:
        """Grow ``r``'s pool share by the decodes :meth:`_decode_run` counted; the bytes."""
        nbytes = (r.computed - charged[r.request_id]) * r.kv_bytes_per_token
        if nbytes:
            self._kv.grow(r.request_id, nbytes)
        charged[r.request_id] = r.computed
        return nbytes

    def _finish(self, r: EdgeRequest, e: float) -> None:
        self._running.remove(r)
        if r.keep:
            self._kv.keep(r.request_id, r.session_id, r.split, r.computed)
        else:
            self._kv.release(r.request_id)
        r.status = FINISHED
        r.finish_s = e
        self._count(e, -1)
        self._finished.append(r)


class TableEdgeServer(EdgeServer):
    """A compiled :class:`EdgeServer` (the class its ``__init__`` gives it once its table is
    made): the same server, whose scalars live in the table. ``__getattr__`` lives here, not on
    :class:`EdgeServer`, because a class that defines it loses CPython's specialised attribute
    reads, and the Python scheduler reads its own attributes in its hottest loops (~10% of
    the Python reference's step, measured at N = 32)."""

    def __getattr__(self, name: str) -> Any:
        """A compiled server's scalars (``clock``, ``busy_s``, ``iterations``, ...: the keys of
        ``_GF_SCALARS`` and ``_GI_SCALARS``), read from its table when asked: the kernel keeps
        them there, and copying them out after every call cost more than the few reads a
        decision makes. Only called for attributes the server does not hold (a Python server
        holds them all)."""
        table = self.__dict__.get("_table")
        if table is not None:
            if name in _GF_SCALARS:
                return float(table.gf[_GF_SCALARS[name]])
            if name in _GI_SCALARS:
                value = int(table.gi[_GI_SCALARS[name]])
                return bool(value) if name == "_in_flight" else value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
