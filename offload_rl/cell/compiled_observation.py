"""The EdgeCell-v0 observation written in machine code (numba), one call per decision.

:func:`offload_rl.features.encode_observation` with ``FeatureSpec(cell=True)`` is the reference
and the one home of the rules: :func:`encode_cell` performs the float operations of
``features._observation_values`` and ``features._cell_values`` in their order (IEEE doubles,
no fast-math, the same libm ``log1p``), reads its scales from
:data:`~offload_rl.features.CELL_ENCODER_SCALES`, and rounds to float32 as ``np.asarray`` does,
so the vector is bit for bit the Python encoder's (``tests/offload_rl/cell/
test_compiled_observation.py`` checks it on random states). In Python the encoder builds a list
of ~35 floats per decision (~5 us); here it is one call.

Importing this module imports numba; the environment imports it only in compiled mode.
"""

from __future__ import annotations

import math

import numpy as np

from offload_rl.cell.compiled_devices import radio_state
from offload_rl.cell.compiled_scheduler import decision_view
from offload_rl.cell.device import SAMPLE_SLOTS
from offload_rl.cell.kernel_jit import jit
from offload_rl.cell.sequence_table import K_STAMP, LAST_SIZE, SequenceTable
from offload_rl.cell.thermal import (
    H_AMBIENT,
    H_FAIR,
    H_FLOOR,
    H_TAU,
    H_TEMP,
    H_THERMAL_ON,
    H_THERMAL_T,
    H_THROTTLE,
    heat_storage,
)
from offload_rl.features import (
    CELL_ENCODER_SCALES,
    CellDecisionState,
    FeatureSpec,
    shared_action_mask,
)

A = np.ndarray
SCALES = np.array(CELL_ENCODER_SCALES, dtype=np.float64)
# :func:`decision_constants`, the same at every decision of a config: the probe's outage
# floor, the network's sample history, the encoder's history, layers and outage floor, the
# edge RTT (ms), then the encoder's scales
K_PROBE_FLOOR, K_HISTORY, K_H, K_N_LAYERS, K_OUTAGE, K_RTT = range(6)
N_CONSTS = 6
# :func:`decision_facts` after them: where its parts start (exact doubles)
K_PRIVATES, K_SLOS, K_K_MEMS, K_CLASSES, K_MEMO, K_RTT_F, K_TTFT_F, K_COUNT_F = range(
    N_CONSTS + len(SCALES), N_CONSTS + len(SCALES) + 8
)
N_COUNT_F = 256  # the edge's request counts whose feature decision_facts keeps
NO_MEMO = np.zeros(0)  # encode_cell without a memo


def decision_constants(
    probe_floor: float, history: int, rtt_ms: float, spec: FeatureSpec
) -> np.ndarray:
    """The head of :func:`decision_facts`, what :func:`decide` reads of the config
    (integers as exact doubles)."""
    head = [probe_floor, history, spec.history, spec.n_layers, spec.outage_mbps, rtt_ms]
    return np.concatenate((np.array(head, dtype=np.float64), SCALES))


def decision_facts(
    consts: np.ndarray, private: list[bool], slos: np.ndarray, k_mem: list[int],
    classes: list[int], history: int,
) -> np.ndarray:  # fmt: skip
    """:func:`decide`'s ``facts``, one array for an episode (one argument instead of six:
    ~17 ns each): ``consts``, where each part starts, then per session its privacy (0/1) and
    SLO targets (``slos``: ttft, tpot rows), per request its free layers, per device its class
    (small integers: exact doubles), per device the :func:`_history` memo of ``history``
    triples (zeros: no sample is 0 there), and :func:`_log_feature`'s memo slots (NaN: not
    yet computed): the RTT's, each session's TTFT's and the edge's counts' below
    :data:`N_COUNT_F`."""
    ns, n, nd = len(private), len(k_mem), len(classes)
    at = [consts.shape[0] + 8]
    for size in (ns, 2 * ns, n, nd, 3 * history * nd, 1, ns):
        at.append(at[-1] + size)
    out = np.full(at[-1] + N_COUNT_F, np.nan)
    out[: consts.shape[0]] = consts
    out[K_PRIVATES : K_COUNT_F + 1] = at
    out[at[0] : at[1]] = private
    out[at[1] : at[2]] = slos.ravel()
    out[at[2] : at[3]] = k_mem
    out[at[3] : at[4]] = classes
    out[at[4] : at[5]] = 0.0
    return out


