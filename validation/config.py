"""What ``offload-rl validate`` replays: its configuration, the links and the splits, checked early.

Every check that a user's input can fail runs here, before minutes of profiling start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from offload_rl.errors import ConfigError
from offload_rl.model_shapes import ArchSpec
from offload_rl.traces import Trace, load_traces

# The default scenario's two faster links, with its uplink scaling (PARAMETERS 4b): LTE as
# measured in Ghent (uplink = 0.22 x downlink) and Wi-Fi (0.5 x). The slow 3G/Mahimahi links
# would make one 512-token prefill upload take ten seconds or more without testing anything
# the pacing does not already test.
DEFAULT_TRACES: tuple[str, ...] = ("synthetic:ghent-4g-lte*0.22", "synthetic:wifi*0.5")
SYNTHETIC_DURATION_S = 900.0


@dataclass
class ValidationConfig:
    """What ``offload-rl validate`` replays, and how."""

    out: Path
    model: str | ArchSpec = "gpt2"
    requests: int = 24
    traces: Sequence[str] = DEFAULT_TRACES
    repeats: int = 3
    seed: int = 0
    threads: int = 1
    rtt_ms: float = 20.0
    token_scale: float = 0.25
    min_new: int = 16
    max_new: int = 512
    min_out: int = 4
    max_out: int = 64
    middle_splits: Sequence[int] | None = None
    policy: str = "forced"  # forced | <heuristic name> | http(s)://decision-service
    service_timeout_s: float = 0.25
    reprofile: bool = False
    profile_method: str = "stack"  # stack: decoder re-timed in-stack; profiler: as measured
    profile_repeats: int = 5
    profile_lengths: Sequence[int] | None = None
    profile_contexts: Sequence[int] | None = None
    profile_retries: int = 3  # re-measurements of a point timed under contention
    profile_min_point_s: float = 0.3
    edge_in_thread: bool = False  # tests: the edge in a thread of this process
    init_std: float | None = None
    warmup: bool = True
    quiet_wait_s: float = 5.0  # after a contended request, wait this long at most for quiet
    quiet_budget_s: float = 300.0  # ... and this long in all
    progress: Callable[[str], None] | None = None


def say(cfg: ValidationConfig, message: str) -> None:
    """A progress line, where the caller asked for them."""
    if cfg.progress is not None:
        cfg.progress(message)


def default_middle_splits(n_layers: int) -> list[int]:
    """Two splits strictly inside the model (a third and two thirds of the layers)."""
    return sorted({k for k in (n_layers // 3, (2 * n_layers) // 3) if 0 < k < n_layers}) or (
        [n_layers // 2] if n_layers > 1 else []
    )


def check_config(cfg: ValidationConfig) -> None:
    """Raise :class:`ConfigError` for settings no replay can run with."""
    if cfg.requests < 1 or cfg.repeats < 1 or cfg.threads < 1:
        raise ConfigError("--requests, --repeats and --threads must be >= 1")
    if not (1 <= cfg.min_new <= cfg.max_new and 1 <= cfg.min_out <= cfg.max_out):
        raise ConfigError("token ranges must satisfy 1 <= min <= max")
    if cfg.profile_method not in ("stack", "profiler"):
        raise ConfigError(f"--profile-method must be stack or profiler, got {cfg.profile_method}")


def replay_splits(cfg: ValidationConfig, n_layers: int) -> list[int]:
    """The splits to replay: local, full offload, then the middle ones (checked)."""
    L = n_layers
    middles = list(cfg.middle_splits) if cfg.middle_splits else default_middle_splits(L)
    for k in middles:
        if not 0 < k < L:
            raise ConfigError(f"--splits: {k} is not strictly inside the model's {L} layers")
    return [L, 0, *middles]


@dataclass
class TraceSpec:
    """One link of the replay: uplink and downlink traces."""

    label: str
    uplink: Trace
    downlink: Trace


def parse_traces(specs: Sequence[str], seed: int) -> list[TraceSpec]:
    """``synthetic:<preset>[*scale]``, ``constant:<mbps>`` or a path (file or folder)
    ``[*scale]``; the scale multiplies the uplink only (a downlink trace standing in)."""
    out: list[TraceSpec] = []
    for i, spec in enumerate(specs):
        source, _, scale_text = spec.partition("*")
        try:
            scale = float(scale_text) if scale_text else 1.0
        except ValueError:
            raise ConfigError(f"--traces {spec!r}: scale {scale_text!r} is not a number") from None
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"--traces {spec!r}: scale must be positive")
        for down in _downlinks(spec, source, seed + i):
            up = down.scaled(scale) if scale != 1.0 else down
            out.append(TraceSpec(spec, up, down))
    if not out:
        raise ConfigError("--traces: no trace given")
    return out


def _downlinks(spec: str, source: str, seed: int) -> list[Trace]:
    """The trace(s) that ``source`` (one ``--traces`` entry without its scale) names."""
    from offload_rl.synthetic_traces import generate_trace

    if source.startswith("synthetic:"):
        return [generate_trace(source.split(":", 1)[1], SYNTHETIC_DURATION_S, seed)]
    if source.startswith("constant:"):
        try:
            mbps = float(source.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"--traces {spec!r}: not a rate in Mbps") from None
        if not (math.isfinite(mbps) and mbps > 0):
            raise ConfigError(f"--traces {spec!r}: the rate must be positive")
        return [Trace.constant(mbps, name=f"constant-{mbps:g}")]
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"--traces: {path} does not exist")
    return load_traces([path])[:1]  # a folder: its first trace
