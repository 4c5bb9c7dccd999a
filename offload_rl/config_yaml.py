"""Reading a YAML configuration and wording its validation errors: one rule for every config
file (scenarios, workload mappings), so each names the file and the dotted key the same way."""

from __future__ import annotations

import yaml
from pydantic import ValidationError

from offload_rl.errors import ConfigError


def parse_yaml(text: str, source: str) -> object:
    """The parsed document, or a ConfigError naming ``source`` and the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}:{line}: not valid YAML") from None


def validation_message(source: str, err: ValidationError) -> str:
    """``source: dotted.key: message`` for the first error (a model-level check names its key
    itself, so it gets no key)."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    msg = msg.removeprefix("Value error, ")
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {key}: {msg}{more}" if key else f"{source}: {msg}{more}"
