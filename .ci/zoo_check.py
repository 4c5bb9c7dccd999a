"""CI: rl_zoo3 trains on ``offload_rl/SplitCache-v0`` through ``--gym-packages envs``.

Run with the interpreter of a venv that has the project and rl_zoo3 installed with the
user-facing ``constraints.txt`` (``make zoo-check`` builds it), so a pin that forbids the RL
ecosystem's standard runner fails CI. Two runs of ``--steps`` each:

* ``ppo``: the zoo's own algorithm, as a user would start it. It knows nothing of masks; the
  environment replaces each invalid action with a valid one and charges the penalty.
* ``ppo_mask``: rl_zoo3 (2.9.2) has no MaskablePPO entry, so it is registered here the way a
  user would (``ALGOS["ppo_mask"] = MaskablePPO``) before the zoo's ``train()``. The check then
  proves that the masks reach MaskablePPO's rollouts through the zoo's wrappers (Monitor,
  VecNormalize): masks are read every step, some are restrictive, and no action the
  environment executed during training was invalid.

    .venv-zoo/bin/python .ci/zoo_check.py [--steps 4096] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV_ID = "offload_rl/SplitCache-v0"
CONF = REPO / "experiments" / "configs" / "rl_zoo3.yml"


def zoo_train(algo: str, steps: int, out: Path) -> float:
    """One ``python -m rl_zoo3.train`` run in this process; returns its wall time."""
    from rl_zoo3.train import train

    argv = ["rl_zoo3.train", "--algo", algo, "--env", ENV_ID, "--gym-packages", "envs"]
    argv += ["--conf-file", str(CONF), "-n", str(steps), "--seed", "0", "-f", str(out)]
    argv += ["--eval-freq", "-1", "--verbose", "0"]
    sys.argv = argv
    start = time.perf_counter()
    train()
    return time.perf_counter() - start


def spy_on_masks() -> dict[str, int]:
    """Count the masks MaskablePPO reads and the invalid actions the environment executes."""
    import numpy as np
    import sb3_contrib.ppo_mask.ppo_mask as ppo_mask_module

    from envs.split_cache import SplitCacheEnv

    seen = {"mask_reads": 0, "masked_out": 0, "steps": 0, "invalid": 0}
    read_masks = ppo_mask_module.get_action_masks

    def counting_masks(env: Any) -> Any:
        masks = read_masks(env)
        seen["mask_reads"] += 1
        seen["masked_out"] += int(np.size(masks) - np.count_nonzero(masks))
        return masks

    ppo_mask_module.get_action_masks = counting_masks  # type: ignore[assignment]
    step = SplitCacheEnv.step

    def counting_step(self: SplitCacheEnv, action: Any) -> Any:
        result = step(self, action)
        seen["steps"] += 1
        seen["invalid"] += int(bool(result[4].get("invalid_action")))
        return result

    SplitCacheEnv.step = counting_step  # type: ignore[method-assign]
    return seen


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4096)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="zoo-check-"))

    seen = spy_on_masks()
    wall = zoo_train("ppo", args.steps, out)
    print(f"rl_zoo3 ppo: {args.steps} steps on {ENV_ID} in {wall:.1f} s; {seen}")

    from rl_zoo3.utils import ALGOS
    from sb3_contrib import MaskablePPO

    ALGOS["ppo_mask"] = MaskablePPO
    seen.update(dict.fromkeys(seen, 0))
    wall = zoo_train("ppo_mask", args.steps, out)
    print(f"rl_zoo3 ppo_mask: {args.steps} steps in {wall:.1f} s; {seen}")
    if seen["mask_reads"] == 0 or seen["masked_out"] == 0:
        print("FAIL: MaskablePPO never read a restrictive mask through rl_zoo3's wrappers")
        return 1
    if seen["invalid"] > 0:
        print(f"FAIL: {seen['invalid']} invalid actions executed while training with masks")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
