"""Request workloads: streams of LLM chat requests grouped into sessions.

The environment draws one stream per episode with ``workload.sample(rng, n)``. A stream is a list
of :class:`Request` sorted by arrival, starting at ``t = 0``, with sessions interleaved as in
reality. Inside a stream three invariants always hold (the KV-cache model relies on them: a
cache entry written after turn ``j-1`` holds exactly the context of turn ``j``):

* turns of a session are numbered ``0, 1, 2, ...`` in arrival order, ``context_tokens`` is 0 at
  turn 0;
* ``context_tokens[j] = min(sum of new + output tokens of turns < j, max_context - new[j])``
  (the session's history, oldest tokens dropped once it no longer fits, see
  :class:`TokenScaling`);
* all lengths are ``>= 1`` (context ``>= 0``) and within the caps of the stream's scaling.

A stream window can begin in the middle of a session. Its first request in the stream becomes
turn 0 and carries the session's earlier history as *new* tokens: the edge has never seen that
history, so the prefill work is the same, and later turns keep their recorded context.

Sources
-------
``default``
    :class:`SyntheticWorkload` with parameters fitted by ``experiments/fit_workload.py`` and
    shipped in ``offload_rl/data/workload_default.json`` (no data files needed): sessions, turns
    and gaps from BurstGPT, lengths from Azure conv, and a *per-cell* rate of 0.066 sessions/s
    (0.22 requests/s: Azure conv's 5.5 requests/s for a whole region / 3.34 turns x a 1/25 cell
    share, a stated assumption).
BurstGPT (``request_index,arrival_ms,input_length,output_length,session_id``)
    Real session ids. ``input_length`` already *includes the conversation history*: along a
    session the input grows by the previous input + output plus a short new message. In the first
    1000 rows, 701 follow-up turns: median input growth +110 tokens; ``input - (previous input +
    previous output)`` has median +22 and is ``>= 1`` for 468 turns (66.8%, median +34, the new
    message); in the other 233 the client trimmed or edited the history (the input shrinks, e.g.
    1477 -> 1505 -> 1309 -> 868 -> 425). So ``new = input - previous input - previous output``
    when that is ``>= 1``; otherwise the new message is unobservable and is estimated as the
    median appended message of the same session (else of the file), at most the input.
Mooncake (JSON lines: ``timestamp`` ms, ``input_length``, ``output_length``, ``hash_ids``)
    Sessions from shared KV-block prefixes. Hash id 0 opens all 12,031 requests (a system
    prompt); the prefix common to every request is not evidence of a session. A request whose
    block list shares at least one more block with an earlier request continues the session of
    the most recent such request. 38.7% of requests share >= 2 prefix blocks with an earlier one
    (as the README says); 4,658 requests continue a session: 7,373 sessions, turns per session
    1: 5114, 2: 1311, 3: 464, 4: 200, 5+: 284 (mean 1.63, p90 3, max 43; 57.5% of requests in
    multi-turn sessions). 85% of continuations share all of the previous turn's full blocks, and
    the input grows like BurstGPT's: ``input - previous input - previous output`` has median +24
    and is ``>= 1`` for 3,779 of 4,658 continuations (81%, median +47), so new tokens follow the
    BurstGPT rule.
    The block-level alternative (context = shared blocks x 512, new = the rest) is not used: it
    leaves out the previous output and the partial last block (median "new" 829 tokens), which
    would break the context invariant above; shared blocks are still reported in the load notes.
Azure (``TIMESTAMP,ContextTokens,GeneratedTokens``, no sessions)
    Each row is one turn whose ``ContextTokens`` are taken as its *new* prompt tokens. Rows are
    chained into sessions with the default workload's turn-count and inter-turn-gap
    distributions (fitted to BurstGPT: turns ~ mixture of two geometrics, 78% with mean 2.2
    turns and 22% with mean 7.2, mean 3.34; gaps ~ BurstGPT's empirical gap quantiles, median
    144 s; the numbers are in ``workload_default.json``): a row not yet used opens a session, and
    each next turn is the first unused row at or after ``previous arrival + gap`` (seeded by
    ``seed``). Sessions whose next turn falls past the end of the 58-minute trace end early: conv
    gives 8,743 sessions, 2.22 turns on average (78.9% of requests in multi-turn sessions),
    median gap 104 s. Caveat: in a chat service ``ContextTokens`` probably already holds some
    history, so taking it as new tokens overstates prompts; use BurstGPT for session realism.

Token counts come from different tokenizers per source. Mooncake prompts are long (mean 12k
tokens): scenarios for edge-sized models scale them with :class:`TokenScaling`.
"""

from __future__ import annotations

import bisect
import csv
import functools
import importlib.resources
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from offload_rl.errors import ConfigError, DataFileError

WorkloadKind = Literal["auto", "azure", "burstgpt", "mooncake"]
WORKLOAD_KINDS: tuple[str, ...] = get_args(WorkloadKind)

MOONCAKE_BLOCK_TOKENS: int = 512
"""Tokens per KV block of a Mooncake ``hash_ids`` entry."""

UNLIMITED_TOKENS: int = 1 << 40
"""A cap that never binds (used by :meth:`TokenScaling.unlimited`)."""

AZURE_COLUMNS: tuple[str, ...] = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_COLUMNS: tuple[str, ...] = ("arrival_ms", "input_length", "output_length", "session_id")
MOONCAKE_KEYS: tuple[str, ...] = ("timestamp", "input_length", "output_length", "hash_ids")

