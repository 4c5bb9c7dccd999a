"""Switching one phenomenon of the cell off: a scenario transform per phenomenon, each a physical
statement, for the greedy -> oracle ablation (``experiments/analyses/cell_ablation.py``).

| phenomenon            | switched off means                                                       |
|-----------------------|--------------------------------------------------------------------------|
| ``batching``          | the edge serves one sequence at a time (``cell.max_num_seqs = 1``)       |
| ``kv_pool``           | the edge's KV pool is large enough never to evict or preempt (1 PB)     |
| ``heat``              | devices never heat: the throttle stays at its cold value (``thermal``)  |
| ``radio_tail``        | the radio drops to idle as soon as a transfer ends (tail time 0); the   |
|                       | promotion is kept, so a transfer after any pause pays it again          |
| ``session_correlation`` | a session's turn lengths are drawn independently (correlation 0)      |

Every phenomenon is on in :func:`all_on`: the scenario's own cell with the session correlation
fitted to BurstGPT (``workload.source: default-correlated``) where it uses the default
synthetic workload. Nothing here changes a sourced constant; a switch only removes a mechanism.
"""

from __future__ import annotations

from typing import Any

from offload_rl.errors import ConfigError
from offload_rl.scenario import Scenario

PHENOMENA: tuple[str, ...] = ("batching", "kv_pool", "heat", "radio_tail", "session_correlation")

UNBOUNDED_POOL_BYTES = 1e15
"""1 PB: ~9e9 tokens at 112 KiB each, far more KV than any episode's requests can hold."""

_CORRELATED = "default-correlated"
_INDEPENDENT = "default"


def _cell(scenario: Scenario, **update: Any) -> Scenario:
    if scenario.cell is None:
        raise ConfigError(f"scenario {scenario.name!r} has no 'cell:' section to ablate")
    return scenario.model_copy(update={"cell": scenario.cell.model_copy(update=update)})


def _workload_source(scenario: Scenario, source: str) -> Scenario:
    workload = scenario.workload.model_copy(update={"source": source})
    return scenario.model_copy(update={"workload": workload})


def all_on(scenario: Scenario) -> Scenario:
    """``scenario`` with every phenomenon of :data:`PHENOMENA` on (see the module docstring)."""
    sc = _cell(scenario, batching=True, thermal=True, radio_state_machine=True, radio_tail=True)
    if sc.workload.source == _INDEPENDENT:
        sc = _workload_source(sc, _CORRELATED)
    return sc


def switch_off(scenario: Scenario, phenomenon: str) -> Scenario:
    """``scenario`` with ``phenomenon`` switched off and everything else as it was."""
    if phenomenon == "batching":
        return _cell(scenario, max_num_seqs=1)
    if phenomenon == "kv_pool":
        return _cell(scenario, kv_pool_bytes=UNBOUNDED_POOL_BYTES)
    if phenomenon == "heat":
        return _cell(scenario, thermal=False)
    if phenomenon == "radio_tail":
        return _cell(scenario, radio_tail=False)
    if phenomenon == "session_correlation":
        if scenario.workload.source not in (_CORRELATED, _INDEPENDENT):
            raise ConfigError(
                f"workload.source {scenario.workload.source!r}: a recorded or parameter-file "
                "workload keeps its own lengths; session correlation can be switched off only "
                f"for {_CORRELATED!r}"
            )
        return _workload_source(scenario, _INDEPENDENT)
    raise ConfigError(f"unknown phenomenon {phenomenon!r}; one of {', '.join(PHENOMENA)}")
