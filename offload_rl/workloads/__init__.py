"""Request workloads: streams of LLM chat requests grouped into sessions.

The environment draws one stream per episode with ``workload.sample(rng, n)``. A stream is a list
of :class:`Request` sorted by arrival, starting at ``t = 0``, with sessions interleaved as in
reality. Inside a stream three invariants always hold (the KV-cache model relies on them: a
cache entry written after turn ``j-1`` holds exactly the context of turn ``j``):

* turns of a session are numbered ``0, 1, 2, ...`` in arrival order, ``context_tokens`` is 0 at
  turn 0;
* ``context_tokens[j] = min(sum of new + output tokens of turns < j, max_context - new[j])``
  (the session's history, oldest tokens dropped once it no longer fits, see
  :class:`TokenScaling`);
* all lengths are ``>= 1`` (context ``>= 0``) and within the caps of the stream's scaling.

A stream window can begin in the middle of a session. Its first request in the stream becomes
turn 0 and carries the session's earlier history as *new* tokens: the edge has never seen that
history, so the prefill work is the same, and later turns keep their recorded context.

Sources
-------
Each recorded format's reading and session rule is described in its own module.

``default``
    :class:`SyntheticWorkload` with the parameters shipped in
    ``offload_rl/data/workload_default.json`` (``synthetic``, ``params``); lengths independent.
``default-correlated``
    The same with lengths correlated across a session's turns as in BurstGPT
    (:class:`SessionCorrelation`, ``correlation``; ``workload_session_correlation.json``).
a BurstGPT CSV, a Mooncake JSON-lines file, an Azure LLM inference CSV
    :class:`RecordedWorkload` (``recorded``; ``burstgpt``, ``mooncake``, ``azure``).
any CSV or JSON Lines request log with a :class:`FieldMapping`
    :class:`RecordedWorkload` (``mapping``, ``mapped_rows``): the user names the fields;
    ``offload-rl workload inspect`` suggests a mapping.
a YAML/JSON file of :class:`WorkloadParams`
    The synthetic generator with those parameters (keys left out keep the default's).

Modules: ``request`` (the request type, token scaling), ``stream`` (the invariants above),
``distributions``, ``correlation`` and ``params`` (fitted parameters), ``synthetic``, ``rows``
(what every reader shares), one module per recorded format, ``mapping`` and ``mapped_rows`` (any log
through a field mapping), ``survey`` (what ``workload inspect`` sees in a log), ``sessions``
(deriving sessions and new tokens), ``recorded``, ``loading`` (:func:`load_workload`),
``stats`` (:func:`stream_stats`), ``devices`` (one stream per device of a cell, sessions whole:
:class:`SessionReplay`, :class:`SyntheticSessions`). Every public name is importable from
``offload_rl.workloads``.
"""

from offload_rl.workloads.azure import AZURE_COLUMNS, read_azure_csv
from offload_rl.workloads.burstgpt import BURSTGPT_COLUMNS, read_burstgpt_csv
from offload_rl.workloads.correlation import (
    SessionCorrelation,
    correlated_lengths,
    fitted_session_correlation,
)
from offload_rl.workloads.devices import SessionReplay, SyntheticSessions, split_by_device
from offload_rl.workloads.distributions import (
    EmpiricalDist,
    GeometricMixtureTurns,
    LognormalDist,
    PmfTurns,
    PositiveDist,
    TurnsDist,
)
from offload_rl.workloads.loading import (
    SYNTHETIC_NAMES,
    default_correlated_params,
    load_workload,
)
from offload_rl.workloads.mapped_rows import LoadReport, read_mapped_rows
from offload_rl.workloads.mapping import (
    BUILTIN_MAPPINGS,
    TIME_UNITS,
    BlockIdsField,
    FieldMapping,
    Filters,
    TimeField,
    field_mapping_from_dict,
    load_field_mapping,
    mapping_yaml,
)
from offload_rl.workloads.mooncake import (
    MOONCAKE_BLOCK_TOKENS,
    MOONCAKE_KEYS,
    read_mooncake_jsonl,
)
from offload_rl.workloads.params import (
    DEFAULT_PARAMS_RESOURCE,
    PARAMS_SUFFIXES,
    WorkloadParams,
    default_workload_params,
    load_workload_params,
)
from offload_rl.workloads.recorded import (
    WORKLOAD_KINDS,
    RecordedWorkload,
    SessionStream,
    WorkloadKind,
    detect_kind,
)
from offload_rl.workloads.request import (
    UNLIMITED_TOKENS,
    FloatArray,
    IntArray,
    Request,
    TokenScaling,
    Workload,
)
from offload_rl.workloads.rows import RecordedRows
from offload_rl.workloads.sessions import (
    HistorySplit,
    PrefixSessions,
    derive_sessions,
    sessions_from_hash_prefixes,
    sessions_from_labels,
    split_history_included,
    synthesize_sessions,
)
from offload_rl.workloads.stats import stream_stats
from offload_rl.workloads.synthetic import SyntheticWorkload

__all__ = [
    "AZURE_COLUMNS",
    "BUILTIN_MAPPINGS",
    "BURSTGPT_COLUMNS",
    "DEFAULT_PARAMS_RESOURCE",
    "MOONCAKE_BLOCK_TOKENS",
    "MOONCAKE_KEYS",
    "PARAMS_SUFFIXES",
    "SYNTHETIC_NAMES",
    "TIME_UNITS",
    "UNLIMITED_TOKENS",
    "WORKLOAD_KINDS",
    "BlockIdsField",
    "EmpiricalDist",
    "FieldMapping",
    "Filters",
    "FloatArray",
    "GeometricMixtureTurns",
    "HistorySplit",
    "IntArray",
    "LoadReport",
    "LognormalDist",
    "PmfTurns",
    "PositiveDist",
    "PrefixSessions",
    "RecordedRows",
    "RecordedWorkload",
    "Request",
    "SessionCorrelation",
    "SessionReplay",
    "SessionStream",
    "SyntheticSessions",
    "SyntheticWorkload",
    "TimeField",
    "TokenScaling",
    "TurnsDist",
    "Workload",
    "WorkloadKind",
    "WorkloadParams",
    "correlated_lengths",
    "default_correlated_params",
    "default_workload_params",
    "derive_sessions",
    "detect_kind",
    "field_mapping_from_dict",
    "fitted_session_correlation",
    "load_field_mapping",
    "load_workload",
    "load_workload_params",
    "mapping_yaml",
    "read_azure_csv",
    "read_burstgpt_csv",
    "read_mapped_rows",
    "read_mooncake_jsonl",
    "sessions_from_hash_prefixes",
    "sessions_from_labels",
    "split_by_device",
    "split_history_included",
    "stream_stats",
    "synthesize_sessions",
]
