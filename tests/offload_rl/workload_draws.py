"""The draws the workload's property tests range over (one home for both test modules)."""

from __future__ import annotations

from hypothesis import strategies as st

# a seed, a horizon and a session rate for draw_sessions, and how many requests the stream keeps
DRAW_ARGS = {
    "seed": st.integers(0, 2**32 - 1),
    "horizon": st.floats(10.0, 3000.0),
    "rate": st.floats(0.001, 0.2),
    "cut": st.integers(1, 400),
}
