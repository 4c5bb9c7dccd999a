"""The live policy of the decision service: an ONNX policy, a heuristic fallback, and hot swap.

Every decision goes through the shared encoder and mask (:mod:`offload_rl.features`), so the
service sees exactly the vectors the environment produced in training. A policy file is loaded
and validated off to the side and then swapped in with one reference assignment: a request
takes the live policy once and finishes on it, and a file that fails validation never replaces
a working policy. Whatever the policy says, a masked action is never returned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # must precede the onnxruntime import

import numpy as np
import onnxruntime as ort

from offload_rl.actions import ActionLayout
from offload_rl.cost_model import tier_of
from offload_rl.features import (
    DecisionState,
    FeatureSpec,
    StateLike,
    action_masks,
    as_decision_state,
    encode_observation,
    encode_observations,
    shared_action_mask,
)
from offload_rl.heuristics import Policy, make_heuristic
from offload_rl.scenario import Scenario, load_scenario
from offload_rl.scenario_facts import policy_feature_spec, scenario_facts
from serving.policy_file import (
    INPUT_MASK,
    INPUT_OBS,
    OUTPUT_ACTION,
    PolicyFileError,
    PolicyMetadata,
    load_policy_model,
    validate_policy_model,
)
from serving.polling import IntervalThread

log = logging.getLogger("offload_rl.serving")

FALLBACK_HEURISTIC = "greedy"
MAX_BOUND_BATCH = 16  # batches up to this size run through bound buffers


def session_options() -> ort.SessionOptions:
    """One thread, no spinning: a per-request service must not burn a core while idle."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class _Binding:
    """Bound input and output buffers for runs of ``n`` rows (one per thread and size):
    onnxruntime reads and writes them in place, which skips a third of the cost of
    ``InferenceSession.run`` for small batches."""

    def __init__(self, session: ort.InferenceSession, spec: FeatureSpec, n: int) -> None:
        self.obs = np.zeros((n, spec.obs_dim), dtype=np.float32)
        self.mask = np.zeros((n, spec.layout.n_actions), dtype=bool)
        self.out = np.zeros(n, dtype=np.int64)
        self.io = session.io_binding()
        self.io.bind_cpu_input(INPUT_OBS, self.obs)
        self.io.bind_cpu_input(INPUT_MASK, self.mask)
        self.io.bind_output(OUTPUT_ACTION, "cpu", 0, np.int64, [n], self.out.ctypes.data)