@jit
def _unit(v: float) -> float:
    """Into ``[0, 1]``, NaN to 0: ``0.0 if not v > 0.0 else (v if v < 1.0 else 1.0)``."""
    if not v > 0.0:
        return 0.0
    return v if v < 1.0 else 1.0


@jit
def _history(
    out: A, raw: A, n_raw: int, history: int, log_mbps: float, memo: A, at: int
) -> tuple[float, float]:
    """The throughput features into ``out[:history]``: (sum of inverse rates, newest sample).

    ``memo[at : at + 3 * history]`` (``at`` < 0: none): (sample, feature, inverse rate)
    triples of the device's earlier windows. A positive sample equal to a triple's (the same
    double) takes its feature and inverse rate, computed from that double by the lines below
    (a device's next window mostly repeats its last, shifted: ~10 ns a sample less than the
    log1p and divisions); each sample's triple is then written to its slot (every triple is
    always one sample's own)."""
    inv_sum = 0.0
    newest = 0.0
    for i in range(history):
        if n_raw >= history:
            s = raw[n_raw - history + i]
        elif n_raw:
            s = raw[0] if i < history - n_raw else raw[i - (history - n_raw)]
        else:
            s = 0.0
        if s > 0.0:
            hit = -1
            if at >= 0:
                for d in range(history):  # from its own slot on: a shifted window hits soon
                    m = at + 3 * ((i + d) % history)
                    if memo[m] == s:
                        hit = m
                        break
            if hit >= 0:
                v, inv = memo[hit + 1], memo[hit + 2]
            else:
                inv = 1.0 / (s if s > 1e-3 else 1e-3)
                v = math.log1p(s) / log_mbps
                v = v if v < 1.0 else 1.0
            if at >= 0:  # the memo holds this window for the next one
                m = at + 3 * i
                memo[m], memo[m + 1], memo[m + 2] = s, v, inv
            inv_sum += inv
            out[i] = v
        else:
            inv_sum += 1.0 / 1e-3
            out[i] = 0.0
        newest = s
    return inv_sum, newest


@jit
def _pos(x: float) -> float:
    """``max(x, 0.0)`` as Python's ``max`` picks (the first unless the second is larger)."""
    return 0.0 if x < 0.0 else x


@jit
def _log_feature(x: float, scale: float, memo: A, slot: int) -> float:
    """``_unit(log1p(x) / scale)``; ``memo[slot]`` (``slot`` >= 0) keeps it for the next call
    with the same ``x`` and ``scale`` (the caller's promise; NaN: not yet computed, which the
    feature never is)."""
    if slot >= 0:
        f = memo[slot]
        if f == f:
            return f
    f = _unit(math.log1p(x) / scale)
    if slot >= 0:
        memo[slot] = f
    return f


