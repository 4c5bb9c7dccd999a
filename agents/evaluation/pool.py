"""What both evaluation runners share to run their tasks in a pool of spawned processes.

A worker rebuilds the environment and the policies from a picklable :class:`WorkerConfig`
(policy loaders travel by reference: they are module-level functions), so a task sends only its
indices and episode. Results come back in completion order; the runners assemble them in a
fixed order, which is why results do not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agents.evaluation.progress import ProgressBar
from agents.policies import PolicyLoader, policy_loaders, register_policy_loader
from offload_rl.scenario import Scenario

R = TypeVar("R")


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker process needs to rebuild the environment(s) and the policies."""

    scenario: Scenario
    requests: int
    seed: int
    policies: tuple[str, ...]
    loaders: dict[str, PolicyLoader] = field(default_factory=dict)
    loads: tuple[float, ...] = ()  # the cell's load levels (EdgeCell-v0 only)

    @classmethod
    def for_run(
        cls, scenario: Scenario, specs: Sequence[str], seed: int, loads: Sequence[float] = ()
    ) -> WorkerConfig:
        """The configuration of one evaluation run (with the loaders registered here now)."""
        return cls(
            scenario=scenario,
            requests=scenario.episode.requests,
            seed=seed,
            policies=tuple(specs),
            loaders=policy_loaders(),
            loads=tuple(float(x) for x in loads),
        )

    def register_loaders(self) -> None:
        """Make the parent's policy loaders known in this process."""
        for prefix, loader in self.loaders.items():
            register_policy_loader(prefix, loader)


def run_in_pool(
    task: Callable[..., R],
    tasks: Sequence[tuple[Any, ...]],
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    bar: ProgressBar,
) -> list[R]:
    """``task(*t)`` for every ``t`` of ``tasks`` in ``workers`` spawned processes."""
    results: list[R] = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=initializer, initargs=initargs
    ) as pool:
        pending: set[Future[R]] = {pool.submit(task, *t) for t in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                results.append(fut.result())
                bar.advance()
    return results
