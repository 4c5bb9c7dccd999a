"""Benchmark: EdgeCell-v0 steps per second at N = 8, 32, 128 against CartPole-v1, in one run.

Every environment is unwrapped and driven by a uniformly random *valid* action (the mask is
read, as MaskablePPO reads it); only ``step`` and ``reset`` are timed. Rounds alternate CartPole
and the cell, and the reported ratio is the median of the per-round ratios, so a machine that
slows down during the run slows both sides of each ratio alike. The cell's load is the
scenario's (the fitted per-cell stream shared by the N devices), so the cost that grows with
N is the simulator's bookkeeping (radios settled, devices drawn), not more edge traffic.

Cost per decision is the median round's time per step, split into the time between decisions
(inside ``CellSimulator.advance_and_collect``: the edge's iterations, the finished requests, the
token streams and radios, the ledgers' collection; compiled, one kernel call) and the rest of the
step (dispatch, observation, mask, info). The split comes from a second, shorter pass per round
(the clock reads around the advance would slow the steps that give the rate), and the clock's
own cost per timed interval (:func:`clock_cost`, measured at the start of each ``N``) is taken
off every interval on both sides of the ratio.

With numba (the ``fast`` extra) installed the cell runs compiled (README "EdgeCell-v0 cost per
decision" lists the kernels: a decision's placement, the cell between two decisions, the next
decision, the reset). ``--compare-python`` times the Python
reference of all of them (bit-identical) in the same rounds, alternating with the compiled cell,
so the two ratios come from the same machine state. A few warm-up steps per ``N`` run untimed
(the first compiled cell loads the kernels, ~1 s once per process from numba's cache).

``--clock cpu`` times with ``time.process_time`` instead of the wall clock: on a machine shared
with other work (more runnable processes than cores) the wall clock charges both sides of a
ratio with other processes' time slices, unevenly; CPU time does not.

    .venv/bin/python experiments/benchmarks/bench_cell.py [--steps 2000] [--rounds 5]
        [--compare-python] [--clock wall|cpu]

Figures (README "EdgeCell-v0 cost per decision"; ``--compare-python --clock cpu --steps 2000
--rounds 3`` on the 2-core VM, main 6fe6f5e, three runs each followed by one of 939f994): ratios
0.298-0.302 / 0.269-0.274 / 0.178-0.202 compiled against 0.024-0.026 / 0.019-0.022 / 0.020-0.021
Python at N = 8 / 32 / 128 (0.021-0.023 / 0.024-0.028 / 0.032-0.034 ms per decision compiled);
939f994 0.231-0.248 / 0.222-0.278 / 0.138-0.195. The target 0.25 at N = 32 is met (median ~0.27
over 22 CPU-clock and ~0.27 over 10 wall-clock runs; single runs on a busy machine fell to 0.218).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import gymnasium as gym
import numpy as np

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode
from offload_rl.cell.simulator import CellRequest, CellSimulator

WARM_UP_STEPS = 50
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
timer = time.perf_counter  # the clock every timing reads (--clock)


def clock_cost(samples: int = 20_000) -> float:
    """Seconds one timed interval adds by itself: the median of empty intervals read the way
    the loops below read theirs. ``time.process_time`` costs ~0.6 us a read on this VM, a tenth
    of a CartPole step; left in, it would flatter the cell's ratio (CartPole's step is the
    smaller, so the same absolute overhead inflates it more)."""
    empty = []
    for _ in range(samples):
        t = timer()
        empty.append(timer() - t)
    return statistics.median(empty)


def cartpole_rate(steps: int, seed: int, overhead: float) -> float:
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(2, size=steps).tolist()
    elapsed = 0.0
    for a in actions:
        t = timer()
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
        elapsed += timer() - t
    return steps / (elapsed - steps * overhead)


@contextmanager
def advance_clock() -> Iterator[list[float]]:
    """Seconds spent inside ``CellSimulator.advance_and_collect`` (the cell between two
    decisions) while the block runs (one float in a list)."""
    spent = [0.0]
    advance = CellSimulator.advance_and_collect

    def timed(self: CellSimulator, t: float) -> tuple[list[CellRequest], float, float, float]:
        start = timer()
        out = advance(self, t)
        spent[0] += timer() - start
        return out

    CellSimulator.advance_and_collect = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        CellSimulator.advance_and_collect = advance  # type: ignore[method-assign]


@contextmanager
def python_edge() -> Iterator[None]:
    """Cells reset inside the block run the Python reference (edge scheduler, heat, radios,
    ledgers: what ``compiled_decode.AVAILABLE`` selects at each reset)."""
    available = compiled_decode.AVAILABLE
    compiled_decode.AVAILABLE = False
    try:
        yield
    finally:
        compiled_decode.AVAILABLE = available


def timed_steps(env: EdgeCellEnv, steps: int, seed: int) -> float:
    """Seconds inside ``reset`` and ``step`` over a seeded reset and ``steps`` random valid
    actions (``steps + 1`` timed intervals; the mask is read outside them)."""
    rng = np.random.default_rng(seed)
    t = timer()
    env.reset(seed=seed)
    elapsed = timer() - t
    for _ in range(steps):
        valid = np.flatnonzero(env.action_masks())
        a = int(valid[rng.integers(valid.size)])
        t = timer()
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
        elapsed += timer() - t
    return elapsed


def cell_rate(env: EdgeCellEnv, steps: int, seed: int, overhead: float) -> float:
    """Steps per second of the cell, the clock's own cost taken off each interval."""
    return steps / (timed_steps(env, steps, seed) - (steps + 1) * overhead)


