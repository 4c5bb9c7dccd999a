"""Training configs: one YAML file says what to train on, how long, and with which PPO settings.

Every key is validated on load (unknown keys are errors too); errors are
:class:`~offload_rl.errors.ConfigError` naming the file and the dotted key
(``experiments/configs/x.yaml: ppo.batch_size: ...``). Relative paths (the scenario, trace
files, folders and globs) are relative to the config file, so ``../../../shared/traces/nyc-lte``
works from ``experiments/configs/``.

``extends: other.yaml`` (relative to the file that says it) starts from another config and
changes only the keys given: mappings (``ppo``, ``warm_start``...) merge key by key, anything
else (lists included) replaces the inherited value, and ``null`` resets it. Configs that differ
in one line then state that line only, and a change to the shared settings reaches every run.
The chain is resolved before validation, so a config validates as the merged mapping; an error
names the file that wrote the offending key, and a cycle is an error naming the chain. Relative
paths written in an inherited file stay relative to that file.

Trace selection, from the config alone (nothing is random at run time):

* ``traces`` replaces the scenario's link traces for training. Each entry is a file, a folder
  (a family: its name is the folder's) or a glob, with the uplink scaling that applies to it:
  a downlink family standing in for the uplink must state ``uplink_scale``.
* ``trace_split`` splits the files of each family into train and test: files are ordered by
  ``crc32(f"{seed}:{file name}")`` and the first ``round(test_share * n)`` (at least one, never
  all) are held out. The rule depends on file names only, so adding a family never moves
  another family's split; the run writes the two lists to ``OUT/trace_split.json``.
* ``trace_split.validation_share`` makes the split three-way: the held-out files stay a test
  set that training never reads (the results tables evaluate on them), and that share of each
  family's *remaining* files (the same crc32 order, next in line) is the validation set that
  picks ``best/``. ``OUT/trace_split.json`` then lists ``train``, ``validation`` and ``test``.
* ``validation_traces`` names the validation traces explicitly (e.g. an unseen family for a
  leave-one-family-out run); without it, validation uses the held-out files of ``trace_split``,
  or else the training traces (with other offsets and workload seeds).
* ``synthetic_seeds`` (no ``traces``: the scenario's synthetic presets) draws the training and
  the validation links from their own seeds, disjoint from the seeds ``0 .. n-1`` that
  ``offload-rl evaluate`` draws: the same split without ``../shared``.
"""

from __future__ import annotations

import glob
import zlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from offload_rl.errors import ConfigError, OffloadRLError
from offload_rl.heuristics import HEURISTIC_NAMES
from offload_rl.scenario import SYNTHETIC_PREFIX, Scenario, TraceSource, load_scenario
from offload_rl.traces import trace_files

ORACLE = "oracle"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TraceEntry(_Strict):
    """A trace file, folder or glob, and the scaling that turns it into the link's capacity."""

    source: str
    direction: Literal["uplink", "downlink"] = "uplink"
    uplink_scale: float | None = Field(
        None, gt=0.0, description="uplink capacity = scale x trace (default: top-level value)"
    )
    downlink_scale: float = Field(1.0, gt=0.0)


class TraceSplit(_Strict):
    """Hold out a share of every family's trace files for validation (or, with
    ``validation_share``, as a test set, and validate on a share of the rest)."""

    test_share: float = Field(0.25, gt=0.0, lt=1.0)
    seed: int = 0
    validation_share: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="share of each family's remaining files validated on (the held-out: test)",
    )


class SyntheticSeeds(_Strict):
    """First seeds of the synthetic presets' training and validation links."""

    train: int = Field(ge=1, description="training links: seeds train .. train + n - 1")
    validation: int = Field(ge=1, description="validation links: seeds validation .. + n - 1")


