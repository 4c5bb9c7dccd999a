"""The serving package never imports torch, stable-baselines3, sb3-contrib, gymnasium or ray."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.serving.helpers import policy_file

HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "ray")
SERVING = Path(__file__).resolve().parents[2] / "serving"

SCRIPT = """
import json, sys
from fastapi.testclient import TestClient
import serving.app, serving.client, serving.commands, serving.example_runtime, serving.metrics
from offload_rl.cli import build_parser
from serving.app import EXAMPLE_STATE, create_app
build_parser()
for path in (sys.argv[1], None):
    with TestClient(create_app(path, "t")) as c:
        h = {"Authorization": "Bearer t"}
        r = c.post("/v1/decide", json=EXAMPLE_STATE, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["fallback"] is (path is None), r.text
        batch = {"states": [EXAMPLE_STATE]}
        assert c.post("/v1/decide/batch", json=batch, headers=h).status_code == 200
        assert c.get("/metrics", headers=h).status_code == 200
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps(heavy))
"""


def test_app_process_loads_no_heavy_module(tmp_path_factory):
    policy = policy_file(tmp_path_factory)
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(policy), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_no_heavy_import_statement_anywhere_in_serving():
    """Also the lazy ones inside functions, which a process test only sees if they run."""
    for path in sorted(SERVING.glob("**/*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in HEAVY and top not in ("envs", "agents", "validation"), (
                    f"{path}: imports {name}"
                )
