"""Loading a workload by name: ``default`` (or ``default-correlated``), a recorded file, or a
file of parameters."""

from __future__ import annotations

from pathlib import Path

from offload_rl.errors import ConfigError, DataFileError
from offload_rl.workloads.correlation import fitted_session_correlation
from offload_rl.workloads.mapping import FieldMapping
from offload_rl.workloads.params import (
    PARAMS_SUFFIXES,
    WorkloadParams,
    default_workload_params,
    load_workload_params,
)
from offload_rl.workloads.recorded import RecordedWorkload
from offload_rl.workloads.request import TokenScaling, Workload
from offload_rl.workloads.synthetic import SyntheticWorkload

SYNTHETIC_NAMES = ("default", "default-correlated")
"""Built-in synthetic workloads: ``default`` draws lengths independently (every existing
scenario and number), ``default-correlated`` adds the session correlation fitted to BurstGPT."""


def default_correlated_params() -> WorkloadParams:
    """The default parameters with the fitted session correlation (an opt-in)."""
    return default_workload_params().model_copy(
        update={"correlation": fitted_session_correlation()}
    )


def load_workload(
    spec: str,
    scaling: TokenScaling | None = None,
    mapping: FieldMapping | None = None,
    seed: int = 0,
) -> Workload:
    """``default``, ``default-correlated``, a recorded file (format detected, or read through
    ``mapping``) or a YAML/JSON file of WorkloadParams; ``seed`` is that of synthesised sessions."""
    if mapping is not None and spec in SYNTHETIC_NAMES:
        raise ConfigError(f"a field mapping reads a recorded request log, not {spec!r}")
    if spec == "default":
        return SyntheticWorkload(default_workload_params(), scaling, name="default")
    if spec == "default-correlated":
        return SyntheticWorkload(default_correlated_params(), scaling, name=spec)
    path = Path(spec)
    if not path.exists():
        raise DataFileError(
            path,
            "no such workload (expected 'default', 'default-correlated', a recorded "
            "Azure/BurstGPT/Mooncake file, or a YAML/JSON file of workload parameters)",
        )
    if path.is_dir():
        raise DataFileError(path, "is a directory, expected one workload file")
    if mapping is not None:
        return RecordedWorkload.from_mapping(path, mapping, scaling, seed)
    if path.suffix.lower() in PARAMS_SUFFIXES:
        return SyntheticWorkload(load_workload_params(path), scaling, name=path.stem)
    return RecordedWorkload.from_file(path, "auto", scaling, seed)
