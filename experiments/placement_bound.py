"""How much of the oracle's placement lead can a policy that sees only the observation recover?

The oracle beats greedy mostly by placement (``experiments/oracle_decomposition.py``): it knows
the link, the edge queue and the output length *during* the request. A deployable policy sees
the observation. This script measures what that observation is worth for placement, with no RL
in the way: it fits, by supervised regression on full-information rows, the expected gain of
every placement over greedy's,

    q(obs, t) ~ E[ r(t) - r(greedy's t) | obs ]      (hindsight rewards, paired per request)

and then places each request at ``argmax_t q`` (greedy's placement where no gain is predicted),
keeping greedy's cache rule. Pairing the rewards of one request removes what all placements
share (a long prompt is slow everywhere), so the fit sees only what separates placements. The
inputs are the policy's observation plus greedy's own predicted rewards, so the fit starts from
everything greedy knows. Rows come from greedy's trajectories with 10% random actions.

Printed: per request, the hindsight placement gain over greedy on held-out rows (what knowing
the future is worth), the gain the fit predicts and the gain it realises there, and closed-loop
rewards of greedy, the fit and the oracle on the evaluation harness's pinned episodes::

    python experiments/placement_bound.py                           # embedded default
    python experiments/placement_bound.py --traces ../shared/traces/mahimahi-cellular/*.up

If the realised gain is a small share of the hindsight gain, no policy with this observation
(PPO included) can close much of the oracle's placement lead: the rest is the future.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from agents.evaluate import build_episodes, decider, prepare_scenario
from agents.oracle import OraclePolicy, hindsight_tier_rewards
from envs.split_cache import SplitCacheEnv
from offload_rl.errors import OffloadRLError
from offload_rl.features import DecisionState, encode_observation
from offload_rl.heuristics import GreedyPolicy, make_heuristic
from offload_rl.scenario import load_scenario, resolve_scenario

CLIP = 2.0  # rewards and gains are clipped to +-CLIP: a terrible placement only needs to be bad


def features(greedy: GreedyPolicy, env: SplitCacheEnv, state: DecisionState) -> np.ndarray:
    """The observation plus greedy's predicted reward of every placement (clipped)."""
    predicted = greedy.predict_rewards(state, env.action_masks())
    predicted = np.clip(np.nan_to_num(predicted, neginf=-CLIP), -CLIP, 0.0)
    return np.concatenate([encode_observation(state, env.feature_spec), predicted])