def between_share(env: EdgeCellEnv, steps: int, seed: int) -> float:
    """The share of the timed seconds spent between decisions (inside
    ``advance_and_collect``), from a pass of its own: the clock reads around the advance
    would slow the steps that give the rate."""
    with advance_clock() as edge_s:
        elapsed = timed_steps(env, steps, seed)
    return edge_s[0] / elapsed


def row(
    n: str, cells: list[float], poles: list[float], ratios: list[float], edge: list[float]
) -> str:
    ms = 1e3 / statistics.median(cells)
    edge_ms = ms * statistics.median(edge)
    return (
        f"| {n} | {statistics.median(cells):,.0f} | {statistics.median(poles):,.0f} "
        f"| {statistics.median(ratios):.4f} | {ms:.3f} | {edge_ms:.3f} | {ms - edge_ms:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="cell")
    parser.add_argument("--steps", type=int, default=2000, help="cell steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument(
        "--compare-python", action="store_true", help="also time the Python reference cell"
    )
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    global timer
    timer = CLOCKS[args.clock]
    modes = ["compiled" if compiled_decode.AVAILABLE else "Python"]
    if args.compare_python and compiled_decode.AVAILABLE:
        modes.append("Python")
    print(
        f"cell: {' and '.join(modes)} (numba: {compiled_decode.AVAILABLE}), {args.clock} clock "
        f"(~{clock_cost() * 1e9:.0f} ns a timed interval, taken off)"
    )
    print(
        "| N | cell steps/s (median) | CartPole steps/s (median) | ratio (median of rounds) "
        "| ms per decision | of which between decisions | rest of the step |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        env = EdgeCellEnv(args.scenario, n_devices=n)
        overhead = clock_cost()
        cell_rate(env, WARM_UP_STEPS, args.rounds, overhead)  # untimed: loads the compiled loop
        results: dict[str, tuple[list[float], ...]] = {m: ([], [], [], []) for m in modes}
        for r in range(args.rounds):
            pole = cartpole_rate(args.steps * 10, r, overhead)
            for mode in modes:
                cells, poles, ratios, edge_shares = results[mode]
                with python_edge() if mode == "Python" else nullcontext():
                    cell = cell_rate(env, args.steps, r, overhead)
                    edge_share = between_share(env, args.steps // 2, r)
                cells.append(cell)
                poles.append(pole)
                ratios.append(cell / pole)
                edge_shares.append(edge_share)
        for mode in modes:
            label = f"{n} ({mode})" if len(modes) > 1 else str(n)
            print(row(label, *results[mode]))


if __name__ == "__main__":
    main()
