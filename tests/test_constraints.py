"""The user-facing pins (constraints.txt) agree with the CI lock and stay few.

constraints.txt used to be the whole lock, which made ``pip install -c constraints.txt
rl_zoo3`` impossible (python-dateutil 4 against typepy's <3). It now pins only what the
behaviour and the figures depend on; CI runs on constraints-lock.txt. If the two disagree, a
user gets other numbers than CI, so every user pin must equal the lock's.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what the README's figures and the exported policies depend on
MUST_PIN = {"numpy", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "onnxruntime"}


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a constraints file (names normalised as PEP 503 does)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not a name==version pin"
        out[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return out


def test_every_user_pin_equals_the_lock() -> None:
    user = pins(REPO / "constraints.txt")
    lock = pins(REPO / "constraints-lock.txt")
    assert {name: (version, lock.get(name)) for name, version in user.items()} == {
        name: (version, version) for name, version in user.items()
    }


def test_user_pins_cover_what_matters_and_leave_the_rest_free() -> None:
    user = pins(REPO / "constraints.txt")
    assert set(user) >= MUST_PIN
    # the pin that made rl_zoo3 unresolvable, and a lock-sized file, stay out
    assert "python-dateutil" not in user
    assert len(user) < len(pins(REPO / "constraints-lock.txt")) / 4