class PPOConfig(_Strict):
    """MaskablePPO hyper-parameters (SB3 names and meanings)."""

    n_steps: int = Field(256, ge=2, description="steps per env per rollout")
    batch_size: int = Field(256, ge=2)
    n_epochs: int = Field(10, ge=1)
    learning_rate: float = Field(3e-4, gt=0.0)
    lr_schedule: Literal["constant", "linear"] = "constant"
    gamma: float = Field(0.99, ge=0.0, le=1.0)
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0)
    ent_coef: float = Field(0.0, ge=0.0)
    clip_range: float = Field(0.2, gt=0.0)
    vf_coef: float = Field(0.5, ge=0.0)
    max_grad_norm: float = Field(0.5, gt=0.0)
    gamma_per_second: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description=(
            "EdgeCell-v0: discount per second of elapsed time; the discount between decisions "
            "t and t+1 is gamma_per_second ** info['dt'] (replaces gamma)"
        ),
    )
    half_life_s: float | None = Field(
        None,
        gt=0.0,
        description="EdgeCell-v0: the same as a half-life: gamma_per_second = 0.5 ** (1 / h)",
    )
    net_arch: list[int] = Field(default_factory=lambda: [64, 64], min_length=1)
    activation: Literal["tanh", "relu"] = "tanh"
    init_keep_logit: float = Field(
        0.0,
        description=(
            "added to the initial logit of every 'keep' action: a prior towards keeping the "
            "session's KV (free when deciding; its pay-off comes turns later, beyond what a "
            "short discount horizon credits)"
        ),
    )

    @field_validator("net_arch")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        if any(w < 1 for w in v):
            raise ValueError("layer widths must be >= 1")
        return v

    @model_validator(mode="after")
    def _one_time_discount(self) -> PPOConfig:
        if self.gamma_per_second is not None and self.half_life_s is not None:
            raise ValueError("give either gamma_per_second or half_life_s, not both")
        return self

    def discount_per_second(self) -> float | None:
        """The discount per second of elapsed time (``None``: discount per step by ``gamma``)."""
        if self.half_life_s is not None:
            return float(0.5 ** (1.0 / self.half_life_s))
        return self.gamma_per_second


class WarmStartConfig(_Strict):
    """Clone a reference policy into the fresh agent before PPO (:mod:`agents.warm_start`)."""

    policy: str = Field("greedy", description="heuristic name, or oracle (hindsight imitation)")
    steps: int = Field(100_000, ge=1, description="requests of demonstrations")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(512, ge=2)
    learning_rate: float = Field(1e-3, gt=0.0)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, v: str) -> str:
        name = v.strip().lower()
        if name != ORACLE and not _is_heuristic(name):
            raise ValueError(f"unknown policy {name!r}; valid: oracle or a heuristic name")
        return name


class NormalizeConfig(_Strict):
    """VecNormalize: observation statistics are saved with the model and used at serve time."""

    obs: bool = True
    reward: bool = False
    clip_obs: float = Field(10.0, gt=0.0)
    clip_reward: float = Field(10.0, gt=0.0)