@jit
def encode_cell(
    out: A, raw: A, n_raw: int, H: int, scales: A, n_layers: int, outage_mbps: float,
    rtt: float, new: int, ctx: int, turn: int, private: bool, ttft: float, tpot: float,
    split: int, ctok: int, occupancy: float, load: float, k_mem: int, prev: int, gap: float,
    age: float, cls: int, thermal: int, radio: int, waiting: int, waiting_tokens: int,
    running: int, running_tokens: int, share: float, rank: int, memo: A, at: int, m_rtt: int,
    m_ttft: int, m_counts: int,
) -> None:  # fmt: skip
    """The cell observation of one decision state into ``out`` (float32, ``obs_dim``; ``H``
    throughput samples first); ``split`` < 0: no cached split (``None``). The cell's integer
    fields go through ``float`` first, as ``_cell_values`` converts them. ``memo``, ``at``:
    :func:`_history`'s; ``m_rtt``, ``m_ttft``: the slots in ``memo`` of the RTT's and the
    session's TTFT's features, ``m_counts`` of :data:`N_COUNT_F` counts' (-1: none)."""
    log_mbps, log_ms, log_tokens, log_slo = scales[0], scales[1], scales[2], scales[3]
    log_gap, max_turn, log_seqs, log_big = scales[4], scales[5], scales[6], scales[7]
    inv_sum, newest = _history(out, raw, n_raw, H, log_mbps, memo, at)
    cached = split >= 0 and ctok > 0
    o = H
    out[o] = _log_feature(rtt if rtt > 0.0 else 0.0, log_ms, memo, m_rtt)
    out[o + 1] = _unit(math.log1p(new if new > 0 else 0) / log_tokens)
    out[o + 2] = _unit(math.log1p(ctx if ctx > 0 else 0) / log_tokens)
    out[o + 3] = _unit(turn / max_turn)
    out[o + 4] = 1.0 if private else 0.0
    out[o + 5] = _log_feature(ttft if ttft > 0.0 else 0.0, log_slo, memo, m_ttft)
    out[o + 6] = _unit(tpot)
    out[o + 7] = 1.0 if cached else 0.0
    out[o + 8] = _unit(split / n_layers) if cached else 0.0
    out[o + 9] = _unit(ctok / ctx) if cached and ctx > 0 else 0.0
    out[o + 10] = _unit(occupancy)
    out[o + 11] = _unit(load)
    out[o + 12] = _unit(k_mem / n_layers)
    out[o + 13] = _unit(math.log1p(prev if prev > 0 else 0) / log_tokens)
    out[o + 14] = _unit(math.log1p(gap if gap > 0.0 else 0.0) / log_gap)
    out[o + 15] = 1.0 if newest < outage_mbps else 0.0
    out[o + 16] = _unit(math.log1p(H / inv_sum) / log_mbps)
    o += 17
    out[o] = _unit(math.log1p(_pos(float(age))) / log_gap)
    out[o + 1] = _unit(float(cls) / 2.0)
    out[o + 2] = _unit(float(thermal) / 3.0)
    out[o + 3] = _unit(float(radio) / 3.0)
    slot = m_counts + waiting if m_counts >= 0 and 0 <= waiting < N_COUNT_F else -1
    out[o + 4] = _log_feature(_pos(float(waiting)), log_seqs, memo, slot)
    out[o + 5] = _unit(math.log1p(_pos(float(waiting_tokens))) / log_big)
    slot = m_counts + running if m_counts >= 0 and 0 <= running < N_COUNT_F else -1
    out[o + 6] = _log_feature(_pos(float(running)), log_seqs, memo, slot)
    out[o + 7] = _unit(math.log1p(_pos(float(running_tokens))) / log_big)
    out[o + 8] = _unit(float(share))
    r = float(rank)
    out[o + 9] = _unit(1.0 / (1.0 + r) if r >= 0 else 0.0)


# decide's outputs in ``vals`` (float64; the integers exact): what the decision state holds
# beyond the request's and session's facts, for building it only when someone reads it; from
# V_SAMPLES on, the V_N_SAMPLES samples it read (oldest first)
(V_OCCUPANCY, V_LOAD, V_SPLIT, V_TOKENS, V_RADIO, V_WAITING, V_WAITING_TOKENS, V_RUNNING,
 V_RUNNING_TOKENS, V_SHARE, V_RANK, V_BUSY, V_N_SAMPLES, V_AGE, V_PREV, V_GAP, V_THERMAL,
 V_SAMPLES) = range(18)  # fmt: skip
V_SIZE = V_SAMPLES + SAMPLE_SLOTS + 1  # the last: the newest sample's time
PROBE = -1  # decide's answer while the device's newest sample says "outage": probe first


@jit
def samples_until(times: A, values: A, counts: A, j: int, t: float, history: int, out: A) -> int:
    """``Device.samples_until`` of device ``j`` (row ``j``): the newest ``history`` samples
    measured by ``t`` into ``out``, oldest first (``scan_samples``: at least one when any was
    measured), and ``out[-1]`` the newest one's time; returns how many."""
    n = counts[j]
    m = 0
    newest = 0.0
    for k in range(n - 1, -1, -1):  # scan_samples: count them first, newest first
        if times[j, k] <= t:
            if m == 0:
                newest = times[j, k]
            m += 1
            if m >= history:
                break
    w = m
    for k in range(n - 1, -1, -1):  # then write them, oldest first
        if w == 0:
            break
        if times[j, k] <= t:
            w -= 1
            out[w] = values[j, k]
    out[out.shape[0] - 1] = newest
    return m


@jit
def os_level(heat: A, j: int, t: float) -> int:
    """``Device.os_level(t)`` on device ``j``'s heat row: cooled to ``t`` (written back), then
    the OS's level of its temperature (``DeviceThermal.os_level``); 0 with heat not modelled."""
    if heat[j, H_THERMAL_ON] == 0.0:
        return 0
    temp = heat[j, H_TEMP]
    thermal_t = heat[j, H_THERMAL_T]
    if t > thermal_t:
        dt = t - thermal_t
        if dt > 0:
            amb = heat[j, H_AMBIENT]
            temp = amb + (temp - amb) * math.exp(-dt / heat[j, H_TAU])
            heat[j, H_TEMP] = temp
        heat[j, H_THERMAL_T] = t
    if temp < heat[j, H_FAIR]:
        return 0
    if temp <= heat[j, H_THROTTLE]:
        return 1
    return 2 if temp < heat[j, H_FLOOR] else 3


