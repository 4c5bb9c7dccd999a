"""What ``offload-rl validate --cell`` replays: the single-device settings plus the cell's.

The KV pool's byte budget and the scheduler's budgets are a configuration of the reference
runtime, stated here and given unchanged to both sides (the runtime's edge and
``EdgeCell-v0``'s). The default pool holds :data:`DEFAULT_POOL_TOKENS` tokens of the whole
model's KV: small on purpose, so that four devices' sessions fill it on this CPU and the run
exercises eviction and preemption (a GPU edge's pool is gigabytes; what is validated is the
mechanism and its cost, not the size).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from offload_rl.errors import ConfigError
from validation.config import ValidationConfig

DEFAULT_REQUESTS = 8  # per device and load level
DEFAULT_POOL_TOKENS = 1536
DEFAULT_MAX_NUM_BATCHED_TOKENS = 256  # chunked prefill: a long prompt spreads over iterations
DEFAULT_MAX_NUM_SEQS = 64
# Mean seconds between a device's requests (exponential; 0: back to back): the load levels.
DEFAULT_GAPS_S: tuple[float, ...] = (0.0, 2.0)
DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8)
# Independent repeats of every level (their own streams and link offsets, one profile): a
# single run of 32 requests per level scatters by several points back to back. One run of the
# two default levels took 160-230 s on the quiet 2-core VM (runs E, F), the profile ~2 min:
# 4 runs ~17 minutes, inside the 20.
DEFAULT_RUNS = 4


@dataclass
class CellValidationConfig(ValidationConfig):
    """:class:`ValidationConfig` (model, traces, tokens, profile) plus the cell's settings.

    ``requests`` is per device and load level; ``policy`` is ``service`` (the decision service,
    started with ``--edge-push``, the edge pushing its state to it) or ``forced`` (keep, at a
    split drawn per session from ``splits``: :func:`validation.decisions.forced_split`).
    ``splits`` also bounds the service: the devices say they hold ``max(splits)`` layers.
    """

    devices: int = 4
    gaps_s: Sequence[float] = DEFAULT_GAPS_S
    pool_tokens: int = DEFAULT_POOL_TOKENS
    max_num_batched_tokens: int = DEFAULT_MAX_NUM_BATCHED_TOKENS
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    splits: Sequence[int] = (0,)  # first edge layers a request may get (0: token ids)
    runs: int = 1  # repeats of every level (the CLI's default is DEFAULT_RUNS)
    # Every repeat replays run 0's streams and link offsets: the runtime against itself
    # (validation.repeatability), instead of independent draws.
    same_streams: bool = False
    # The edge process alone on one CPU, the phones, service and driver on the others
    # (validation.runtime.pinned); the profile is measured on the edge's CPU.
    pin_edge: bool = False
    start_margin_s: float = 0.5  # between the last device connecting and the run's start
    device_timeout_s: float = 900.0  # a load level taking longer is a failure


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (empty where the platform cannot pin)."""
    getter = getattr(os, "sched_getaffinity", None)
    return set(getter(0)) if getter is not None else set()


def check_cell_config(cfg: CellValidationConfig) -> None:
    """Raise :class:`ConfigError` for cell settings no run can use (one line, the flag)."""
    if not 1 <= cfg.devices <= 64:
        raise ConfigError(f"--devices must be between 1 and 64, got {cfg.devices}")
    if not cfg.gaps_s or any(not (g >= 0) for g in cfg.gaps_s):
        raise ConfigError(f"--gaps must be seconds >= 0, got {list(cfg.gaps_s)}")
    if not 1 <= cfg.runs <= 100:
        raise ConfigError(f"--runs must be between 1 and 100, got {cfg.runs}")
    if cfg.pin_edge and len(usable_cpus()) < 2:
        raise ConfigError("--pin-edge needs Linux and at least 2 usable CPUs")
    if cfg.same_streams and cfg.runs < 2:
        raise ConfigError(f"--same-streams needs --runs of at least 2, got {cfg.runs}")
    if cfg.pool_tokens < 1:
        raise ConfigError(f"--pool-tokens must be >= 1, got {cfg.pool_tokens}")
    if cfg.max_num_batched_tokens < 1 or cfg.max_num_seqs < 1:
        raise ConfigError("--max-num-batched-tokens and --max-num-seqs must be >= 1")
    if cfg.policy not in ("service", "forced"):
        raise ConfigError(f"--policy for --cell must be service or forced, got {cfg.policy!r}")
    if not cfg.batch_sizes or any(b < 1 for b in cfg.batch_sizes):
        raise ConfigError(f"--batch-sizes must be >= 1, got {list(cfg.batch_sizes)}")
    if not cfg.splits or any(k < 0 for k in cfg.splits):
        raise ConfigError(f"--splits for --cell must be layers >= 0, got {list(cfg.splits)}")


def check_cell_splits(cfg: CellValidationConfig, n_layers: int) -> None:
    """Raise :class:`ConfigError` unless every split leaves the edge a layer (``k < L``)."""
    if any(k >= n_layers for k in cfg.splits):
        raise ConfigError(
            f"--splits for --cell must be below the model's {n_layers} layers, "
            f"got {list(cfg.splits)}"
        )