class TrainConfig(_Strict):
    """A whole training run."""

    scenario: str = "default"
    traces: list[TraceEntry | str] | None = Field(None, min_length=1)
    validation_traces: list[TraceEntry | str] | None = Field(None, min_length=1)
    trace_split: TraceSplit | None = None
    synthetic_seeds: SyntheticSeeds | None = None
    uplink_scale: float | None = Field(
        None, gt=0.0, description="default uplink scale of trace entries that state none"
    )
    episode_requests: int | None = Field(None, ge=1, description="default: the scenario's")
    total_timesteps: int = Field(200_000, ge=1)
    n_envs: int = Field(4, ge=1, le=64)
    vec_env: Literal["subproc", "dummy"] = "subproc"
    trace_sampling: Literal["family", "trace"] = Field(
        "family",
        description="training episodes draw a family uniformly, then a trace (or a trace)",
    )
    keep_credit: bool = Field(
        False,
        description=(
            "train on the scenario's reward with reward.keep_credit on (a keep is credited at "
            "once with the hit it makes possible; validation uses the plain reward)"
        ),
    )
    warm_start: WarmStartConfig | None = None
    seed: int = 0
    torch_threads: int = Field(1, ge=1)
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    checkpoint_every: int = Field(50_000, ge=1, description="env steps between checkpoints")
    eval_every: int = Field(25_000, ge=1, description="env steps between validation runs")
    eval_episodes: int = Field(4, ge=1, description="validation episodes per trace family")
    eval_seed: int = Field(12345, description="seed of the validation episode set")
    eval_requests: int | None = Field(None, ge=1, description="default: episode_requests")
    heuristics: list[str] = Field(
        default_factory=lambda: ["local", "edge", "cloud", "greedy", "random", ORACLE]
    )
    base_dir: str | None = Field(None, exclude=True, description="folder of the config file")
    config_file: str | None = Field(None, exclude=True, description="for error messages")

    @field_validator("heuristics")
    @classmethod
    def _known_heuristics(cls, v: list[str]) -> list[str]:
        names = [n.strip().lower() for n in v]
        for name in names:
            if name != ORACLE and not _is_heuristic(name):
                raise ValueError(
                    f"unknown heuristic {name!r}; valid: oracle, "
                    f"{', '.join(n for n in HEURISTIC_NAMES if n.count('-') == 0)} "
                    "and their -<estimator>-<cache rule> variants, and the cell heuristics"
                )
        if len(set(names)) != len(names):
            raise ValueError("a heuristic is listed twice")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        rollout = self.ppo.n_steps * self.n_envs
        if self.ppo.batch_size > rollout:
            raise ValueError(
                f"ppo.batch_size {self.ppo.batch_size} exceeds the rollout size "
                f"n_steps x n_envs = {rollout}"
            )
        if self.trace_split is not None and self.traces is None:
            raise ValueError("trace_split needs traces (the files to split)")
        if self.trace_split is not None and self.validation_traces is not None:
            raise ValueError("give either trace_split or validation_traces, not both")
        if self.synthetic_seeds is not None and (
            self.traces is not None or self.validation_traces is not None
        ):
            raise ValueError(
                "synthetic_seeds draws the scenario's synthetic presets: it takes no "
                "traces or validation_traces"
            )
        return self

    # -- paths ----------------------------------------------------------------------------
    def resolve_path(self, path: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(path).expanduser()
        if not p.is_absolute() and self.base_dir is not None:
            p = Path(self.base_dir) / p
        return p

    def scenario_ref(self) -> str:
        """The scenario as an embedded name or an absolute path."""
        s = self.scenario
        return str(self.resolve_path(s).resolve()) if _is_scenario_path(s) else s

    def resolved(self) -> TrainConfig:
        """A copy whose paths are absolute: what ``OUT/config.yaml`` holds (loadable anywhere)."""

        def fix(entries: list[TraceEntry | str] | None) -> list[TraceEntry | str] | None:
            if entries is None:
                return None
            return [
                e.model_copy(update={"source": self._abs(e.source)})
                for e in (_entry(x) for x in entries)
            ]

        return self.model_copy(
            update={
                "scenario": self.scenario_ref(),
                "traces": fix(self.traces),
                "validation_traces": fix(self.validation_traces),
            }
        )

    def _abs(self, path: str) -> str:
        p = self.resolve_path(path)
        # keep glob characters intact: only normalise the folder part
        return str(p.parent.resolve() / p.name) if glob.has_magic(str(p)) else str(p.resolve())

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)

    # -- scenarios --------------------------------------------------------------------------
    def base_scenario(self) -> Scenario:
        """The scenario with ``episode_requests`` applied (traces as the scenario has them)."""
        try:
            sc = load_scenario(self.scenario_ref())
        except ConfigError as err:
            raise ConfigError(f"{self._source()}: scenario: {err}") from None
        if self.episode_requests is not None:
            episode = sc.episode.model_copy(update={"requests": self.episode_requests})
            sc = sc.model_copy(update={"episode": episode})
        return sc

    def trace_sets(self) -> tuple[list[TraceSource] | None, list[TraceSource] | None]:
        """Train and validation trace sources (``None``: the scenario's own)."""
        train = self._expand("traces", self.traces) if self.traces is not None else None
        val = (
            self._expand("validation_traces", self.validation_traces)
            if self.validation_traces is not None
            else None
        )
        if self.trace_split is not None and train is not None:
            train, val = split_by_family(train, self.trace_split)
            share = self.trace_split.validation_share
            if share is not None:
                inner = TraceSplit(test_share=share, seed=self.trace_split.seed)
                train, val = split_by_family(train, inner)
        return train, val

    def test_sources(self) -> list[TraceSource] | None:
        """The held-out test files of a three-way ``trace_split`` (``None`` without one):
        files that neither training nor validation reads."""
        split = self.trace_split
        if split is None or split.validation_share is None or self.traces is None:
            return None
        return split_by_family(self._expand("traces", self.traces), split)[1]

    def scenarios(self) -> tuple[Scenario, Scenario]:
        """The training scenario and the validation scenario."""
        base = self.base_scenario()
        self.check_environment(base)
        train, val = self.trace_sets()
        train_sc = _with_sources(base, train) if train is not None else base
        val_sc = _with_sources(base, val) if val is not None else train_sc
        if self.synthetic_seeds is not None:
            train_sc = self._synthetic_from(base, self.synthetic_seeds.train)
            val_sc = self._synthetic_from(base, self.synthetic_seeds.validation)
        if self.eval_requests is not None:
            episode = val_sc.episode.model_copy(update={"requests": self.eval_requests})
            val_sc = val_sc.model_copy(update={"episode": episode})
        if self.keep_credit:
            reward = train_sc.reward.model_copy(update={"keep_credit": True})
            train_sc = train_sc.model_copy(update={"reward": reward})
        return train_sc, val_sc

    def _synthetic_from(self, scenario: Scenario, first_seed: int) -> Scenario:
        """``scenario`` drawing its synthetic presets from ``first_seed``; a recorded source
        there is an error (its files are split with ``traces`` and ``trace_split`` instead)."""
        recorded = [s.source for s in scenario.network.sources() if not _is_synthetic(s.source)]
        if recorded:
            raise ConfigError(
                f"{self._source()}: synthetic_seeds: scenario {scenario.name!r} names recorded "
                f"traces ({recorded[0]}); split them with traces and trace_split"
            )
        network = scenario.network.model_copy(update={"synthetic_first_seed": first_seed})
        return scenario.model_copy(update={"network": network})

    def is_cell(self) -> bool:
        """Whether the scenario has a ``cell:`` section: training runs on EdgeCell-v0."""
        return self.base_scenario().cell is not None

    def check_environment(self, scenario: Scenario) -> None:
        """Keys that only one of the two environments understands, checked against the
        scenario (the file and the key named): EdgeCell-v0 is continuing and decides at
        irregular times, so it discounts by elapsed time and has no hindsight reference yet."""
        src = self._source()
        per_s = self.ppo.discount_per_second()
        if scenario.cell is None:
            if per_s is not None:
                key = "half_life_s" if self.ppo.half_life_s is not None else "gamma_per_second"
                raise ConfigError(
                    f"{src}: ppo.{key}: scenario {scenario.name!r} has no 'cell:' section; "
                    "SplitCache-v0 steps are not timed: discount per step with ppo.gamma"
                )
            return
        if per_s is None:
            raise ConfigError(
                f"{src}: ppo.half_life_s: scenario {scenario.name!r} is a cell (EdgeCell-v0, "
                "decisions at irregular times): give ppo.half_life_s or ppo.gamma_per_second"
            )
        if self.keep_credit:
            raise ConfigError(
                f"{src}: keep_credit: SplitCache-v0 only; the cell has no keep credit"
            )
        hindsight = [name for name in self.heuristics if name == ORACLE]
        if hindsight:
            raise ConfigError(
                f"{src}: heuristics: {ORACLE} reads SplitCache-v0's future and has no cell "
                "version here; list deployable heuristics only"
            )
        if self.warm_start is not None and self.warm_start.policy == ORACLE:
            raise ConfigError(
                f"{src}: warm_start.policy: {ORACLE} has no cell version here; clone a heuristic"
            )

    def _source(self) -> str:
        return self.config_file or "config"

    def _expand(self, key: str, entries: list[TraceEntry | str]) -> list[TraceSource]:
        """One :class:`TraceSource` per file, with absolute paths and effective scaling."""
        out: list[TraceSource] = []
        for i, raw in enumerate(entries):
            entry = _entry(raw)
            scale = entry.uplink_scale if entry.uplink_scale is not None else self.uplink_scale
            if entry.direction == "downlink" and scale is None:
                raise ConfigError(
                    f"{self._source()}: {key}.{i}.uplink_scale: {entry.source} is a downlink "
                    "trace standing in for the uplink: state the uplink_scale applied "
                    "(e.g. 0.22 for LTE)"
                )
            path = self.resolve_path(entry.source)
            try:
                if glob.has_magic(str(path)):
                    files = sorted(Path(f) for f in glob.glob(str(path)) if Path(f).is_file())
                    if not files:
                        raise ConfigError(f"{key}.{i}.source: no file matches {path}")
                elif path.is_dir():
                    files = trace_files(path)
                elif path.is_file():
                    files = [path]
                else:
                    raise ConfigError(f"{key}.{i}.source: {path} does not exist")
            except ConfigError as err:
                raise ConfigError(f"{self._source()}: {err}") from None
            except OffloadRLError as err:
                raise ConfigError(f"{self._source()}: {key}.{i}.source: {err}") from None
            for f in files:
                out.append(
                    TraceSource(
                        source=str(f.resolve()),
                        direction=entry.direction,
                        uplink_scale=1.0 if scale is None else scale,
                        downlink_scale=entry.downlink_scale,
                    )
                )
        return out