@jit
def decide(
    times: A, values: A, counts: A, facts: A, radios: A, mark: A, heat: A, ints: A, gi: A,
    gf: A, run: A, wait: A, kept: A, out: A, vals: A, probed: bool, session: int, i: int,
    j: int, sid: int, t: float, new: int, ctx: int, turn: int, local: int, prev_t: float,
    prev_out: int,
) -> tuple[int, int, int, float, bool, float, int]:  # fmt: skip
    """One decision of request ``i`` (session ``sid``) on device ``j`` in one call (the
    episode's constants and facts in ``facts``: :func:`decision_facts`): its samples
    (:func:`samples_until`; first :data:`PROBE`, with no effect, while it has none or its
    newest is below the probe's floor: the caller probes, then calls again with ``probed``),
    the edge's view (``EdgeServer.decision_view``; ``session``: the request's session's index
    in the edge's table, -1 if it has none), its radio state, the cached split
    (``CellSimulator.decision_state``'s rule: the device's own kept KV ``local`` >= 0 first,
    then the edge's entry), the session's previous turn (its arrival ``prev_t``, NaN if none,
    and output tokens), the edge's load since the busy mark ``mark`` (time, busy seconds; then
    set to ``t`` and the edge's busy seconds now) and the observation (:func:`encode_cell`,
    with the device's :func:`_history` memo) into ``out``; the state's other fields into
    ``vals``. Returns the mask's index in :func:`mask_table` (private, the clamped device
    layers, the outage of the newest sample: ``features._shared_mask``'s key), the edge's last
    batch size, waiting requests and KV occupancy, the request's privacy, the newest sample
    (0.0 if none) and the samples read, as one tuple: reading ``vals`` from Python costs
    ~0.1 us a field. The device's heat row in ``heat`` is cooled to ``t`` (:func:`os_level`)."""
    n = counts[j]
    probe_floor = -math.inf if probed else facts[K_PROBE_FLOOR]
    if probe_floor > -math.inf and (n == 0 or values[j, n - 1] < probe_floor):
        return PROBE, 0, 0, 0.0, False, 0.0, 0  # (-inf: probed, or no probe could measure)
    at = int(facts[K_SLOS]) + 2 * sid
    private, ttft, tpot = facts[int(facts[K_PRIVATES]) + sid] != 0.0, facts[at], facts[at + 1]
    k_mem, cls = int(facts[int(facts[K_K_MEMS]) + i]), int(facts[int(facts[K_CLASSES]) + j])
    if prev_t == prev_t:  # the session's previous turn (DeviceMemory.previous)
        prev, gap = prev_out, t - prev_t
    else:
        prev, gap = 0, 0.0
    thermal = os_level(heat, j, t)
    history, H, n_layers = int(facts[K_HISTORY]), int(facts[K_H]), int(facts[K_N_LAYERS])
    outage_mbps, rtt, scales = facts[K_OUTAGE], facts[K_RTT], facts[N_CONSTS:K_PRIVATES]
    raw = vals[V_SAMPLES:]
    n_raw = samples_until(times, values, counts, j, t, history, raw)
    # SequenceTable.kept_row: the session's row of ``kept`` where it keeps an entry, else -1
    row = session if session >= 0 and kept[session, K_STAMP] >= 0 else -1
    used, capacity, waiting, waiting_tokens, running, running_tokens, e_split, e_tokens, \
        e_bytes, rank, busy = decision_view(ints, gi, gf, run, wait, kept, row)  # fmt: skip
    if local >= 0:
        split, ctok = n_layers, (local if local < ctx else ctx)
    elif e_split >= 0:
        split, ctok = e_split, (e_tokens if e_tokens < ctx else ctx)
    else:
        split, ctok = -1, 0
    load = 0.0
    mark_t, mark_busy = mark[0], mark[1]  # CellSimulator._edge_utilisation's
    if t > mark_t:
        load = (busy - mark_busy) / (t - mark_t)
        load = 0.0 if load < 0.0 else load
        load = 1.0 if load > 1.0 else load
    occupancy = used / capacity
    share = e_bytes / capacity if e_split >= 0 else 0.0
    radio = radio_state(radios, j, t)
    age = t - raw[raw.shape[0] - 1] if n_raw else 3600.0
    encode_cell(
        out, raw, n_raw, H, scales, n_layers, outage_mbps, rtt, new, ctx, turn, private, ttft,
        tpot, split, ctok, occupancy, load, k_mem, prev, gap, age, cls, thermal, radio,
        waiting, waiting_tokens, running, running_tokens, share, rank, facts,
        int(facts[K_MEMO]) + 3 * H * j, int(facts[K_RTT_F]), int(facts[K_TTFT_F]) + sid,
        int(facts[K_COUNT_F]),
    )  # fmt: skip
    vals[V_OCCUPANCY], vals[V_LOAD], vals[V_SPLIT], vals[V_TOKENS] = occupancy, load, split, ctok
    vals[V_RADIO], vals[V_WAITING], vals[V_WAITING_TOKENS] = radio, waiting, waiting_tokens
    vals[V_RUNNING], vals[V_RUNNING_TOKENS], vals[V_SHARE] = running, running_tokens, share
    vals[V_RANK], vals[V_BUSY], vals[V_N_SAMPLES], vals[V_AGE] = rank, busy, n_raw, age
    vals[V_PREV], vals[V_GAP], vals[V_THERMAL] = prev, gap, thermal
    mark[0], mark[1] = t, busy
    newest = raw[n_raw - 1] if n_raw > 0 else 0.0
    k = k_mem if k_mem > 0 else 0
    k = k if k < n_layers else n_layers
    code = ((1 if private else 0) * (n_layers + 1) + k) * 2 + (1 if newest < outage_mbps else 0)
    return code, gi[LAST_SIZE], waiting, occupancy, private, newest, n_raw


