"""The request type every workload produces, and how raw token counts are scaled.

A :class:`Request` carries token counts *after* the stream's :class:`TokenScaling`: recorded
sources use different tokenizers and Mooncake prompts are long (mean 12k tokens), so scenarios
for edge-sized models scale and cap them here, once, for every source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from offload_rl.errors import ConfigError

UNLIMITED_TOKENS: int = 1 << 40
"""A cap that never binds (used by :meth:`TokenScaling.unlimited`)."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


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


class _Filling:
    """Request's slots, writable: :func:`requests_from_columns` fills one and then makes it a
    :class:`Request` (``__class__`` assignment, which CPython allows only between classes of
    the same layout: the same slots in the same order; it checks that at each assignment)."""

    __slots__ = Request.__slots__


if hasattr(Request, "__post_init__"):  # requests_from_columns stores the fields, nothing after
    raise TypeError("Request: requests_from_columns assumes no __post_init__")


def requests_from_columns(
    arrival_s: list[float],
    session_id: list[int],
    turn: list[int],
    new_tokens: list[int],
    context_tokens: list[int],
    output_tokens: list[int],
    gap_to_next_turn_s: list[float | None],
) -> list[Request]:
    """``[Request(*row) for row in zip(columns)]`` with a NaN gap read as None (a numpy
    column's "no next turn"), equal objects of the same type at a half the cost (a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``, ~1 us per request
    of a stream of hundreds): each object's slots are stored as a plain object's
    (:class:`_Filling`), then its class becomes :class:`Request` (Request has no
    ``__post_init__``: checked at import)."""
    filling = _Filling
    out: list[Request] = []
    for a, s, t, p, c, o, g in zip(
        arrival_s,
        session_id,
        turn,
        new_tokens,
        context_tokens,
        output_tokens,
        gap_to_next_turn_s,
        strict=True,
    ):
        r: Any = filling()  # Request's slots: the assignments below fill them
        r.arrival_s = a
        r.session_id = s
        r.turn = t
        r.new_tokens = p
        r.context_tokens = c
        r.output_tokens = o
        r.gap_to_next_turn_s = g if g == g else None  # NaN: None (None == None)
        r.__class__ = Request
        out.append(r)
    return out


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
