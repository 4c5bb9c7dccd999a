"""User-facing errors.

Anything a user can cause (a malformed trace, a wrong key in a scenario) raises a subclass of
:class:`OffloadRLError`. The CLI prints its message on one line and exits non-zero, without a
traceback; programming errors keep their tracebacks.
"""

from __future__ import annotations

from pathlib import Path


class OffloadRLError(Exception):
    """An error whose message is meant for the user, on one line."""


class DataFileError(OffloadRLError):
    """A data file (trace, workload, profile) that cannot be read as documented.

    The message names the file and, when known, the 1-based line: ``path:line: message``.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(OffloadRLError):
    """A configuration (scenario or training YAML) with a wrong key or value.

    The message names the file and the dotted key, e.g. ``scenario.yaml: reward.w_latency: ...``.
    """