DEFAULT_PARAMS_RESOURCE = "workload_default.json"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Requests and scaling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One LLM request as the edge sees it (token counts after the stream's scaling)."""

    arrival_s: float
    """Seconds since the start of the stream."""
    session_id: int
    """Dense ids ``0..m-1`` within one stream, in order of first appearance."""
    turn: int
    """0 for the first request of a session in this stream."""
    new_tokens: int
    """``p``: new prompt tokens of this turn (>= 1)."""
    context_tokens: int
    """``c``: tokens already in the session before this turn (earlier prompts + outputs)."""
    output_tokens: int
    """``o`` (>= 1)."""
    gap_to_next_turn_s: float | None
    """Time to the same session's next turn in this stream, ``None`` if it has none.

    Hindsight: the environment uses it only for the oracle and for "likely to return"
    statistics, never in observations."""


class Workload(Protocol):
    """Anything that draws request streams: recorded files and the synthetic generator."""

    name: str

    def sample(self, rng: np.random.Generator, n_requests: int) -> list[Request]:
        """``n_requests`` requests sorted by arrival, starting at t = 0."""
        ...


@dataclass(frozen=True)
class TokenScaling:
    """How raw token counts become the lengths an edge-sized model serves.

    Every sampled request: lengths x ``scale`` (rounded, >= 1); new tokens capped at
    ``min(max_new_tokens, max_context_tokens)``; outputs capped at ``max_output_tokens`` (the
    session's history holds the capped outputs); then the context is truncated so that
    ``context + new <= max_context_tokens`` (oldest tokens dropped).
    """

    scale: float = 1.0
    max_context_tokens: int = 4096
    max_new_tokens: int = 2048
    max_output_tokens: int = 1024

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ConfigError(f"token scaling: scale must be a positive number, got {self.scale}")
        for name in ("max_context_tokens", "max_new_tokens", "max_output_tokens"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ConfigError(f"token scaling: {name} must be an integer >= 1, got {value}")

    @classmethod
    def unlimited(cls) -> TokenScaling:
        """No scaling and no caps: the recorded numbers."""
        return cls(1.0, UNLIMITED_TOKENS, UNLIMITED_TOKENS, UNLIMITED_TOKENS)

    def scale_lengths(self, new: IntArray, output: IntArray) -> tuple[IntArray, IntArray]:
        """Scaled and capped new-prompt and output lengths (both >= 1)."""
        new_cap = min(self.max_new_tokens, self.max_context_tokens)
        if self.scale != 1.0:
            new = np.rint(new * self.scale).astype(np.int64)
            output = np.rint(output * self.scale).astype(np.int64)
        return np.clip(new, 1, new_cap), np.clip(output, 1, self.max_output_tokens)


def _group_by_key(key: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Stable grouping: ``order`` sorts by key, ``group`` is the group of each sorted position,
    ``first`` the sorted position where each group starts (groups in key order)."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.ones(len(key), dtype=bool)
    starts[1:] = sorted_key[1:] != sorted_key[:-1]
    group = np.cumsum(starts) - 1
    return order, group, np.flatnonzero(starts)


def _assemble(
    arrival: FloatArray,
    key: IntArray,
    new: IntArray,
    output: IntArray,
    prior_context: IntArray,
    gap: FloatArray,
    scaling: TokenScaling,
) -> list[Request]:
    """Turn a window of raw requests (sorted by arrival) into a consistent stream.

    ``key`` identifies sessions, ``prior_context`` is each request's raw context in its full
    session (folded into the new tokens of a session's first request in the window), ``gap`` is
    NaN where the session has no later turn in the window.
    """
    n = len(key)
    if n == 0:
        return []
    order, group, first = _group_by_key(key)
    turn = np.empty(n, dtype=np.int64)
    turn[order] = np.arange(n) - first[group]
    new_raw = new + np.where(turn == 0, prior_context, 0)
    new_s, out_s = scaling.scale_lengths(new_raw, output)
    tokens_sorted = (new_s + out_s)[order]
    before = np.cumsum(tokens_sorted) - tokens_sorted
    context = np.empty(n, dtype=np.int64)
    context[order] = before - before[first][group]
    context = np.maximum(np.minimum(context, scaling.max_context_tokens - new_s), 0)
    # Dense session ids in order of first appearance in the stream.
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(order[first], kind="stable")] = np.arange(len(first))
    session = np.empty(n, dtype=np.int64)
    session[order] = rank[group]
    gaps = [None if g != g else g for g in gap.tolist()]
    return [
        Request(a, s, t, p, c, o, g)
        for a, s, t, p, c, o, g in zip(
            arrival.tolist(),
            session.tolist(),
            turn.tolist(),
            new_s.tolist(),
            context.tolist(),
            out_s.tolist(),
            gaps,
            strict=True,
        )
    ]


# --------------------------------------------------------------------------------------------
# Synthetic workload parameters
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LognormalDist(_Strict):
    """A positive quantity whose logarithm is normal: ``median x exp(sigma x N(0, 1))``."""

    kind: Literal["lognormal"] = "lognormal"
    median: float = Field(gt=0.0)
    sigma: float = Field(ge=0.0)

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return self.median * np.exp(self.sigma * rng.standard_normal(n))

    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


class EmpiricalDist(_Strict):
    """A positive quantity given by quantiles; sampled by inverse CDF, log-linear between them.

    ``values[i]`` is the ``probs[i]`` quantile; ``probs`` rises from 0 to 1.
    """

    kind: Literal["empirical"] = "empirical"
    probs: list[float] = Field(min_length=2)
    values: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self) -> EmpiricalDist:
        if len(self.probs) != len(self.values):
            raise ValueError("probs and values must have the same length")
        if self.probs[0] != 0.0 or self.probs[-1] != 1.0:
            raise ValueError("probs must start at 0 and end at 1")
        if any(b <= a for a, b in zip(self.probs, self.probs[1:], strict=False)):
            raise ValueError("probs must be strictly increasing")
        if any(v <= 0 or not math.isfinite(v) for v in self.values):
            raise ValueError("values must be positive and finite")
        if any(b < a for a, b in zip(self.values, self.values[1:], strict=False)):
            raise ValueError("values must be non-decreasing")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return np.exp(np.interp(rng.random(n), self.probs, np.log(self.values)))

    def mean(self) -> float:
        grid = np.linspace(0.0, 1.0, 4001)
        return float(np.exp(np.interp(grid, self.probs, np.log(self.values))).mean())


PositiveDist = Annotated[LognormalDist | EmpiricalDist, Field(discriminator="kind")]


class GeometricMixtureTurns(_Strict):
    """Turns per session: a mixture of geometrics on ``{1, 2, ...}`` (short and long chats)."""

    kind: Literal["geometric_mixture"] = "geometric_mixture"
    weights: list[float] = Field(min_length=1)
    means: list[float] = Field(min_length=1)
    max_turns: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _check(self) -> GeometricMixtureTurns:
        if len(self.weights) != len(self.means):
            raise ValueError("weights and means must have the same length")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        if any(m < 1 for m in self.means):
            raise ValueError("means must be >= 1 (a session has at least one turn)")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        w = np.asarray(self.weights, dtype=float)
        component = rng.choice(len(w), size=n, p=w / w.sum())
        p = 1.0 / np.asarray(self.means, dtype=float)[component]
        return np.minimum(rng.geometric(p), self.max_turns).astype(np.int64)

    def mean(self) -> float:
        w = np.asarray(self.weights, dtype=float)
        return float((w / w.sum()) @ np.asarray(self.means, dtype=float))


class PmfTurns(_Strict):
    """Turns per session from an explicit pmf: ``pmf[k]`` is the probability of ``k + 1`` turns."""

    kind: Literal["pmf"] = "pmf"
    pmf: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> PmfTurns:
        if any(p < 0 for p in self.pmf) or sum(self.pmf) <= 0:
            raise ValueError("pmf must be >= 0 with a positive sum")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        p = np.asarray(self.pmf, dtype=float)
        return (rng.choice(len(p), size=n, p=p / p.sum()) + 1).astype(np.int64)

    def mean(self) -> float:
        p = np.asarray(self.pmf, dtype=float)
        return float((p / p.sum()) @ np.arange(1, len(p) + 1))


TurnsDist = Annotated[GeometricMixtureTurns | PmfTurns, Field(discriminator="kind")]


class WorkloadParams(_Strict):
    """Everything :class:`SyntheticWorkload` draws from.

    ``session_rate_per_s`` is the rate of new chat sessions in *one edge cell* (Poisson), not of
    a whole cloud service. ``gap_s`` is the time between the arrivals of consecutive turns of a
    session (think time plus the previous answer's generation). ``warmup_s``: sessions start
    from ``-warmup_s`` so a stream begins in steady state, with sessions already in progress.
    """

    session_rate_per_s: float = Field(gt=0.0)
    warmup_s: float = Field(0.0, ge=0.0)
    turns: TurnsDist
    gap_s: PositiveDist
    first_prompt_tokens: PositiveDist
    followup_prompt_tokens: PositiveDist
    output_tokens: PositiveDist
    provenance: dict[str, Any] = Field(default_factory=dict)

    def request_rate_per_s(self) -> float:
        """Mean requests per second of the stream (sessions x mean turns)."""
        return self.session_rate_per_s * self.turns.mean()


@functools.lru_cache(maxsize=1)
def default_workload_params() -> WorkloadParams:
    """The embedded default parameters (``offload_rl/data/workload_default.json``)."""
    resource = importlib.resources.files("offload_rl") / "data" / DEFAULT_PARAMS_RESOURCE
    return WorkloadParams.model_validate(json.loads(resource.read_text(encoding="utf-8")))


def load_workload_params(path: str | Path) -> WorkloadParams:
    """Read WorkloadParams from YAML or JSON; keys it leaves out keep the default's values.

    Nested distributions are replaced whole, never merged field by field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataFileError(path, f"cannot read: {err.strerror or err}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise DataFileError(path, f"invalid JSON: {err.msg}", line=err.lineno) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or "cannot parse"
        raise DataFileError(path, f"invalid YAML: {problem}", line=line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of workload parameters")
    base = default_workload_params().model_dump()
    provenance = data.get("provenance") or {
        "derived_from": "default",
        "overridden": sorted(data),
    }
    try:
        return WorkloadParams.model_validate({**base, **data, "provenance": provenance})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


# --------------------------------------------------------------------------------------------
# Synthetic workload
# --------------------------------------------------------------------------------------------


def _lengths(dist: LognormalDist | EmpiricalDist, rng: np.random.Generator, n: int) -> IntArray:
    return np.maximum(np.rint(dist.sample(rng, n)), 1).astype(np.int64)


class SyntheticWorkload:
    """Seeded generator: Poisson session arrivals, turns, inter-turn gaps, token lengths."""

    def __init__(
        self, params: WorkloadParams, scaling: TokenScaling | None = None, name: str = "synthetic"
    ) -> None:
        self.params = params
        self.scaling = scaling if scaling is not None else TokenScaling()
        self.name = name

    def __repr__(self) -> str:
        return f"SyntheticWorkload(name={self.name!r}, scaling={self.scaling!r})"

    def sample(self, rng: np.random.Generator, n_requests: int) -> list[Request]:
        """The first ``n_requests`` requests at or after t = 0 of a steady-state process."""
        if n_requests < 0:
            raise ValueError(f"n_requests must be >= 0, got {n_requests}")
        if n_requests == 0:
            return []
        p = self.params
        n = n_requests
        horizon = (n + 4.0 * math.sqrt(n) + 10.0) / p.request_rate_per_s()
        while True:
            n_sessions = int(rng.poisson(p.session_rate_per_s * (p.warmup_s + horizon)))
            starts = rng.uniform(-p.warmup_s, horizon, n_sessions)
            turns = p.turns.sample(rng, n_sessions)
            total = int(turns.sum())
            session = np.repeat(np.arange(n_sessions, dtype=np.int64), turns)
            offset = np.cumsum(turns) - turns
            turn = np.arange(total, dtype=np.int64) - offset[session]
            is_first = turn == 0
            gaps = p.gap_s.sample(rng, total)
            gaps[is_first] = 0.0
            elapsed = np.cumsum(gaps)
            arrival = starts[session] + elapsed - elapsed[offset][session]
            new = np.empty(total, dtype=np.int64)
            new[is_first] = _lengths(p.first_prompt_tokens, rng, n_sessions)
            new[~is_first] = _lengths(p.followup_prompt_tokens, rng, total - n_sessions)
            output = _lengths(p.output_tokens, rng, total)
            keep = np.flatnonzero((arrival >= 0.0) & (arrival < horizon))
            if len(keep) >= n:
                break
            horizon *= 1.5
        tokens = new + output
        before = np.cumsum(tokens) - tokens
        prior = before - before[offset][session]
        chosen = keep[np.argsort(arrival[keep], kind="stable")[:n]]
        position = np.full(total + 1, -1, dtype=np.int64)
        position[chosen] = np.arange(n)
        has_next = np.ones(total, dtype=bool)
        has_next[offset + turns - 1] = False
        nxt = np.arange(1, total + 1)
        in_stream = has_next & (position[nxt] >= 0)
        gap_next = np.full(total, np.nan)
        gap_next[in_stream] = arrival[nxt[in_stream]] - arrival[in_stream]
        t0 = arrival[chosen[0]]
        return _assemble(
            arrival[chosen] - t0,
            session[chosen],
            new[chosen],
            output[chosen],
            prior[chosen],
            gap_next[chosen],
            self.scaling,
        )


# --------------------------------------------------------------------------------------------
# Reading recorded files
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRows:
    """The raw columns of a recorded file, in file order (times in seconds from the first)."""

    kind: str
    arrival_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    session_labels: list[str] | None = None
    hash_ids: list[list[int]] | None = None


def _nonneg_int(value: object, what: str, path: Path, line: int) -> int:
    """A non-negative integer from a CSV cell or JSON value, else a DataFileError."""
    if isinstance(value, bool):
        raise DataFileError(path, f"{what}: expected a non-negative integer, got {value!r}", line)
    if isinstance(value, int):
        number: float = value
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise DataFileError(
                path, f"{what}: expected a non-negative integer, got {value!r}", line
            ) from None
    if not math.isfinite(number) or number != int(number):
        raise DataFileError(path, f"{what}: expected a non-negative integer, got {value!r}", line)
    if number < 0:
        raise DataFileError(path, f"{what}: must be >= 0, got {value!r}", line)
    return int(number)


def _nonneg_float(value: object, what: str, path: Path, line: int) -> float:
    if isinstance(value, bool):
        raise DataFileError(path, f"{what}: expected a number, got {value!r}", line)
    try:
        number = float(value) if isinstance(value, int | float) else float(str(value).strip())
    except ValueError:
        raise DataFileError(path, f"{what}: expected a number, got {value!r}", line) from None
    if not math.isfinite(number):
        raise DataFileError(path, f"{what}: expected a finite number, got {value!r}", line)
    if number < 0:
        raise DataFileError(path, f"{what}: must be >= 0, got {value!r}", line)
    return number


def _check_order(times: Sequence[float], lines: Sequence[int], what: str, path: Path) -> None:
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise DataFileError(
                path, f"{what} goes backwards ({times[i - 1]:g} then {times[i]:g})", lines[i]
            )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFileError(path, "no such file") from None
    except UnicodeDecodeError:
        raise DataFileError(path, "not a text file (UTF-8)") from None
    except OSError as err:
        raise DataFileError(path, f"cannot read: {err.strerror or err}") from None


def _csv_rows(
    path: Path, text: str, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: cell})`` per non-blank data row, after checking the header."""
    reader = csv.reader(text.splitlines())
    header: list[str] | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        header = [cell.strip() for cell in row]
        break
    if header is None:
        raise DataFileError(path, "empty file (no header, no requests)")
    header_line = reader.line_num
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFileError(
            path,
            f"missing column(s) {', '.join(missing)} (header: {', '.join(header)})",
            header_line,
        )
    index = {c: header.index(c) for c in required}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataFileError(
                path, f"expected {len(header)} fields, found {len(row)}", reader.line_num
            )
        yield reader.line_num, {c: row[i] for c, i in index.items()}


def _parse_azure_times(stamps: list[str], lines: list[int], path: Path) -> FloatArray:
    cleaned = [s.strip().replace(" ", "T", 1) for s in stamps]
    try:
        times = np.array(cleaned, dtype="datetime64[ns]")
    except ValueError:
        for stamp, line in zip(stamps, lines, strict=True):
            try:
                np.datetime64(stamp.strip().replace(" ", "T", 1), "ns")
            except ValueError:
                raise DataFileError(
                    path, f"TIMESTAMP: expected a date and time, got {stamp!r}", line
                ) from None
        raise  # pragma: no cover - numpy rejected the column but no single value
    if np.isnat(times).any():
        line = lines[int(np.flatnonzero(np.isnat(times))[0])]
        raise DataFileError(path, "TIMESTAMP: expected a date and time, got 'NaT'", line)
    ns = (times - times[0]).astype(np.int64)
    return ns.astype(np.float64) / 1e9


def read_azure_csv(path: str | Path, text: str | None = None) -> RecordedRows:
    """Azure LLM inference trace: ``TIMESTAMP,ContextTokens,GeneratedTokens``."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    stamps: list[str] = []
    lines: list[int] = []
    prompt: list[int] = []
    output: list[int] = []
    for line, row in _csv_rows(path, text, AZURE_COLUMNS):
        stamps.append(row["TIMESTAMP"])
        lines.append(line)
        prompt.append(_nonneg_int(row["ContextTokens"], "ContextTokens", path, line))
        output.append(_nonneg_int(row["GeneratedTokens"], "GeneratedTokens", path, line))
    if not stamps:
        raise DataFileError(path, "no requests (header only)")
    arrival = _parse_azure_times(stamps, lines, path)
    _check_order(arrival.tolist(), lines, "TIMESTAMP", path)
    return RecordedRows(
        "azure", arrival, np.asarray(prompt, np.int64), np.asarray(output, np.int64)
    )


def read_burstgpt_csv(path: str | Path, text: str | None = None) -> RecordedRows:
    """BurstGPT sessions: ``request_index,arrival_ms,input_length,output_length,session_id``."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    arrival: list[float] = []
    lines: list[int] = []
    prompt: list[int] = []
    output: list[int] = []
    labels: list[str] = []
    for line, row in _csv_rows(path, text, BURSTGPT_COLUMNS):
        lines.append(line)
        arrival.append(_nonneg_float(row["arrival_ms"], "arrival_ms", path, line) / 1000.0)
        prompt.append(_nonneg_int(row["input_length"], "input_length", path, line))
        output.append(_nonneg_int(row["output_length"], "output_length", path, line))
        label = row["session_id"].strip()
        if not label:
            raise DataFileError(path, "session_id: empty", line)
        labels.append(label)
    if not arrival:
        raise DataFileError(path, "no requests (header only)")
    _check_order(arrival, lines, "arrival_ms", path)
    times = np.asarray(arrival, dtype=np.float64)
    return RecordedRows(
        "burstgpt",
        times - times[0],
        np.asarray(prompt, np.int64),
        np.asarray(output, np.int64),
        session_labels=labels,
    )


def read_mooncake_jsonl(path: str | Path, text: str | None = None) -> RecordedRows:
    """Mooncake trace: one JSON object per line with ``timestamp`` (ms), lengths, ``hash_ids``."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    arrival: list[float] = []
    lines: list[int] = []
    prompt: list[int] = []
    output: list[int] = []
    hashes: list[list[int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataFileError(path, f"invalid JSON: {err.msg}", number) from None
        if not isinstance(obj, dict):
            raise DataFileError(path, "expected a JSON object per line", number)
        missing = [k for k in MOONCAKE_KEYS if k not in obj]
        if missing:
            raise DataFileError(path, f"missing key(s) {', '.join(missing)}", number)
        lines.append(number)
        arrival.append(_nonneg_float(obj["timestamp"], "timestamp", path, number) / 1000.0)
        prompt.append(_nonneg_int(obj["input_length"], "input_length", path, number))
        output.append(_nonneg_int(obj["output_length"], "output_length", path, number))
        ids = obj["hash_ids"]
        if not isinstance(ids, list):
            raise DataFileError(path, "hash_ids: expected a list of block ids", number)
        hashes.append([_nonneg_int(h, "hash_ids", path, number) for h in ids])
    if not arrival:
        raise DataFileError(path, "empty file (no requests)")
    _check_order(arrival, lines, "timestamp", path)
    times = np.asarray(arrival, dtype=np.float64)
    return RecordedRows(
        "mooncake",
        times - times[0],
        np.asarray(prompt, np.int64),
        np.asarray(output, np.int64),
        hash_ids=hashes,
    )


def detect_kind(path: Path, text: str) -> str:
    """Tell the format from the content: a JSON object first, or the CSV header's columns."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise DataFileError(path, "empty file (no requests)")
    if first.startswith("{"):
        return "mooncake"
    header = {cell.strip() for cell in next(csv.reader([first]))}
    if "session_id" in header:
        return "burstgpt"
    if "ContextTokens" in header or "TIMESTAMP" in header:
        return "azure"
    raise DataFileError(
        path,
        "cannot tell the workload format: expected a CSV header with "
        f"{','.join(AZURE_COLUMNS)} (Azure) or {','.join(BURSTGPT_COLUMNS)} (BurstGPT), "
        "or JSON lines with timestamp, input_length, output_length, hash_ids (Mooncake)",
        1,
    )


# --------------------------------------------------------------------------------------------
# Deriving sessions
# --------------------------------------------------------------------------------------------


def sessions_from_labels(labels: Sequence[str]) -> IntArray:
    """Dense session ids (order of first appearance) from session labels."""
    ids: dict[str, int] = {}
    return np.asarray([ids.setdefault(label, len(ids)) for label in labels], dtype=np.int64)


@dataclass
class PrefixSessions:
    """Sessions derived from shared KV-block prefixes (Mooncake)."""

    session: IntArray
    shared_blocks: IntArray
    """Leading blocks each request shares with the most recent earlier request on that path."""
    global_prefix_blocks: int
    """Length of the block prefix common to every request (a system prompt, not a session)."""


def sessions_from_hash_prefixes(hash_ids: Sequence[Sequence[int]]) -> PrefixSessions:
    """Link each request to the latest earlier request sharing more than the global prefix.

    A trie of block ids (keyed by parent node and block id, so equal ids at different positions
    never match) remembers the last request through each node.
    """
    n = len(hash_ids)
    common = list(hash_ids[0]) if n else []
    for ids in hash_ids[1:]:
        k = 0
        limit = min(len(common), len(ids))
        while k < limit and common[k] == ids[k]:
            k += 1
        del common[k:]
    global_len = len(common)
    children: dict[tuple[int, int], int] = {}
    last_request: list[int] = [-1]  # per trie node; node 0 is the root
    session = np.empty(n, dtype=np.int64)
    shared = np.zeros(n, dtype=np.int64)
    n_sessions = 0
    for i, ids in enumerate(hash_ids):
        node = 0
        depth = 0
        path_nodes: list[int] = []
        for block in ids:
            child = children.get((node, block))
            if child is None:
                break
            node = child
            depth += 1
            path_nodes.append(node)
        shared[i] = depth
        if depth > global_len:
            session[i] = session[last_request[node]]
        else:
            session[i] = n_sessions
            n_sessions += 1
        for block in ids[depth:]:
            child = len(last_request)
            children[(node, block)] = child
            last_request.append(i)
            node = child
            path_nodes.append(node)
        for visited in path_nodes:
            last_request[visited] = i
    return PrefixSessions(session, shared, global_len)


def synthesize_sessions(
    arrival_s: FloatArray,
    turns: GeometricMixtureTurns | PmfTurns,
    gap_s: LognormalDist | EmpiricalDist,
    rng: np.random.Generator,
) -> IntArray:
    """Chain unrelated rows (sorted by arrival) into sessions with given turns and gaps.

    Each unused row opens a session with a drawn number of turns; each next turn is the first
    unused row at or after the previous turn's arrival plus a drawn gap (none left: it ends).
    """
    n = len(arrival_s)
    times = arrival_s.tolist()
    session = [-1] * n
    free_next = list(range(n + 1))  # union-find: smallest unused row >= i

    def find(i: int) -> int:
        root = i
        while free_next[root] != root:
            root = free_next[root]
        while free_next[i] != root:
            free_next[i], i = root, free_next[i]
        return root

    planned = turns.sample(rng, n).tolist()
    gaps = gap_s.sample(rng, int(sum(planned)) - n + 1).tolist()
    g = 0
    n_sessions = 0
    for i in range(n):
        if session[i] >= 0:
            continue
        session[i] = n_sessions
        free_next[i] = i + 1
        t = times[i]
        for _ in range(planned[n_sessions] - 1):
            j = find(bisect.bisect_left(times, t + gaps[g]))
            g += 1
            if j >= n:
                break
            session[j] = n_sessions
            free_next[j] = j + 1
            t = times[j]
        n_sessions += 1
    return np.asarray(session, dtype=np.int64)


@dataclass
class HistorySplit:
    """New tokens of each turn when the recorded input includes the session's history."""

    new_tokens: IntArray
    appended_mask: npt.NDArray[np.bool_]
    """Turns whose new tokens were observed (not estimated)."""
    followups: int
    appended: int
    """Follow-ups with ``input - previous input - previous output >= 1``."""
    median_appended: float
    median_input_growth: float


def split_history_included(
    session: IntArray, input_tokens: IntArray, output_tokens: IntArray
) -> HistorySplit:
    """``new = input - previous input - previous output`` when >= 1, else an estimate.

    Where the client trimmed or edited the history the increment is not >= 1 and the new
    message cannot be seen; it is estimated as the median appended message of the session (of
    the whole file when the session has none), at most the input.
    """
    n = len(session)
    sess = session.tolist()
    inp = input_tokens.tolist()
    out = output_tokens.tolist()
    new = [max(1, x) for x in inp]
    previous: dict[int, int] = {}
    pending: list[int] = []
    observed = np.zeros(n, dtype=bool)
    appended: dict[int, list[int]] = {}
    growth: list[int] = []
    for i in range(n):
        s = sess[i]
        j = previous.get(s)
        previous[s] = i
        if j is None:
            continue
        growth.append(inp[i] - inp[j])
        increment = inp[i] - inp[j] - out[j]
        if increment >= 1:
            new[i] = increment
            observed[i] = True
            appended.setdefault(s, []).append(increment)
        else:
            pending.append(i)
    every = [x for values in appended.values() for x in values]
    overall = float(np.median(every)) if every else 1.0
    for i in pending:
        values = appended.get(sess[i])
        estimate = float(np.median(values)) if values else overall
        new[i] = max(1, min(inp[i], round(estimate)))
    return HistorySplit(
        np.asarray(new, dtype=np.int64),
        observed,
        followups=len(growth),
        appended=len(every),
        median_appended=overall if every else float("nan"),
        median_input_growth=float(np.median(growth)) if growth else float("nan"),
    )


# --------------------------------------------------------------------------------------------
# Recorded workload
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionStream:
    """A whole recorded stream with its sessions, raw (unscaled) and sorted by arrival."""

    arrival_s: FloatArray
    session: IntArray
    new_tokens: IntArray
    output_tokens: IntArray
    prior_context: IntArray
    """Raw context: sum of the session's earlier new + output tokens."""
    next_index: IntArray
    """Index of the same session's next turn, -1 if none."""
    n_sessions: int = field(default=0)

    @classmethod
    def build(
        cls, arrival: FloatArray, session: IntArray, new: IntArray, output: IntArray
    ) -> SessionStream:
        n = len(session)
        prior = np.zeros(n, dtype=np.int64)
        nxt = np.full(n, -1, dtype=np.int64)
        if n:
            order, group, first = _group_by_key(session)
            tokens_sorted = (new + np.maximum(output, 1))[order]
            before = np.cumsum(tokens_sorted) - tokens_sorted
            prior[order] = before - before[first][group]
            same = np.flatnonzero(group[1:] == group[:-1])
            nxt[order[same]] = order[same + 1]
        return cls(
            arrival.astype(np.float64),
            session.astype(np.int64),
            np.maximum(new, 1).astype(np.int64),
            np.maximum(output, 1).astype(np.int64),
            prior,
            nxt,
            int(session.max()) + 1 if n else 0,
        )

    def __len__(self) -> int:
        return len(self.session)


class RecordedWorkload:
    """One recorded file turned into sessions; :meth:`sample` draws contiguous windows.

    A window of ``n`` consecutive requests (by arrival) starts at a random row; time is re-based
    to its first request and sessions renumbered ``0..m-1``. A request longer than the file
    loops it: each lap is shifted by the recording's span plus one mean inter-arrival time, with
    its own sessions.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        path: Path,
        stream: SessionStream,
        scaling: TokenScaling | None = None,
        notes: dict[str, float | int | str] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.path = path
        self.stream = stream
        self.scaling = scaling if scaling is not None else TokenScaling()
        self.notes = dict(notes or {})
        n = len(stream)
        span = float(stream.arrival_s[-1] - stream.arrival_s[0])
        self.period_s = span + (span / (n - 1) if n > 1 and span > 0 else 1.0)

    def __repr__(self) -> str:
        return f"RecordedWorkload(name={self.name!r}, kind={self.kind!r}, requests={len(self)})"

    def __len__(self) -> int:
        return len(self.stream)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        kind: WorkloadKind = "auto",
        scaling: TokenScaling | None = None,
        seed: int = 0,
    ) -> RecordedWorkload:
        """Load one recorded file; ``seed`` only matters for Azure (synthesised sessions)."""
        path = Path(path)
        if kind not in WORKLOAD_KINDS:
            raise ConfigError(f"workload kind must be one of {', '.join(WORKLOAD_KINDS)}: {kind!r}")
        text = _read_text(path)
        resolved = detect_kind(path, text) if kind == "auto" else kind
        notes: dict[str, float | int | str] = {}
        if resolved == "azure":
            rows = read_azure_csv(path, text)
            defaults = default_workload_params()
            session = synthesize_sessions(
                rows.arrival_s, defaults.turns, defaults.gap_s, np.random.default_rng(seed)
            )
            new = rows.input_tokens
            notes["sessions"] = "synthesised (default turns and gaps), ContextTokens = new tokens"
            notes["seed"] = seed
        elif resolved == "burstgpt":
            rows = read_burstgpt_csv(path, text)
            assert rows.session_labels is not None
            session = sessions_from_labels(rows.session_labels)
            split = split_history_included(session, rows.input_tokens, rows.output_tokens)
            new = split.new_tokens
            notes.update(_split_notes(split))
        else:
            rows = read_mooncake_jsonl(path, text)
            assert rows.hash_ids is not None
            prefix = sessions_from_hash_prefixes(rows.hash_ids)
            session = prefix.session
            split = split_history_included(session, rows.input_tokens, rows.output_tokens)
            new = split.new_tokens
            notes.update(_split_notes(split))
            notes.update(_prefix_notes(prefix, rows.input_tokens))
        stream = SessionStream.build(rows.arrival_s, session, new, rows.output_tokens)
        return cls(path.name, resolved, path, stream, scaling, notes)

    def with_scaling(self, scaling: TokenScaling) -> RecordedWorkload:
        """The same recording under other token scaling (no re-reading)."""
        return RecordedWorkload(self.name, self.kind, self.path, self.stream, scaling, self.notes)

    def all_requests(self) -> list[Request]:
        """The whole recording as one stream (turns and context as recorded)."""
        return self._window(0, len(self.stream))

    def sample(self, rng: np.random.Generator, n_requests: int) -> list[Request]:
        """``n_requests`` consecutive recorded requests from a random starting row."""
        if n_requests < 0:
            raise ValueError(f"n_requests must be >= 0, got {n_requests}")
        n_rows = len(self.stream)
        if n_requests <= n_rows:
            start = int(rng.integers(0, n_rows - n_requests + 1))
        else:
            start = int(rng.integers(0, n_rows))
        return self._window(start, n_requests)

    def _window(self, start: int, n: int) -> list[Request]:
        s = self.stream
        n_rows = len(s)
        index = np.arange(start, start + n, dtype=np.int64)
        base = index % n_rows
        lap = index // n_rows
        arrival = s.arrival_s[base] + lap * self.period_s
        key = s.session[base] + lap * s.n_sessions
        nxt = s.next_index[base]
        has_next = (nxt >= 0) & (nxt + lap * n_rows < start + n)
        gap = np.where(has_next, s.arrival_s[np.maximum(nxt, 0)] - s.arrival_s[base], np.nan)
        return _assemble(
            arrival - arrival[0] if n else arrival,
            key,
            s.new_tokens[base],
            s.output_tokens[base],
            s.prior_context[base],
            gap,
            self.scaling,
        )


def _split_notes(split: HistorySplit) -> dict[str, float | int | str]:
    share = split.appended / split.followups if split.followups else float("nan")
    return {
        "followup_turns": split.followups,
        "appended_turns": split.appended,
        "appended_share": round(share, 4),
        "median_new_tokens_appended": split.median_appended,
        "median_input_growth": split.median_input_growth,
    }


def _prefix_notes(prefix: PrefixSessions, input_tokens: IntArray) -> dict[str, float | int | str]:
    shared = prefix.shared_blocks
    continued = np.zeros(len(shared), dtype=bool)
    first_seen: set[int] = set()
    for i, s in enumerate(prefix.session.tolist()):
        continued[i] = s in first_seen
        first_seen.add(s)
    block_new = input_tokens - np.minimum(shared * MOONCAKE_BLOCK_TOKENS, input_tokens - 1)
    return {
        "global_prefix_blocks": prefix.global_prefix_blocks,
        "reuse_2plus_blocks_share": round(float((shared >= 2).mean()), 4),
        "continuing_requests": int(continued.sum()),
        "median_new_tokens_by_blocks": (
            float(np.median(block_new[continued])) if continued.any() else float("nan")
        ),
    }


# --------------------------------------------------------------------------------------------
# Entry point and statistics
# --------------------------------------------------------------------------------------------


PARAMS_SUFFIXES = (".yaml", ".yml", ".json")


def load_workload(spec: str, scaling: TokenScaling | None = None) -> Workload:
    """``default``, a recorded file (format detected) or a YAML/JSON file of WorkloadParams."""
    if spec == "default":
        return SyntheticWorkload(default_workload_params(), scaling, name="default")
    path = Path(spec)
    if not path.exists():
        raise DataFileError(
            path,
            "no such workload (expected 'default', a recorded Azure/BurstGPT/Mooncake file, "
            "or a YAML/JSON file of workload parameters)",
        )
    if path.is_dir():
        raise DataFileError(path, "is a directory, expected one workload file")
    if path.suffix.lower() in PARAMS_SUFFIXES:
        return SyntheticWorkload(load_workload_params(path), scaling, name=path.stem)
    return RecordedWorkload.from_file(path, "auto", scaling)


def _percentile(values: Sequence[float] | npt.NDArray[Any], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def stream_stats(requests: Sequence[Request]) -> dict[str, float]:
    """Summary statistics of one stream (counts, session shape, lengths, timing)."""
    stats: dict[str, float] = {"requests": float(len(requests))}
    if not requests:
        return stats
    arrival = np.fromiter((r.arrival_s for r in requests), np.float64, len(requests))
    session = np.fromiter((r.session_id for r in requests), np.int64, len(requests))
    turns = np.bincount(session)
    turns = turns[turns > 0]
    span = float(arrival[-1] - arrival[0])
    stats.update(
        sessions=float(len(turns)),
        duration_s=span,
        requests_per_s=(len(requests) - 1) / span if span > 0 else float("nan"),
        turns_per_session_mean=float(turns.mean()),
        turns_per_session_p90=_percentile(turns, 90),
        multi_turn_request_share=float(turns[turns > 1].sum() / turns.sum()),
    )
    for name in ("new_tokens", "context_tokens", "output_tokens"):
        values = np.fromiter((getattr(r, name) for r in requests), np.float64, len(requests))
        stats[f"{name}_mean"] = float(values.mean())
        stats[f"{name}_p50"] = _percentile(values, 50)
        stats[f"{name}_p99"] = _percentile(values, 99)
    inter = np.diff(arrival)
    stats["interarrival_s_mean"] = float(inter.mean()) if len(inter) else float("nan")
    stats["interarrival_s_p50"] = _percentile(inter, 50)
    stats["interarrival_s_p99"] = _percentile(inter, 99)
    stats["interarrival_cv"] = (
        float(inter.std() / inter.mean()) if len(inter) and inter.mean() > 0 else float("nan")
    )
    gaps = [r.gap_to_next_turn_s for r in requests if r.gap_to_next_turn_s is not None]
    stats["turn_gaps"] = float(len(gaps))
    stats["turn_gap_s_mean"] = float(np.mean(gaps)) if gaps else float("nan")
    stats["turn_gap_s_p50"] = _percentile(gaps, 50)
    stats["turn_gap_s_p90"] = _percentile(gaps, 90)
    return stats
