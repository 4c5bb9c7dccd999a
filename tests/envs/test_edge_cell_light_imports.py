"""EdgeCell-v0 runs with the ``env`` extra alone: creating and stepping it imports no torch.

The cell's edge batch cost is read from the edge's profile file; reading shapes through
transformers (which counts parameters on torch's meta device) would make every environment
user install torch and pay seconds of imports at each start.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "stable_baselines3", "sb3_contrib")

SCRIPT = """
import json, sys
import gymnasium as gym
import envs
env = gym.make("offload_rl/EdgeCell-v0")
env.reset(seed=0)
for _ in range(20):
    env.step(int(env.unwrapped.action_masks().nonzero()[0][0]))
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps(heavy))
"""


def test_cell_env_process_imports_neither_torch_nor_transformers():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
