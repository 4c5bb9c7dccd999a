"""What the device and the edge say to each other, and how tensors become frame payloads.

Per request (paced on the link, in this order):

* device -> edge ``BEGIN``: session, split ``k``, keep, cached positions ``past``, output tokens,
  the request's trace clock; payload = int32 token ids (``k = 0``) or the float32 hidden states
  of the new positions after layer ``k``;
* edge -> device ``TOKEN`` (``a`` = token id, ``b`` = its index, ``aux`` = edge compute seconds
  spent on it); at ``k = 0`` the edge decodes alone and streams every token; with a split the
  device answers each token with ``STEP`` (the next position's hidden state after layer ``k``);
* edge -> device ``MISS`` instead of a token when the edge no longer holds the KV the device
  expected (the device then prefills from scratch);
* edge -> device ``DONE`` (unpaced, after the last token): what the edge did (prefilled
  positions, cache hit, what it kept, sessions it evicted).

Control frames (unpaced): ``HELLO``/``READY`` (the edge builds the same model), ``LINK`` (the
downlink trace and one-way delay), ``RESET``/``RESET_OK`` (forget every session), ``ERROR``.

The cell runtime (:mod:`validation.runtime.cell_edge`) speaks the same request frames (its
``BEGIN`` also carries ``known``, the sequence's length) and two notices of its own, both
unpaced: ``EVICTED`` (edge -> device: a kept session's KV is gone) and ``DROP`` (device -> edge,
when a decision moves a session off the split its KV was kept for: the entry is dropped then,
as the simulator drops it at the decision).
"""

from __future__ import annotations

from typing import Any

from offload_rl.profiler import require_torch

HELLO = 1
READY = 2
LINK = 3
BEGIN = 4
STEP = 5
TOKEN = 6
MISS = 7
DONE = 8
RESET = 9
RESET_OK = 10
ERROR = 11
BYE = 12
EVICTED = 13  # cell edge -> device, unpaced: the edge dropped a session's kept KV
DROP = 14  # device -> cell edge, unpaced, at a decision: the session moved off its kept split

KIND_NAMES = {
    value: name
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and not name.startswith("_")
}

TOKEN_ID_BYTES = 4  # int32, as the cost model's k = 0 upload
HIDDEN_DTYPE_BYTES = 4  # float32


def ids_to_bytes(ids: list[int]) -> bytes:
    """Token ids as little-endian int32."""
    import numpy as np

    return np.asarray(ids, dtype="<i4").tobytes()


def ids_from_bytes(data: bytes) -> Any:
    """A ``[1, n]`` long tensor of the ids in ``data``."""
    import numpy as np

    torch, _ = require_torch()
    return torch.from_numpy(np.frombuffer(data, dtype="<i4").astype(np.int64)).unsqueeze(0)


def hidden_to_bytes(hidden: Any) -> bytes:
    """A ``[1, n, d]`` float32 tensor as raw little-endian bytes (one copy)."""
    return bytes(hidden.detach().contiguous().numpy().tobytes())


def hidden_from_bytes(data: bytes, d_model: int) -> Any:
    """The ``[1, n, d_model]`` float32 tensor in ``data``."""
    import numpy as np

    torch, _ = require_torch()
    array = np.frombuffer(data, dtype="<f4").reshape(1, -1, d_model)
    return torch.from_numpy(array.copy())
