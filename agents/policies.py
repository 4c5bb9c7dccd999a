"""Policy specs: the strings ``offload-rl evaluate --policies`` accepts, resolved to objects.

* a heuristic name (:data:`offload_rl.heuristics.HEURISTIC_NAMES`): ``greedy-ewma-always``;
* on a scenario with a ``cell:`` section, a cell heuristic name
  (:data:`offload_rl.cell_heuristics.CELL_HEURISTIC_NAMES`): ``greedy``, ``greedy-externality``,
  ``thermal-mpc``, ``lyapunov``, each with ``+lru`` (the default) or ``+gdsf``, built with the
  shipped tuned parameters; there ``greedy`` is the cell's greedy, and the single-device one is
  ``greedy-ewma-always``;
* ``shipped``: the policy the package ships for the scenario (``cell.onnx`` on a scenario with a
  ``cell:`` section, ``default.onnx`` otherwise; :mod:`serving.shipped`), loaded as ``onnx:``;
* ``oracle``: the hindsight reference, not deployable (:mod:`agents.oracle`; on a scenario with
  a ``cell:`` section :mod:`agents.cell_oracle`, a lookahead with ``greedy`` as base policy);
* ``<prefix>:<path>``: a policy loaded by a registered loader, e.g. ``onnx:model.onnx`` or
  ``sb3:run/best_model.zip`` (``ppo:`` is the same loader). Modules that can load a kind of
  file call :func:`register_policy_loader` when imported. A loader must be a module-level
  function (it is sent to worker processes by reference when evaluation runs in parallel).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from agents.cell_oracle import CellOraclePolicy
from agents.oracle import OraclePolicy
from offload_rl.cell_heuristics import (
    CELL_HEURISTIC_NAMES,
    is_cell_heuristic_name,
    make_cell_heuristic,
)
from offload_rl.errors import ConfigError, OffloadRLError
from offload_rl.heuristics import HEURISTIC_NAMES, Policy, make_heuristic
from offload_rl.scenario import Scenario
from serving.shipped import SHIPPED_POLICY_NAME, shipped_policy_path

PolicyLoader = Callable[[str, Scenario], Policy]

BUILTIN_LOADERS: dict[str, tuple[str, str]] = {
    "onnx": ("serving.policy_runtime", "load_onnx_policy"),
    "sb3": ("agents.sb3_policy", "load_sb3_policy"),
    "ppo": ("agents.sb3_policy", "load_sb3_policy"),  # the same: a trained run's model
}
"""Where the loaders of the known prefixes live: imported on first use (they pull in
onnxruntime or torch), then registered. A registered loader always wins."""

KNOWN_PREFIXES: tuple[str, ...] = tuple(BUILTIN_LOADERS)

_LOADERS: dict[str, PolicyLoader] = {}


AnyPolicy = Policy | OraclePolicy | CellOraclePolicy
"""What the harness runs: a deployable policy (``act``) or a hindsight one (``act_env``)."""


def _builtin_loader(prefix: str, path: str) -> PolicyLoader:
    """Import the module that holds a known prefix's loader; a clear error if it cannot."""
    module_name, function = BUILTIN_LOADERS[prefix]
    try:
        module = importlib.import_module(module_name)
        loader: PolicyLoader = getattr(module, function)
    except (ImportError, AttributeError) as err:
        raise ConfigError(
            f"no loader for {prefix}: {path} (its loader {module_name}.{function} is not "
            f"available: {err})"
        ) from None
    _LOADERS.setdefault(prefix, loader)
    return _LOADERS[prefix]


def register_policy_loader(prefix: str, loader: PolicyLoader) -> None:
    """Make ``<prefix>:<path>`` specs load with ``loader(path, scenario)``."""
    prefix = prefix.strip().lower().rstrip(":")
    if not prefix or ":" in prefix:
        raise ValueError(f"invalid policy loader prefix {prefix!r}")
    _LOADERS[prefix] = loader


def policy_loaders() -> dict[str, PolicyLoader]:
    """The registered loaders (a copy; evaluation sends it to worker processes)."""
    return dict(_LOADERS)


def valid_policy_names() -> list[str]:
    """What :func:`resolve_policy` accepts, for messages and ``--help``."""
    prefixes = sorted(set(KNOWN_PREFIXES) | set(_LOADERS))
    cell_only = [n for n in CELL_HEURISTIC_NAMES if n not in HEURISTIC_NAMES]
    named = [SHIPPED_POLICY_NAME, "oracle"]
    return [*HEURISTIC_NAMES, *cell_only, *named, *(f"{p}:PATH" for p in prefixes)]


def is_deployable(policy: object) -> bool:
    """False for hindsight policies (they read the future from the environment)."""
    return bool(getattr(policy, "deployable", True)) and not hasattr(policy, "act_env")


def resolve_policy(spec: str, scenario: Scenario, seed: int = 0) -> AnyPolicy:
    """The policy object of a spec string; unknown names are :class:`ConfigError`."""
    text = spec.strip()
    if not text:
        raise ConfigError("empty policy name")
    if ":" in text:
        prefix, path = text.split(":", 1)
        prefix = prefix.strip().lower()
        loader = _LOADERS.get(prefix)
        if loader is None and prefix in BUILTIN_LOADERS:
            loader = _builtin_loader(prefix, path)
        if loader is None:
            known = ", ".join(sorted(set(KNOWN_PREFIXES) | set(_LOADERS)))
            raise ConfigError(f"no loader for {prefix}: {path} (known prefixes: {known})")
        try:
            return loader(path, scenario)
        except OffloadRLError:
            raise
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load policy {text!r}: {err}") from None
    name = text.lower()
    if name == SHIPPED_POLICY_NAME:
        return _shipped(scenario)
    if name == "oracle":
        if scenario.cell is not None:
            base = resolve_policy("greedy", scenario, seed=seed)
            return CellOraclePolicy(cast(Policy, base))
        return OraclePolicy()
    if is_cell_heuristic_name(name) and (scenario.cell is not None or name not in HEURISTIC_NAMES):
        return make_cell_heuristic(name, scenario)
    if name in HEURISTIC_NAMES:
        return make_heuristic(name, scenario, seed=seed)
    raise ConfigError(f"unknown policy {text!r}; valid names: {', '.join(valid_policy_names())}")


def _shipped(scenario: Scenario) -> Policy:
    """The shipped policy of ``scenario`` (cell or single device), through the ``onnx`` loader."""
    cell = scenario.cell is not None
    path = shipped_policy_path(cell=cell)
    if path is None:
        kind = "cell" if cell else "single-device"
        raise ConfigError(
            f"--policies {SHIPPED_POLICY_NAME}: this installation ships no {kind} policy "
            "(offload_rl/data/policies/ is missing its file)"
        )
    return cast(Policy, resolve_policy(f"onnx:{path}", scenario))
