"""EdgeCell-v0 episodes are bit-identical to the recorded ones (a refactoring guard).

The hash covers every observation, reward and info value of a few seeded episodes under
seeded random valid actions. A change to the cell's physics changes it on purpose: then
rerun ``episode_fingerprint()`` and write the new value here with the reason in the commit.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path
from typing import Any

import numpy as np

from envs.edge_cell import EdgeCellEnv

# Recorded on b0b07d2 (main before the cell stopped reading shapes through transformers) as
# 6d826feb...; re-recorded when the edge server stopped charging a prompt's last token twice
# (a chunk that left a prompt one token short grew its KV by a decode's token): these episodes
# contain such chunks, so their edge timings changed on purpose (0c7386ba...); re-recorded when
# the default cell became Qwen2.5-7B (4-bit phone, 5.37 GB KV pool): every timing changed
# (70f71822...). Re-recorded when the edge server, radios and cost ledger got faster: float
# summation order only (against the previous pin's code over seeded episodes at N = 8, 32, 128
# under random and edge-first actions: identical observations and discrete events, times within
# 6e-12 s, rewards within 1.4e-13 relative; see the speed branch's commits) as 4e57d6e8....
# Re-recorded when a token-id edge request stopped waiting for its phone's local compute (no
# device work does not queue, as on the cloud path): in these episodes all 7 token-id requests
# of 360 had waited behind a local run (median 39 s, up to 548 s), and 91 other requests' times
# changed through the edge they share with them; placements and the request stream are the same
# (d7165ca7...). Re-recorded when each device class got its own memory for the model (budget
# phones, 6 GB of RAM, hold 26 of the 7B's 28 layers: no full-local run, no split deeper than
# 26): 136 of these 360 requests come from budget phones, whose masks lost 2 placements, so the
# seeded random actions, and everything after the first such request, changed.
FINGERPRINT = "dceaa931f468e8929f59b941a9bdab646017cdf8e3c3bc69fe6bf77d08647907"
SEEDS = (0, 1, 2)
STEPS = 120


def _canonical(value: Any) -> Any:
    """Floats as their exact hex, so that one ulp of difference changes the hash."""
    if isinstance(value, float | np.floating):
        return float(value).hex()
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    return value


def episode_fingerprint() -> str:
    """SHA-256 over observations, rewards and infos of ``SEEDS`` episodes of ``STEPS`` steps."""
    digest = hashlib.sha256()
    env = EdgeCellEnv(episode_requests=STEPS)
    for seed in SEEDS:
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        digest.update(obs.tobytes())
        digest.update(json.dumps({k: _canonical(v) for k, v in info.items()}).encode())
        for _ in range(STEPS):
            action = int(rng.choice(np.flatnonzero(env.action_masks())))
            obs, reward, _, truncated, info = env.step(action)
            digest.update(obs.tobytes())
            digest.update(float(reward).hex().encode())
            digest.update(json.dumps({k: _canonical(v) for k, v in sorted(info.items())}).encode())
            if truncated:
                break
    return digest.hexdigest()


def test_cell_episodes_are_bit_identical_to_the_recorded_ones():
    assert episode_fingerprint() == FINGERPRINT


# --------------------------------------------------------------------------------------------
# An episode that takes the outage fallback (the pin above never does)
# --------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
CELL_FINGERPRINT = runpy.run_path(str(REPO / "experiments" / "benchmarks" / "cell_fingerprint.py"))

# Recorded when this pin was added (the mask's outage rule as of stop 23: a phone that cannot
# hold the model is offered only the deepest split it holds when the link is out). Breaking that
# rule (offering full-local instead) changes this hash: checked when the test was written.
OUTAGE_FINGERPRINT = "8aef8b8daf416a22a95f5cbc1a8186bf5428618bd3a86b70f13c2ed064b7ab38"
OUTAGE_DEVICES = 4
OUTAGE_EPISODES = 3
OUTAGE_STEPS = 60
OUTAGE_FALLBACKS = 13  # decisions of these episodes that hit the fallback


def test_outage_episodes_take_the_fallback_and_are_bit_identical_to_the_recorded_ones():
    env = EdgeCellEnv(CELL_FINGERPRINT["outage_scenario"](), n_devices=OUTAGE_DEVICES)
    digest, fallbacks = CELL_FINGERPRINT["fingerprint_counting_outages"](
        env, OUTAGE_EPISODES, OUTAGE_STEPS
    )
    assert fallbacks == OUTAGE_FALLBACKS  # the pinned episodes do exercise the outage path
    assert digest == OUTAGE_FINGERPRINT


def test_the_outage_fallback_offers_only_the_deepest_split_the_phone_holds():
    env = EdgeCellEnv(CELL_FINGERPRINT["outage_scenario"](), n_devices=OUTAGE_DEVICES)
    is_fallback = CELL_FINGERPRINT["is_outage_fallback"]
    rng = np.random.default_rng(0)
    seen = 0
    env.reset(seed=0)
    for _ in range(OUTAGE_STEPS):
        mask = env.action_masks()
        if is_fallback(env):
            seen += 1
            tiers = {env.layout.decode(int(a))[0] for a in np.flatnonzero(mask)}
            assert tiers == {env.state.device_memory_layers}
        env.step(int(rng.choice(np.flatnonzero(mask))))
    assert seen > 0