def _is_heuristic(name: str) -> bool:
    """A single-device heuristic name or a cell heuristic's (``lyapunov``, ``greedy+gdsf``...)."""
    from offload_rl.cell_heuristics.names import is_cell_heuristic_name

    return name in HEURISTIC_NAMES or is_cell_heuristic_name(name)


def _is_synthetic(source: str) -> bool:
    return source.startswith(SYNTHETIC_PREFIX)


def _is_scenario_path(scenario: str) -> bool:
    """A scenario given as a file (rather than an embedded name)."""
    return Path(scenario).suffix in (".yaml", ".yml") or "/" in scenario


def _entry(raw: TraceEntry | str) -> TraceEntry:
    return TraceEntry(source=raw) if isinstance(raw, str) else raw


def _with_sources(scenario: Scenario, sources: list[TraceSource]) -> Scenario:
    network = scenario.network.model_copy(update={"traces": list(sources)})
    return scenario.model_copy(update={"network": network})


def split_by_family(
    sources: list[TraceSource], split: TraceSplit
) -> tuple[list[TraceSource], list[TraceSource]]:
    """Train and test files of every family (a family = the folder a file lies in).

    Files are ordered by ``crc32(f"{seed}:{name}")``; the first ``round(share * n)`` (at least
    1, at most ``n - 1``; none of a one-file family) are held out. Order within each part
    follows the input.
    """
    by_family: dict[str, list[TraceSource]] = {}
    for s in sources:
        by_family.setdefault(Path(s.source).parent.name, []).append(s)
    test_ids: set[int] = set()
    for members in by_family.values():
        n = len(members)
        if n < 2:
            continue
        k = min(max(round(split.test_share * n), 1), n - 1)
        order = sorted(
            members, key=lambda s: zlib.crc32(f"{split.seed}:{Path(s.source).name}".encode())
        )
        test_ids.update(id(s) for s in order[:k])
    train = [s for s in sources if id(s) not in test_ids]
    test = [s for s in sources if id(s) in test_ids]
    return train, test


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


