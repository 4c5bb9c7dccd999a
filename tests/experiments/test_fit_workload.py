"""The workload fitting script fits to a user's own logs, read through field mappings."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "fitting" / "fit_workload.py"


def write_logs(folder: Path) -> tuple[Path, Path, Path, Path]:
    """A JSONL chat log with sessions (inputs without history) and a CSV of lengths in ms."""
    rng = np.random.default_rng(0)
    lines, t = [], 0.0
    for session in range(120):
        turns = 1 + int(rng.geometric(0.4)) - 1
        start = t
        for turn in range(turns):
            lines.append(
                json.dumps(
                    {
                        "ts": f"{start + 60.0 * turn:.3f}",
                        "sid": f"s{session}",
                        "prompt": int(rng.integers(5, 200)),
                        "completion": int(rng.integers(1, 400)),
                    }
                )
            )
        t += float(rng.exponential(20.0))
    chat = folder / "chat.jsonl"
    chat.write_text("\n".join(lines) + "\n")
    chat_map = folder / "chat.yaml"
    chat_map.write_text(
        "time: {field: ts, unit: s}\ninput_tokens: prompt\noutput_tokens: completion\n"
        "session_id: sid\ninput_includes_history: false\n"
    )
    lengths = folder / "lengths.csv"
    rows = ["t_ms,in,out"] + [f"{i * 500},{10 + i % 97},{1 + (7 * i) % 300}" for i in range(400)]
    lengths.write_text("\n".join(rows) + "\n")
    lengths_map = folder / "lengths.yaml"
    lengths_map.write_text("time: {field: t_ms, unit: ms}\ninput_tokens: in\noutput_tokens: out\n")
    return chat, chat_map, lengths, lengths_map


def test_fits_own_logs_through_mappings(tmp_path, capsys):
    chat, chat_map, lengths, lengths_map = write_logs(tmp_path)
    out = tmp_path / "fitted.json"
    main = runpy.run_path(str(SCRIPT))["main"]
    argv = ["--sessions", str(chat), "--sessions-mapping", str(chat_map), "--lengths"]
    argv += [str(lengths), "--lengths-mapping", str(lengths_map), "--out", str(out)]
    assert main(argv) == 0
    params = json.loads(out.read_text())
    # lengths CSV: prompts 10..106, outputs 1..300, 400 requests over 199.5 s = 2.0 requests/s
    first = params["first_prompt_tokens"]
    assert first["values"][0] == 10.0 and first["values"][-1] == 106.0
    assert params["output_tokens"]["values"][-1] == 300.0
    turns = params["turns"]
    mean_turns = float(np.dot(turns["weights"], turns["means"]))
    assert params["session_rate_per_s"] == round(2.0 / mean_turns / 25.0, 5)
    # inputs without history: a follow-up's new tokens are its prompt (5..199 here)
    followup = params["followup_prompt_tokens"]["values"]
    assert followup[0] >= 5.0 and followup[-1] <= 199.0
    assert "wrote" in capsys.readouterr().out
    # the correlation fitted to these logs goes beside --out, never over the shipped one
    assert "correlation" in json.loads((tmp_path / "workload_session_correlation.json").read_text())


def test_a_log_without_its_mapping_is_one_line(tmp_path, capsys):
    chat, _, _, _ = write_logs(tmp_path)
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--sessions", str(chat), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "field mapping" in err