def mask_table(spec: FeatureSpec) -> list[np.ndarray]:
    """The masks :func:`decide`'s index picks, each from :func:`shared_action_mask` (the one
    home of the rule) for a state with that key."""
    masks = []
    for private in (False, True):
        for k in range(spec.n_layers + 1):
            for outage in (False, True):
                newest = -1.0 if outage else spec.outage_mbps
                state = CellDecisionState([newest], 0.0, 0, 0, 0, private, 0.0, 0.0, None, 0,
                                          0.0, 0.0, k)  # fmt: skip
                masks.append(shared_action_mask(state, spec))
    return masks


def encode(state: CellDecisionState, spec: FeatureSpec) -> np.ndarray:
    """``encode_observation(state, spec)`` for a cell spec, in one compiled call (the fields
    go in as they are: numba converts them as Python's arithmetic does)."""
    out = np.empty(spec.obs_dim, dtype=np.float32)
    raw = state.throughput_mbps
    split = state.cached_split
    s = state
    encode_cell(
        out, np.array(raw, dtype=np.float64), len(raw), spec.history, SCALES, spec.n_layers,
        spec.outage_mbps, s.rtt_ms, s.new_tokens, s.context_tokens, s.turn, s.private,
        s.slo_ttft_s, s.slo_tpot_s, -1 if split is None else split, s.cached_tokens,
        s.edge_kv_occupancy, s.edge_load, s.device_memory_layers, s.prev_output_tokens,
        s.since_last_turn_s, s.throughput_age_s, s.device_class, s.thermal_level,
        s.radio_state, s.edge_waiting, s.edge_waiting_tokens, s.edge_running,
        s.edge_running_tokens, s.entry_bytes_share, s.entry_recency_rank, NO_MEMO, -1, -1, -1,
        -1,
    )  # fmt: skip
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel for the types :func:`encode` passes."""
    spec = FeatureSpec(n_layers=4, cell=True)
    state = CellDecisionState([1.0, 2.0], 10.0, 3, 4, 1, False, 1.0, 0.1, 2, 3, 0.5, 0.5, 4)
    encode(state, spec)
    table = SequenceTable(1, 1, 1)
    out, vals = np.empty(spec.obs_dim, dtype=np.float32), np.zeros(V_SIZE)
    times, values, counts = (
        np.zeros((1, SAMPLE_SLOTS)),
        np.ones((1, SAMPLE_SLOTS)),
        np.ones(1, np.int64),
    )
    facts = decision_facts(
        decision_constants(0.1, 8, 10.0, spec), [False], np.ones((1, 2)), [4], [0], spec.history
    )
    decide(
        times, values, counts, facts, np.zeros((1, 18)), np.zeros(2), heat_storage(1),
        table.ints, table.gi, table.gf, table.run, table.wait, table.kept, out, vals, False, -1,
        0, 0, 0, 1.0, 3, 4, 1, -1, math.nan, 0,
    )  # fmt: skip