def collect(
    env: SplitCacheEnv, greedy: GreedyPolicy, rows: int, explore: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` full-information rows: features, and gain of each placement over greedy's
    (NaN where the placement is not allowed)."""
    from rich.progress import track

    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    env.reset(seed=seed)
    greedy.reset()
    for _ in track(range(rows), description="full-information rows", transient=True):
        state, mask = env.state, env.action_masks()
        rewards = hindsight_tier_rewards(env)
        chosen = greedy.act(state, mask)
        gain = np.clip(rewards - rewards[chosen >> 1], -CLIP, CLIP)
        xs.append(features(greedy, env, state))
        ys.append(np.where(np.isfinite(rewards), gain, np.nan))
        if rng.random() < explore:
            chosen = int(rng.choice(np.flatnonzero(mask)))
        if env.step(chosen)[3]:
            env.reset(seed=int(rng.integers(1 << 31)))
            greedy.reset()
    return np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32)


class FittedGain:
    """Regression of the per-placement gain over greedy (an MLP, masked squared error)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, epochs: int, hidden: int, seed: int) -> None:
        import torch

        torch.manual_seed(seed)
        self.mu = x.mean(axis=0)
        self.sd = x.std(axis=0) + 1e-6
        n_in, n_out = x.shape[1], y.shape[1]
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, n_out),
        )
        xt = torch.as_tensor((x - self.mu) / self.sd)
        yt = torch.as_tensor(np.nan_to_num(y, nan=0.0))
        mt = torch.as_tensor(np.isfinite(y))
        opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        for _ in range(epochs):
            for idx in torch.randperm(len(x)).split(512):
                err = (self.net(xt[idx]) - yt[idx]) ** 2 * mt[idx]
                loss = err.sum() / mt[idx].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            xt = torch.as_tensor(((x - self.mu) / self.sd).astype(np.float32))
            return np.asarray(self.net(xt).numpy(), dtype=np.float64)


class FittedPlacement:
    """Deployable: greedy, moved to the placement with the largest predicted gain (if > 0)."""

    name = "fitted"

    def __init__(self, fit: FittedGain, greedy: GreedyPolicy, env: SplitCacheEnv) -> None:
        self.fit, self.greedy, self.env = fit, greedy, env

    def reset(self) -> None:
        self.greedy.reset()

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        base = self.greedy.act(state, mask)
        gain = self.fit.predict(features(self.greedy, self.env, state)[None, :])[0]
        gain = np.where(mask[0::2] | mask[1::2], gain, -np.inf)
        tier = int(np.argmax(gain))
        if gain[tier] <= 0.0 or tier == base >> 1:
            return base
        action = tier * 2 + self.greedy.cache.keep(state, tier)
        return action if mask[action] else self.env.layout.nearest_valid(action, mask)


def closed_loop(
    policies: dict[str, object], env: SplitCacheEnv, episodes: list
) -> dict[str, float]:
    """Mean reward per request of each policy over the same pinned episodes."""
    out = {}
    for name, policy in policies.items():
        rewards: list[float] = []
        for ep in episodes:
            env.reset(seed=ep.workload_seed, options=ep.reset_options())
            policy.reset()  # type: ignore[attr-defined]
            decide = decider(policy, env)  # type: ignore[arg-type]
            while True:
                _, r, _, done, _ = env.step(decide())
                rewards.append(float(r))
                if done:
                    break
        out[name] = float(np.mean(rewards))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="default")
    p.add_argument("--traces", nargs="+", default=None, help="trace files or folders")
    p.add_argument("--uplink-scale", type=float, default=None)
    p.add_argument("--greedy", default="greedy", help="the greedy variant (e.g. greedy-last)")
    p.add_argument("--rows", type=int, default=100_000, help="full-information rows to fit on")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--explore", type=float, default=0.1, help="share of random actions")
    p.add_argument("--episodes", type=int, default=8, help="closed-loop episodes per family")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    try:
        scenario = prepare_scenario(load_scenario(args.scenario), args.traces, args.uplink_scale)
        resolved = resolve_scenario(scenario)
        greedy = make_heuristic(args.greedy, scenario)
    except OffloadRLError as err:
        print(f"placement_bound: error: {err}", file=sys.stderr)
        return 2
    if not isinstance(greedy, GreedyPolicy):
        print(
            f"placement_bound: error: --greedy {args.greedy} is not a greedy variant",
            file=sys.stderr,
        )
        return 2
    env = SplitCacheEnv(resolved)
    t0 = time.perf_counter()
    x, y = collect(env, greedy, args.rows, args.explore, args.seed + 1000)
    n_test = len(x) // 10  # the first rows are held out (whole episodes apart from the edge)
    fit = FittedGain(x[n_test:], y[n_test:], args.epochs, args.hidden, args.seed)

    yt = y[:n_test]
    predicted = np.where(np.isfinite(yt), fit.predict(x[:n_test]), -np.inf)
    rows = np.arange(n_test)
    best = predicted.argmax(axis=1)
    moves = predicted[rows, best] > 0.0
    hindsight = float(np.nanmax(yt, axis=1).mean())
    realised = float(np.where(moves, yt[rows, best], 0.0).mean())
    print(f"{len(x)} rows ({n_test} held out), fitted in {time.perf_counter() - t0:.0f} s")
    print(f"held-out rows, gain over {args.greedy} per request:")
    print(f"  hindsight best placement     {hindsight:+.4f}  (what knowing the future is worth)")
    promised = float(np.where(moves, predicted[rows, best], 0.0).mean())
    print(f"  fit: predicted               {promised:+.4f}  (moves {moves.mean():.1%} of requests)")
    share = f"  = {realised / hindsight:.0%} of hindsight" if hindsight > 0 else ""
    print(f"  fit: realised                {realised:+.4f}{share}")

    episodes = build_episodes(resolved, args.episodes, 12345)
    policies = {
        args.greedy: greedy,
        "fitted": FittedPlacement(fit, greedy, env),
        "oracle": OraclePolicy(),
    }
    result = closed_loop(policies, env, episodes)
    g, o = result[args.greedy], result["oracle"]
    print(f"closed loop, {len(episodes)} pinned episodes, mean reward per request:")
    for name, reward in result.items():
        closure = (reward - g) / (o - g) if o != g else float("nan")
        print(f"  {name:14s} {reward:+.4f}   closure {closure:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
