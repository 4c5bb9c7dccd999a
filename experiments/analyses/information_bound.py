"""What is the observation worth, for placement and for the cache, with no RL in the way?

The oracle beats greedy by placement and by keeping the right KV entries
(``experiments/analyses/oracle_decomposition.py``): it knows the link, the edge queue and the output
length *during* the request, and which sessions come back. A deployable policy sees the
observation. This script measures what that observation is worth by supervised learning on
full-information rows, which is what any policy (PPO included) could at best extract from it:

* placement: a regression of the expected gain of every placement over greedy's,
  ``q(obs, t) ~ E[ r(t) - r(greedy's t) | obs ]`` (hindsight rewards, paired per request, which
  removes what all placements share: a long prompt is slow everywhere). The policy ``fitted
  placement`` moves greedy to ``argmax_t q`` where a gain is predicted, with greedy's keep.
* cache: a classifier of ``P(the session comes back within the episode | obs)``, the oracle's
  keep rule. ``fitted keep p>X`` is greedy's placement, keeping iff the probability is over X
  (X chosen on the scored episodes: favours the fit). ``greedy + oracle keep`` is the ceiling.

Inputs are the observation plus greedy's own predicted rewards, so the fits start from everything
greedy knows. Rows come from greedy's trajectories with 10% random actions; the first tenth is
held out. Printed: the hindsight placement gain over greedy on held-out rows, the gain the fit
predicts and realises there, the classifier's held-out accuracy against the base rate, and
closed-loop rewards on the evaluation harness's pinned episodes with the closure
``(policy - greedy) / (oracle - greedy)``::

    python experiments/analyses/information_bound.py             # embedded default
    python experiments/analyses/information_bound.py \
        --traces ../shared/traces/mahimahi-cellular/*.up

If the fits recover a small share of the oracle's lead, no policy with this observation can
close much of it: the rest is the future.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from agents.evaluate import add_scenario_arguments, build_episodes, decider, prepare_scenario
from agents.oracle import OraclePolicy, hindsight_tier_rewards
from envs.split_cache import SplitCacheEnv
from offload_rl.actions import DROP, KEEP
from offload_rl.errors import OffloadRLError
from offload_rl.features import DecisionState, encode_observation
from offload_rl.heuristics import GreedyPolicy, make_heuristic
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import resolve_scenario

CLIP = 2.0  # rewards and gains are clipped to +-CLIP: a terrible placement only needs to be bad


def features(greedy: GreedyPolicy, env: SplitCacheEnv, state: DecisionState) -> np.ndarray:
    """The observation plus greedy's predicted reward of every placement (clipped)."""
    predicted = greedy.predict_rewards(state, env.action_masks())
    predicted = np.clip(np.nan_to_num(predicted, neginf=-CLIP), -CLIP, 0.0)
    return np.concatenate([encode_observation(state, env.feature_spec), predicted])


