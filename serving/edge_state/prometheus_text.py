"""A parser of the Prometheus text exposition format (version 0.0.4), for the pull adapter.

Written here rather than taken from ``prometheus_client.parser`` because that parser is slow
(a regex per character class) and lenient in ways that hide a broken scrape; this one reads
what vLLM (through ``prometheus_client``) writes: ``# HELP`` and ``# TYPE`` comments (and any
other comment), samples ``name{label="value",...} value [timestamp]`` with the escapes ``\\\\``,
``\\"`` and ``\\n`` in label values, several series of one name (one per label set), and the
values ``NaN``, ``+Inf`` and ``-Inf``. The format is specified at
https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class ExpositionError(ValueError):
    """A line that is not valid exposition text (its line number is in the message)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of a scrape: a series (name and labels) and its value."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def _parse_value(text: str, lineno: int) -> float:
    special = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}
    lowered = text.lower()
    if lowered in special:
        return special[lowered]
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(f"line {lineno}: value {text!r} is not a number") from None


def _parse_labels(line: str, start: int, lineno: int) -> tuple[dict[str, str], int]:
    """Labels from ``line[start]`` (just after ``{``) to the closing ``}``; returns the labels
    and the index after the ``}``."""
    labels: dict[str, str] = {}
    i, n = start, len(line)
    while True:
        while i < n and line[i] in " \t,":
            i += 1
        if i < n and line[i] == "}":
            return labels, i + 1
        eq = line.find("=", i)
        if eq < 0:
            raise ExpositionError(f"line {lineno}: label without '='")
        name = line[i:eq].strip()
        if not name:
            raise ExpositionError(f"line {lineno}: empty label name")
        i = eq + 1
        if i >= n or line[i] != '"':
            raise ExpositionError(f"line {lineno}: label {name!r} value is not quoted")
        i += 1
        chars: list[str] = []
        while True:
            if i >= n:
                raise ExpositionError(f"line {lineno}: label {name!r} value is not closed")
            c = line[i]
            if c == "\\" and i + 1 < n:
                nxt = line[i + 1]
                chars.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            if c == '"':
                i += 1
                break
            chars.append(c)
            i += 1
        labels[name] = "".join(chars)


def parse_exposition(text: str) -> list[Sample]:
    """Every sample of ``text``, in order; an :class:`ExpositionError` names a bad line."""
    out: list[Sample] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):  # "\n" only (not \r, U+2028)
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # HELP, TYPE and free comments carry no sample
        brace = line.find("{")
        space = line.find(" ")
        if brace >= 0 and (space < 0 or brace < space):
            name = line[:brace]
            labels, end = _parse_labels(line, brace + 1, lineno)
            rest = line[end:].split()
        else:
            parts = line.split()
            name, labels, rest = parts[0], {}, parts[1:]
        if not name:
            raise ExpositionError(f"line {lineno}: sample without a metric name")
        if not 1 <= len(rest) <= 2:  # value, and an optional timestamp in ms
            raise ExpositionError(f"line {lineno}: expected 'value [timestamp]' after {name}")
        out.append(Sample(name, _parse_value(rest[0], lineno), labels))
    return out
