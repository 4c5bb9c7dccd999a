"""The policies the package ships: one for the single device, one trained in the cell.

``offload_rl/data/policies/default.onnx`` was trained on SplitCache-v0 (one phone), and
``cell.onnx`` on EdgeCell-v0 (many phones sharing one edge GPU; experiments/fitting/
make_cell_policy.py makes it). Their observations differ, so which one a caller means depends
on the scenario: :func:`shipped_policy_path` picks by ``cell``. One home for the file names,
used by ``offload-rl serve``, ``evaluate --policies shipped`` and the demo.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SHIPPED_POLICY_NAME = "shipped"
"""The policy spec that names the shipped policy of the scenario (``--policies shipped``)."""

SINGLE_DEVICE_FILE = "default.onnx"
CELL_FILE = "cell.onnx"


def shipped_policy_path(cell: bool = False) -> Path | None:
    """The shipped policy file for a cell scenario (``cell``) or a single device, if the
    package has it (an installed wheel without package data has neither)."""
    name = CELL_FILE if cell else SINGLE_DEVICE_FILE
    resource = importlib.resources.files("offload_rl") / "data" / "policies" / name
    if resource.is_file() and isinstance(resource, Path):
        return resource
    return None
