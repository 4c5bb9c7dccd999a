"""Benchmark: EdgeCell-v0 steps per second at N = 8, 32, 128 against CartPole-v1, in one run.

Every environment is unwrapped and driven by a uniformly random *valid* action (the mask is
read, as MaskablePPO reads it); only ``step`` and ``reset`` are timed. Rounds alternate CartPole
and the cell, and the reported ratio is the median of the per-round ratios, so a machine that
slows down during the run slows both sides of each ratio alike. The cell's load is the
scenario's (the fitted per-cell stream shared by the N devices), so the cost that grows with
N is the simulator's bookkeeping (radios settled, devices drawn), not more edge traffic.

Cost per decision is the median round's wall time per step, split into the time between
decisions (inside ``CellSimulator.advance_and_collect``: the edge's iterations, the finished
requests, the token streams and radios, the ledgers' collection; compiled, one kernel call) and
the rest of the step (dispatch, observation, mask, info).

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
--rounds 3`` on the quiet 2-core VM, load average 1.0-1.5, main b200d90, four runs): ratios
0.212-0.234 / 0.178-0.209 / 0.165-0.172 compiled against 0.028-0.030 / 0.023-0.024 / 0.023 Python
at N = 8 / 32 / 128 (0.029-0.032 / 0.032-0.038 / 0.039-0.041 ms per decision compiled); the cell
at 40fb942 in alternating runs 0.128-0.133 / 0.114-0.123 / 0.109-0.115 (0.051-0.052 /
0.055-0.061 / 0.058-0.062 ms). The target 0.25 at N = 32 is not met.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym
import numpy as np

from envs.edge_cell import EdgeCellEnv
from offload_rl.cell import compiled_decode
from offload_rl.cell.simulator import CellRequest, CellSimulator

WARM_UP_STEPS = 50
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
timer = time.perf_counter  # the clock every timing reads (--clock)


def cartpole_rate(steps: int, seed: int) -> float:
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
    return steps / elapsed


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


def cell_rate(env: EdgeCellEnv, steps: int, seed: int) -> tuple[float, float]:
    """Steps per second of the cell, and the share of the timed seconds between decisions."""
    rng = np.random.default_rng(seed)
    with advance_clock() as edge_s:
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
    return steps / elapsed, edge_s[0] / elapsed


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
    print(f"cell: {' and '.join(modes)} (numba: {compiled_decode.AVAILABLE}), {args.clock} clock")
    print(
        "| N | cell steps/s (median) | CartPole steps/s (median) | ratio (median of rounds) "
        "| ms per decision | of which between decisions | rest of the step |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        env = EdgeCellEnv(args.scenario, n_devices=n)
        cell_rate(env, WARM_UP_STEPS, seed=args.rounds)  # untimed: loads the compiled loop
        results: dict[str, tuple[list[float], ...]] = {m: ([], [], [], []) for m in modes}
        for r in range(args.rounds):
            pole = cartpole_rate(args.steps * 10, seed=r)
            for mode in modes:
                cells, poles, ratios, edge_shares = results[mode]
                if mode == "Python" and len(modes) > 1:
                    with python_edge():
                        cell, edge_share = cell_rate(env, args.steps, seed=r)
                else:
                    cell, edge_share = cell_rate(env, args.steps, seed=r)
                cells.append(cell)
                poles.append(pole)
                ratios.append(cell / pole)
                edge_shares.append(edge_share)
        for mode in modes:
            label = f"{n} ({mode})" if len(modes) > 1 else str(n)
            print(row(label, *results[mode]))


if __name__ == "__main__":
    main()
