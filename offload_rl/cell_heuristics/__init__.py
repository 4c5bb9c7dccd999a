"""The heuristics an engineer would deploy in the cell instead of a learned policy.

They see exactly what a policy sees in ``EdgeCell-v0`` (:class:`~offload_rl.features.
CellDecisionState` and the mask), never the future, and their free parameters come from
``offload_rl/data/tuned/cell_heuristics.json``, written by
``experiments/tuning/tune_cell_heuristics.py`` from training episodes only. See
``docs/CELL_HEURISTICS.md``.
"""

from offload_rl.cell_heuristics.names import (
    CELL_HEURISTIC_NAMES,
    is_cell_heuristic_name,
    make_cell_heuristic,
)

__all__ = ["CELL_HEURISTIC_NAMES", "is_cell_heuristic_name", "make_cell_heuristic"]