class OnnxPolicy:
    """An exported policy file, validated against ``spec`` and ready to run.

    Also satisfies :class:`offload_rl.heuristics.Policy` (``act``), so evaluation can run it.
    """

    deployable = True

    def __init__(self, data: bytes, path: str | Path, spec: FeatureSpec | None = None) -> None:
        """Validate ``data`` (the bytes of the file at ``path``) and open a session on it."""
        self.path = str(path)
        model = load_policy_model(data, self.path)
        try:
            self.metadata: PolicyMetadata = validate_policy_model(model, spec)
        except PolicyFileError as err:
            raise PolicyFileError(f"{path}: {err}") from None
        self.spec = self.metadata.spec
        self.layout: ActionLayout = self.spec.layout
        self.version = self.metadata.version
        self.name = f"onnx:{Path(path).name}"
        self.loaded_at = time.time()
        self._local = threading.local()  # per-thread {rows: _Binding}
        self._bound = False  # small batches run through bound buffers (set by the smoke test)
        try:
            self.session = ort.InferenceSession(
                data, sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise PolicyFileError(f"{path}: onnxruntime refuses the graph ({err})") from None
        self._smoke_test()

    @classmethod
    def from_file(cls, path: str | Path, spec: FeatureSpec | None = None) -> OnnxPolicy:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise PolicyFileError(f"{path}: cannot read ({err.strerror or err})") from None
        return cls(data, path, spec)

    def _smoke_test(self) -> None:
        """Run a batch of two (all valid; only "device, drop" valid) before serving."""
        n = self.layout.n_actions
        obs = np.full((2, self.spec.obs_dim), 0.5, dtype=np.float32)
        mask = np.ones((2, n), dtype=bool)
        mask[1] = False
        only = self.layout.encode(self.spec.n_layers, 0)
        mask[1, only] = True
        try:
            actions = self.run(obs, mask)
        except Exception as err:
            raise PolicyFileError(f"{self.path}: test inference failed ({err})") from None
        if actions.shape != (2,) or int(actions[1]) != only or not mask[0, int(actions[0])]:
            raise PolicyFileError(f"{self.path}: test inference returned a masked action")
        # the bound path must agree with the plain one, else it stays off
        try:
            self._bound = True
            bound = [int(a) for i in range(2) for a in self.run(obs[i : i + 1], mask[i : i + 1])]
            bound += [int(a) for a in self.run(obs, mask)]
        except Exception as err:  # onnxruntime raises its own exception types
            log.warning("%s: bound runs unavailable (%s)", self.path, err)
            bound = []
        self._bound = bound == [int(a) for a in actions] * 2

    def run(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Actions (int64 ``[batch]``) for raw observations and masks."""
        n = len(obs)
        if self._bound and 0 < n <= MAX_BOUND_BATCH:
            bindings: dict[int, _Binding] | None = getattr(self._local, "bindings", None)
            if bindings is None:
                bindings = self._local.bindings = {}
            b = bindings.get(n)
            if b is None:
                b = bindings[n] = _Binding(self.session, self.spec, n)
            b.obs[...] = obs
            b.mask[...] = mask
            self.session.run_with_iobinding(b.io)
            return b.out.copy()
        out = self.session.run([OUTPUT_ACTION], {INPUT_OBS: obs, INPUT_MASK: mask})
        return np.asarray(out[0], dtype=np.int64).reshape(-1)

    def reset(self) -> None:
        return None

    def act(self, state: DecisionState, mask: np.ndarray) -> int:
        obs = encode_observation(state, self.spec)
        a = int(self.run(obs[None, :], mask[None, :].astype(bool))[0])
        return a if 0 <= a < len(mask) and mask[a] else self.layout.nearest_valid(a, mask)

    def describe(self) -> dict[str, Any]:
        return {
            "source": "onnx",
            "path": self.path,
            "version": self.version,
            "scenario": self.metadata.scenario,
            "profiles": self.metadata.profiles,
            "loaded_at": self.loaded_at,
        }


def load_onnx_policy(path: str, scenario: Scenario) -> Policy:
    """``onnx:PATH`` loader for :func:`agents.policies.register_policy_loader` (a cell
    scenario's policy encodes the cell's observation)."""
    return OnnxPolicy.from_file(path, policy_feature_spec(scenario))


@dataclass(frozen=True, slots=True)
class Decision:
    """One placement decision as the API returns it (``body``: its JSON, made once)."""

    action: int
    tier_index: int
    keep: bool
    tier: str  # device | edge | split | cloud
    split: int  # layers that run on the device (0 for edge and cloud)
    meaning: str
    policy_version: str
    fallback: bool
    edge_state: str = ""  # fresh | stale | missing; "" (not in the body): no edge adapter
    body: bytes = field(default=b"", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        body = json.dumps(self.as_dict(), separators=(",", ":"), allow_nan=False).encode()
        object.__setattr__(self, "body", body)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "action": self.action,
            "meaning": self.meaning,
            "tier": self.tier,
            "split": self.split,
            "tier_index": self.tier_index,
            "cache": "keep" if self.keep else "drop",
            "keep": self.keep,
            "policy_version": self.policy_version,
            "fallback": self.fallback,
        }
        if self.edge_state:
            out["edge_state"] = self.edge_state
        return out


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    version: str  # the version serving after the attempt
    reason: str = ""
    changed: bool = False


def _file_signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class DecisionRuntime:
    """The live policy (or none) plus the heuristic fallback; thread-safe hot swap.

    ``spec`` is fixed for the life of the service (the scenario's): a policy for another spec
    is rejected, so the meaning of actions never changes under a client.
    """

    def __init__(
        self,
        scenario: str | Scenario = "default",
        policy_path: str | None = None,
        fallback: str = FALLBACK_HEURISTIC,
        last_good_path: str | None = None,
        cell: bool = False,
    ) -> None:
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        spec = scenario_facts(self.scenario).spec
        # cell: policies trained on EdgeCell-v0 (the edge's exact state follows the features)
        self.spec = dataclasses.replace(spec, cell=True) if cell else spec
        self.layout: ActionLayout = self.spec.layout
        self.fallback: Policy = make_heuristic(fallback, self.scenario)
        self.fallback_version = f"heuristic:{self.fallback.name}"
        self.policy_path = policy_path
        self.last_good_path = last_good_path
        self._live: OnnxPolicy | None = None
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self.last_error: str | None = None
        self.last_reload_at: float | None = None
        self.reloads = {"ok": 0, "rejected": 0}
        self._tier_of = [tier_of(t, self.spec.n_layers) for t in range(self.layout.n_tiers)]
        self._meanings = self.layout.meanings()
        # decisions by (version, fallback, edge state), indexed by action: made once, shared
        self._tables: dict[tuple[str, bool, str], list[Decision]] = {}
        if policy_path is not None:
            result = self.reload()
            if not result.ok and last_good_path and os.path.exists(last_good_path):
                self._load_last_good(result.reason)

    # -- policy management -----------------------------------------------------------------
    @property
    def live(self) -> OnnxPolicy | None:
        return self._live

    @property
    def version(self) -> str:
        live = self._live
        return live.version if live is not None else self.fallback_version

    def _load_last_good(self, reason: str) -> None:
        """A restarted worker whose file was rejected keeps serving what the others serve."""
        assert self.last_good_path is not None
        try:
            self._live = OnnxPolicy.from_file(self.last_good_path, self.spec)
            log.warning("serving the last good policy %s: %s", self._live.version[:12], reason)
        except PolicyFileError as err:
            log.warning("last good policy unusable: %s", err)

    def reload(self, path: str | None = None) -> ReloadResult:
        """Load ``path`` (default: the configured file) off to the side and swap it in.

        On any error the live policy stays and the reason is returned (and kept in
        :attr:`last_error`).
        """
        with self._lock:
            target = path or self.policy_path
            self.last_reload_at = time.time()
            if target is None:
                return ReloadResult(False, self.version, "no policy file configured")
            signature = _file_signature(target)
            try:
                candidate = OnnxPolicy.from_file(target, self.spec)
            except PolicyFileError as err:
                self._signature = signature
                self.last_error = str(err)
                self.reloads["rejected"] += 1
                log.warning("policy rejected, still serving %s: %s", self.version[:24], err)
                return ReloadResult(False, self.version, str(err))
            old = self._live
            self._live = candidate  # the swap: one reference assignment
            self._signature = signature
            self.policy_path = target
            self.last_error = None
            self.reloads["ok"] += 1
            self._save_last_good(target, candidate)
            changed = old is None or old.version != candidate.version
            log.info("serving policy %s from %s", candidate.version[:12], target)
            return ReloadResult(True, candidate.version, changed=changed)

    def _save_last_good(self, source: str, policy: OnnxPolicy) -> None:
        if not self.last_good_path or os.path.abspath(source) == os.path.abspath(
            self.last_good_path
        ):
            return
        tmp = f"{self.last_good_path}.{os.getpid()}.tmp"
        try:
            Path(tmp).write_bytes(Path(source).read_bytes())
            os.replace(tmp, self.last_good_path)
        except OSError as err:
            log.warning("cannot keep a copy of the last good policy: %s", err)

    def reload_if_changed(self) -> ReloadResult | None:
        """Reload when the configured file changed since the last attempt (file watch)."""
        if self.policy_path is None:
            return None
        signature = _file_signature(self.policy_path)
        if signature is None or signature == self._signature:
            return None
        return self.reload()

    def describe(self) -> dict[str, Any]:
        live = self._live
        out: dict[str, Any] = {
            "status": "ready" if live is not None else "degraded",
            "version": self.version,
            "source": "onnx" if live is not None else "fallback",
            "fallback": self.fallback.name,
            "scenario": self.scenario.name,
            "policy_path": self.policy_path,
            "last_error": self.last_error,
            "reloads": dict(self.reloads),
        }
        if live is not None:
            out["policy"] = live.describe()
        return out

    # -- decisions -------------------------------------------------------------------------
    def _table(self, version: str, fallback: bool, edge: str = "") -> list[Decision]:
        """The (immutable, cached) decision objects of every action, indexed by action."""
        key = (version, fallback, edge)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) > 64:  # old versions' entries
                self._tables.clear()
            actions = range(self.layout.n_actions)
            table = [self._make_decision(a, version, fallback, edge) for a in actions]
            self._tables[key] = table
        return table

    def _decision(self, action: int, version: str, fallback: bool, edge: str = "") -> Decision:
        """The (immutable, cached) decision object of an action."""
        return self._table(version, fallback, edge)[action]

    def _make_decision(self, action: int, version: str, fallback: bool, edge: str) -> Decision:
        tier_index, keep = action >> 1, action & 1
        L = self.spec.n_layers
        return Decision(
            action=action,
            tier_index=tier_index,
            keep=bool(keep),
            tier=self._tier_of[tier_index],
            split=tier_index if tier_index <= L else 0,
            meaning=self._meanings[action],
            policy_version=version,
            fallback=fallback,
            edge_state=edge,
        )

    def _fallback_action(self, state: StateLike, mask: np.ndarray) -> int:
        a = int(self.fallback.act(as_decision_state(state), mask))
        if not (0 <= a < len(mask) and mask[a]):  # a heuristic must not do this; make sure
            a = self.layout.nearest_valid(a, mask)
        return a

    def decide(self, state: StateLike, edge: str = "", policy: bool = True) -> Decision:
        """One decision (the per-request path, kept lean); never a masked action.

        ``edge``: the edge status the answer reports ("": none); ``policy=False``: the state
        lacks a field the policy reads, so the fallback answers."""
        spec = self.spec
        live = self._live if policy else None  # a request finishes on the policy it took
        mask = shared_action_mask(state, spec)  # read-only here; a copy for the fallback
        if live is not None:
            try:
                a = int(live.run(encode_observation(state, spec)[None, :], mask[None, :])[0])
            except Exception as err:  # a policy that fails at run time: the fallback answers
                log.error("policy %s failed, fallback answers: %s", live.version[:12], err)
                a = -1
            if 0 <= a < len(mask) and mask[a]:
                return self._decision(a, live.version, False, edge)
            if a != -1:
                log.error("policy %s chose masked action %d; fallback answers", live.version, a)
        mask = mask.copy()
        a = self._fallback_action(state, mask)
        assert mask[a], "fallback returned a masked action"
        return self._decision(a, self.fallback_version, True, edge)

    def _valid(self, actions: list[int], masks: np.ndarray) -> list[bool]:
        """Whether each action is in range and allowed by its row of ``masks``."""
        n = self.layout.n_actions
        if len(actions) < 32:
            return [0 <= a < n and bool(masks[i, a]) for i, a in enumerate(actions)]
        chosen = np.asarray(actions, dtype=np.int64)
        inside = (chosen >= 0) & (chosen < n)
        rows = np.arange(len(actions))
        ok: list[bool] = (inside & masks[rows, np.where(inside, chosen, 0)]).tolist()
        return ok

    def decide_many(
        self, states: Sequence[StateLike], edge: str = "", policy: bool = True
    ) -> list[Decision]:
        """Decisions for a batch (one onnxruntime call); never a masked action. The states
        may be request bodies (:class:`~offload_rl.features.StateLike`): no copy needed.
        ``edge`` and ``policy``: as in :meth:`decide`, for every state."""
        spec = self.spec
        live = self._live if policy else None  # the batch finishes on the policy it took
        masks = action_masks(states, spec)
        actions: list[int] | None = None
        if live is not None:
            try:
                chosen = live.run(encode_observations(states, spec), masks)
                actions = np.asarray(chosen, dtype=np.int64).reshape(-1).tolist()
                if len(actions) != len(states):
                    raise ValueError(f"{len(actions)} actions for {len(states)} states")
            except Exception as err:  # a policy that fails at run time: the fallback answers
                log.error("policy %s failed, fallback answers: %s", live.version[:12], err)
                actions = None
        ok = self._valid(actions, masks) if actions is not None else []
        if live is not None and actions is not None and all(ok):
            table = self._table(live.version, False, edge)
            return [table[a] for a in actions]
        out: list[Decision] = []
        for i, state in enumerate(states):
            mask = masks[i]
            if live is not None and actions is not None:
                if ok[i]:
                    out.append(self._decision(actions[i], live.version, False, edge))
                    continue
                log.error(
                    "policy %s chose masked action %d; fallback answers", live.version, actions[i]
                )
            a = self._fallback_action(state, mask)
            assert mask[a], "fallback returned a masked action"
            out.append(self._decision(a, self.fallback_version, True, edge))
        return out


class PolicyWatcher(IntervalThread):
    """Polls the policy file and reloads it when it changes: how a reload reaches every worker
    of a multi-process server (each worker watches on its own)."""

    def __init__(
        self,
        runtime: DecisionRuntime,
        interval_s: float,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(interval_s, "policy-watch")
        self.runtime = runtime
        self.on_change = on_change

    def tick(self) -> None:
        result = self.runtime.reload_if_changed()
        if result is not None and self.on_change is not None:
            self.on_change(result.ok)
