"""``offload-rl traces stats`` and ``offload-rl traces synth``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from offload_rl.cli import main
from offload_rl.traces import load_trace

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_family(root: Path) -> list[Path]:
    fam = root / "famX"
    fam.mkdir()
    (fam / "a").write_text("0 9\n1 2\n2 4\n3 0.05\n", encoding="utf-8")
    (fam / "b").write_text("0 1\n1 6\n2 6\n", encoding="utf-8")
    mm = root / "cell"
    mm.mkdir()
    (mm / "x.up").write_text("0\n" + "500\n" * 3 + "1000\n", encoding="utf-8")
    return [fam, mm / "x.up"]


def test_stats_json_on_tmp_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_family(tmp_path)
    code, out, err = run_cli(capsys, "traces", "stats", *map(str, paths), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [t["name"] for t in doc["traces"]] == ["a", "b", "x.up"]
    assert set(doc["families"]) == {"famX", "cell (.up)"}
    fam = doc["families"]["famX"]
    assert fam["n_traces"] == 2 and fam["duration_s"] == 5.0
    assert fam["mean_mbps"] == pytest.approx((2 + 4 + 0.05 + 6 + 6) / 5)
    assert fam["share_below_0_1"] == pytest.approx(0.2)
    assert doc["families"]["cell (.up)"]["mean_mbps"] == pytest.approx(5 * 1500 * 8 / 1e6)
    assert doc["traces"][1]["lag1_autocorr"] is None  # constant 6 Mbps


def test_stats_table_and_explicit_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = write_family(tmp_path)
    code, out, _ = run_cli(capsys, "traces", "stats", str(paths[0]), "--format", "cooked")
    assert code == 0
    assert "famX" in out and "Families" in out
    code, _, err = run_cli(capsys, "traces", "stats", str(paths[0]), "--format", "mahimahi")
    assert code == 2
    assert "a:1:" in err and "Traceback" not in err


@pytest.mark.shared
def test_family_checks_on_shared_traces(
    shared_traces: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(
        capsys, "traces", "stats", str(shared_traces / "norway-hsdpa-3g"), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["families"]["norway-hsdpa-3g"]["mean_mbps"] == pytest.approx(
        1.21, rel=0.02
    )
    ups = sorted(str(p) for p in (shared_traces / "mahimahi-cellular").glob("*.up"))
    assert len(ups) == 6
    code, out, err = run_cli(capsys, "traces", "stats", *ups, "--json")
    assert code == 0, err
    families = json.loads(out)["families"]
    assert list(families) == ["mahimahi-cellular (.up)"]
    assert families["mahimahi-cellular (.up)"]["mean_mbps"] == pytest.approx(1.63, rel=0.02)


def test_synth_writes_a_cooked_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "syn" / "nyc.txt"
    out_file.parent.mkdir()
    argv = ["traces", "synth", "nyc-lte", "--duration", "30", "--seed", "4", "--out"]
    code, out, err = run_cli(capsys, *argv, str(out_file))
    assert code == 0, err
    assert str(out_file) in out
    tr = load_trace(out_file)
    assert tr.duration_s == pytest.approx(30.0)
    from offload_rl.synthetic_traces import generate_trace

    assert tr.mbps.tolist() == pytest.approx(generate_trace("nyc-lte", 30.0, 4).mbps.tolist())


def test_synth_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "traces", "synth", "bogus", "--out", str(tmp_path / "x"))
    assert code == 2 and "mahimahi-uplink" in err
    code, _, err = run_cli(
        capsys, "traces", "synth", "wifi", "--duration", "-5", "--out", str(tmp_path / "x")
    )
    assert code == 2 and "duration" in err


def test_malformed_file_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "broken_trace"
    bad.write_text("0.0\t1.0\n1.0\t2.0\n2.0\toops\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "offload_rl", "traces", "stats", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"{bad}:3:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