def collect(
    env: SplitCacheEnv, greedy: GreedyPolicy, rows: int, explore: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rows`` full-information rows: features, the gain of each placement over greedy's
    (NaN where the placement is not allowed), and whether the session comes back."""
    from rich.progress import track

    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    comes_back: list[bool] = []
    env.reset(seed=seed)
    greedy.reset()
    for _ in track(range(rows), description="full-information rows", transient=True):
        state, mask = env.state, env.action_masks()
        rewards = hindsight_tier_rewards(env)
        chosen = greedy.act(state, mask)
        gain = np.clip(rewards - rewards[chosen >> 1], -CLIP, CLIP)
        xs.append(features(greedy, env, state))
        ys.append(np.where(np.isfinite(rewards), gain, np.nan))
        comes_back.append(env.current_request.gap_to_next_turn_s is not None)
        if rng.random() < explore:
            chosen = int(rng.choice(np.flatnonzero(mask)))
        if env.step(chosen)[3]:
            env.reset(seed=int(rng.integers(1 << 31)))
            greedy.reset()
    x, y = np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32)
    return x, y, np.asarray(comes_back, dtype=np.float32)


def fit_mlp(
    x: np.ndarray, y: np.ndarray, loss: str, epochs: int, hidden: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """An MLP fitted to ``y`` (``loss``: ``mse``, masked where ``y`` is NaN, or ``bce`` on 0/1
    labels, predicting probabilities); returns its prediction function."""
    import torch

    torch.manual_seed(seed)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    y2 = y.reshape(len(y), -1)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, y2.shape[1]),
    )
    xt = torch.as_tensor((x - mu) / sd)
    yt = torch.as_tensor(np.nan_to_num(y2, nan=0.0))
    mt = torch.as_tensor(np.isfinite(y2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(512):
            out = net(xt[idx])
            if loss == "bce":
                value = torch.nn.functional.binary_cross_entropy_with_logits(out, yt[idx])
            else:
                value = ((out - yt[idx]) ** 2 * mt[idx]).sum() / mt[idx].sum()
            opt.zero_grad()
            value.backward()
            opt.step()

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = net(torch.as_tensor(((rows - mu) / sd).astype(np.float32)))
            if loss == "bce":
                out = torch.sigmoid(out)
        return np.asarray(out.numpy(), dtype=np.float64).reshape(len(rows), *y.shape[1:])

    return predict


class FittedPlacement:
    """Deployable: greedy, moved to the placement with the largest predicted gain (if > 0)."""

    def __init__(
        self, gain: Callable[[np.ndarray], np.ndarray], greedy: GreedyPolicy, env: SplitCacheEnv
    ) -> None:
        self.gain, self.greedy, self.env = gain, greedy, env

    def reset(self) -> None:
        self.greedy.reset()

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        base = self.greedy.act(state, mask)
        gain = self.gain(features(self.greedy, self.env, state)[None, :])[0]
        gain = np.where(mask[0::2] | mask[1::2], gain, -np.inf)
        tier = int(np.argmax(gain))
        if gain[tier] <= 0.0 or tier == base >> 1:
            return base
        action = tier * 2 + self.greedy.cache.keep(state, tier)
        return action if mask[action] else self.env.layout.nearest_valid(action, mask)


class FittedKeep:
    """Deployable: greedy's placement, keep iff the predicted chance of a return > ``threshold``."""

    def __init__(
        self,
        comes_back: Callable[[np.ndarray], np.ndarray],
        greedy: GreedyPolicy,
        env: SplitCacheEnv,
        threshold: float,
    ) -> None:
        self.comes_back, self.greedy, self.env = comes_back, greedy, env
        self.threshold = threshold

    def reset(self) -> None:
        self.greedy.reset()

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        base = self.greedy.act(state, mask)
        p = float(self.comes_back(features(self.greedy, self.env, state)[None, :])[0])
        action = (base >> 1) * 2 + (KEEP if p > self.threshold else DROP)
        return action if mask[action] else base


class GreedyOracleKeep:
    """NOT deployable: greedy's placement, keep iff the session comes back (hindsight)."""

    def __init__(self, greedy: GreedyPolicy) -> None:
        self.greedy = greedy

    def reset(self) -> None:
        self.greedy.reset()

    def act_env(self, env: SplitCacheEnv) -> int:
        mask = env.action_masks()
        base = self.greedy.act(env.state, mask)
        returns = env.current_request.gap_to_next_turn_s is not None
        action = (base >> 1) * 2 + (KEEP if returns else DROP)
        return action if mask[action] else base


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
    add_scenario_arguments(p)
    p.add_argument("--rows", type=int, default=100_000, help="full-information rows to fit on")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--explore", type=float, default=0.1, help="share of random actions")
    p.add_argument("--episodes", type=int, default=8, help="closed-loop episodes per family")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7], help="for fitted keep"
    )
    args = p.parse_args(argv)

    try:
        scenario = prepare_scenario(load_scenario(args.scenario), args.traces, args.uplink_scale)
        resolved = resolve_scenario(scenario)
        greedy = make_heuristic(args.greedy, scenario)
    except OffloadRLError as err:
        print(f"information_bound: error: {err}", file=sys.stderr)
        return 2
    if not isinstance(greedy, GreedyPolicy):
        print(
            f"information_bound: error: --greedy {args.greedy} is not a greedy variant",
            file=sys.stderr,
        )
        return 2
    env = SplitCacheEnv(resolved)
    t0 = time.perf_counter()
    x, y, back = collect(env, greedy, args.rows, args.explore, args.seed + 1000)
    n_test = len(x) // 10  # the first rows are held out (whole episodes apart from the edge)
    fit = (args.epochs, args.hidden, args.seed)
    gain = fit_mlp(x[n_test:], y[n_test:], "mse", *fit)
    comes_back = fit_mlp(x[n_test:], back[n_test:], "bce", *fit)

    yt = y[:n_test]
    predicted = np.where(np.isfinite(yt), gain(x[:n_test]), -np.inf)
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
    base_rate = float(back[:n_test].mean())
    accuracy = float(((comes_back(x[:n_test]) > 0.5) == (back[:n_test] > 0.5)).mean())
    print(
        f"held-out rows, session comes back: base rate {base_rate:.1%}, classifier accuracy "
        f"{accuracy:.1%} (always guessing the majority: {max(base_rate, 1 - base_rate):.1%})"
    )

    episodes = build_episodes(resolved, args.episodes, 12345)
    policies: dict[str, object] = {
        args.greedy: greedy,
        "fitted placement": FittedPlacement(gain, greedy, env),
        **{f"fitted keep p>{t:g}": FittedKeep(comes_back, greedy, env, t) for t in args.thresholds},
        "greedy + oracle keep": GreedyOracleKeep(greedy),
        "oracle": OraclePolicy(),
    }
    result = closed_loop(policies, env, episodes)
    g, o = result[args.greedy], result["oracle"]
    print(f"closed loop, {len(episodes)} pinned episodes, mean reward per request:")
    for name, reward in result.items():
        closure = (reward - g) / (o - g) if o != g else float("nan")
        print(f"  {name:22s} {reward:+.4f}   closure {closure:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
