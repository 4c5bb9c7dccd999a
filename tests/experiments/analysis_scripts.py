"""Loading a script of ``experiments/analyses`` as a module in a test (the scripts import each
other by name, e.g. ``cell_results_table``, so their folder is on the path while one loads)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ANALYSES = Path(__file__).resolve().parents[2] / "experiments" / "analyses"


def load_analysis(name: str) -> ModuleType:
    """The script ``experiments/analyses/<name>.py`` as a module."""
    sys.path.insert(0, str(ANALYSES))
    try:
        spec = importlib.util.spec_from_file_location(name, ANALYSES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ANALYSES))
    return module
