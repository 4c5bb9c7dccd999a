"""The ablation script's quick mode: every phenomenon at both measured loads, a table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from offload_rl.cell.ablation import PHENOMENA

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "analyses" / "cell_ablation.py"


def test_quick_mode_writes_one_row_per_phenomenon_and_load(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("cell_ablation", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "cell_ablation", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    out = tmp_path / "ablation.md"
    assert module.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ghent-4g-lte |")]
    assert len(rows) == 2 * (1 + len(PHENOMENA))
    for level in ("moderate", "near-saturated"):
        for phenomenon in ("none (all on)", *PHENOMENA):
            assert sum(f"| {level} " in r and f"| {phenomenon} |" in r for r in rows) == 1
    for row in rows:  # greedy, oracle, gap: numbers, and the gap is oracle - greedy
        greedy, oracle, gap = (float(c.split()[0]) for c in row.split("|")[4:7])
        assert abs(gap - (oracle - greedy)) < 2e-3
    assert "ms per decision" in text and "--quick" in text
