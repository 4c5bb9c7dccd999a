"""The reset options both environments take: which trace, where in it, which workload draw.

One home for the draw order (trace, offset, workload seed from ``np_random``): the cell's
``N = 1`` check replays a ``SplitCache-v0`` episode only while both draw alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from offload_rl.traces import Trace


def pick_episode(
    uplinks: Sequence[Trace], rng: np.random.Generator, options: dict[str, Any]
) -> tuple[int, float, int]:
    """``(trace index, offset_s, workload seed)``: pinned by ``options`` (``trace`` as an
    index or a name, ``offset_s``, ``workload_seed``), else drawn from ``rng`` in that order."""
    trace_opt = options.get("trace")
    if trace_opt is None:
        idx = int(rng.integers(len(uplinks)))
    elif isinstance(trace_opt, str):
        names = [t.name for t in uplinks]
        if trace_opt not in names:
            raise ValueError(f"reset option trace={trace_opt!r} is not one of {names}")
        idx = names.index(trace_opt)
    else:
        idx = int(trace_opt) % len(uplinks)
    offset = options.get("offset_s")
    # rng.uniform(0.0, d) is 0.0 + d * rng.random() (numpy's random_uniform), the same double,
    # without uniform's argument checks
    offset_s = 0.0 + uplinks[idx].duration_s * rng.random() if offset is None else offset
    wseed = options.get("workload_seed")
    if wseed is None:
        wseed = int(rng.integers(2**31 - 1))
    return idx, float(offset_s), int(wseed)