EXTENDS = "extends"
_TRACE_KEYS = ("traces", "validation_traces")

# One layer of a config: the file and its mapping (the ``extends`` key removed).
Layer = tuple[str, dict[str, Any]]


def _format_error(source: str, err: ValidationError, layers: list[Layer] | None = None) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    if layers:
        source = _key_origin(first["loc"], layers) or source
    return f"{source}: {key}: {msg}{more}"


def _key_origin(loc: tuple[str | int, ...], layers: list[Layer]) -> str | None:
    """The file that wrote the value at ``loc``: the deepest match, the nearest file on ties.

    ``layers`` runs from the file that was loaded to the root of its ``extends`` chain. Lists
    are replaced whole, so the search stops at a list.
    """
    best: str | None = None
    best_depth = 0
    for name, data in layers:
        node: Any = data
        depth = 0
        for part in loc:
            if not (isinstance(node, dict) and part in node):
                break
            node = node[part]
            depth += 1
            if not isinstance(node, dict):
                break
        if depth > best_depth:
            best, best_depth = name, depth
    return best


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: mappings merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in child.items():
        inherited = out.get(key)
        if isinstance(value, dict) and isinstance(inherited, dict):
            value = _merge(inherited, value)
        out[key] = value
    return out


def _read_mapping(p: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; errors name the file (and the line for bad YAML)."""
    if not p.is_file():
        raise ConfigError(f"{p}: training config not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{line}: not valid YAML") from None
    except OSError as err:
        raise ConfigError(f"{p}: cannot read: {err.strerror or err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def _rebase(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` with its relative paths made absolute against ``folder`` (an inherited file's
    paths mean what they meant where they were written)."""
    out = dict(data)
    scenario = out.get("scenario")
    if isinstance(scenario, str) and _is_scenario_path(scenario):
        out["scenario"] = str(folder / Path(scenario).expanduser())
    for key in _TRACE_KEYS:
        entries = out.get(key)
        if not isinstance(entries, list):
            continue
        fixed: list[Any] = []
        for entry in entries:
            if isinstance(entry, str):
                entry = str(folder / Path(entry).expanduser())
            elif isinstance(entry, dict) and isinstance(entry.get("source"), str):
                entry = {**entry, "source": str(folder / Path(entry["source"]).expanduser())}
            fixed.append(entry)
        out[key] = fixed
    return out


def _layers(path: Path) -> list[Layer]:
    """``path`` and the files it extends, nearest first (a missing file or a cycle is an error)."""
    layers: list[Layer] = []
    seen: list[Path] = []
    p = path
    while True:
        data = _read_mapping(p)
        seen.append(p.resolve())
        parent = data.pop(EXTENDS, None)
        if p.resolve().parent != path.resolve().parent:
            data = _rebase(data, p.resolve().parent)
        layers.append((str(p), data))
        if parent is None:
            return layers
        if not isinstance(parent, str) or not parent.strip():
            raise ConfigError(f"{p}: {EXTENDS}: expected a file name, got {parent!r}")
        nxt = p.parent / Path(parent).expanduser()
        if nxt.resolve() in seen:
            chain = " -> ".join(s.name for s in [*seen, nxt.resolve()])
            raise ConfigError(f"{p}: {EXTENDS}: {parent} makes a cycle ({chain})")
        if not nxt.is_file():
            raise ConfigError(f"{p}: {EXTENDS}: {nxt} not found")
        p = nxt


def train_config_from_dict(
    data: object,
    source: str = "config",
    base_dir: str | None = None,
    layers: list[Layer] | None = None,
) -> TrainConfig:
    """Validate a parsed mapping; errors name ``source`` (or the layer that wrote the key) and
    the dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return TrainConfig.model_validate({**data, "base_dir": base_dir, "config_file": source})
    except ValidationError as err:
        raise ConfigError(_format_error(source, err, layers)) from None


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Load a training config YAML with its ``extends`` chain; ``overrides`` (e.g.
    ``total_timesteps``) are validated too."""
    p = Path(path)
    layers = _layers(p)
    data: dict[str, Any] = {}
    for _, layer in reversed(layers):
        data = _merge(data, layer)
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return train_config_from_dict(data, str(p), str(p.resolve().parent), layers)
