"""The edge adapter's settings (``offload-rl serve --edge-metrics-url ...``), checked once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from offload_rl.errors import ConfigError

# light on purpose: the CLI imports this module at start-up
DEFAULT_POLL_INTERVAL_S = 1.0  # vLLM refreshes its scheduler gauges every engine step
DEFAULT_MAX_AGE_S = 5.0
# the busy share's window: the simulator's edge_load is the GPU's busy share since the cell's
# previous decision, ~4.5 s apart at the cell scenario's 0.22 requests/s (data/scenarios/cell.yaml)
DEFAULT_LOAD_WINDOW_S = 5.0

ENV_URL = "OFFLOAD_RL_EDGE_METRICS_URL"
ENV_POLL = "OFFLOAD_RL_EDGE_POLL_S"
ENV_MAX_AGE = "OFFLOAD_RL_EDGE_MAX_AGE_S"
ENV_PUSH = "OFFLOAD_RL_EDGE_PUSH"
ENV_LOAD_WINDOW = "OFFLOAD_RL_EDGE_LOAD_WINDOW_S"


@dataclass(frozen=True)
class EdgeSettings:
    """``metrics_url``: the runtime's Prometheus endpoint to poll (``None``: no pull);
    ``push``: accept ``POST /v1/edge/state``; ``max_age_s``: the staleness bound."""

    metrics_url: str | None = None
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    max_age_s: float = DEFAULT_MAX_AGE_S
    push: bool = False
    load_window_s: float = DEFAULT_LOAD_WINDOW_S

    @property
    def enabled(self) -> bool:
        return self.metrics_url is not None or self.push

    def check(self) -> EdgeSettings:
        """``self``, or a :class:`ConfigError` naming the bad setting."""
        if self.metrics_url is not None:
            u = urlparse(self.metrics_url)
            if u.scheme not in ("http", "https") or not u.netloc:
                raise ConfigError(
                    f"--edge-metrics-url must be an http(s) URL, got {self.metrics_url!r}"
                )
        if not (math.isfinite(self.poll_interval_s) and self.poll_interval_s > 0):
            raise ConfigError(f"--edge-poll-interval must be > 0 s, got {self.poll_interval_s}")
        if not (math.isfinite(self.max_age_s) and self.max_age_s > 0):
            raise ConfigError(f"--edge-max-age must be > 0 s, got {self.max_age_s}")
        if not (math.isfinite(self.load_window_s) and self.load_window_s >= 0):
            raise ConfigError(f"--edge-load-window must be >= 0 s, got {self.load_window_s}")
        if self.metrics_url is not None and self.max_age_s < self.poll_interval_s:
            raise ConfigError(
                f"--edge-max-age ({self.max_age_s} s) is below --edge-poll-interval "
                f"({self.poll_interval_s} s): every view would be stale before the next poll"
            )
        return self

    def to_env(self) -> dict[str, str]:
        return {
            ENV_URL: self.metrics_url or "",
            ENV_POLL: str(self.poll_interval_s),
            ENV_MAX_AGE: str(self.max_age_s),
            ENV_PUSH: "1" if self.push else "0",
            ENV_LOAD_WINDOW: str(self.load_window_s),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EdgeSettings:
        def number(key: str, default: float) -> float:
            raw = env.get(key) or ""
            try:
                return float(raw) if raw else default
            except ValueError:
                raise ConfigError(f"{key}={raw!r} is not a number") from None

        return cls(
            metrics_url=env.get(ENV_URL) or None,
            poll_interval_s=number(ENV_POLL, DEFAULT_POLL_INTERVAL_S),
            max_age_s=number(ENV_MAX_AGE, DEFAULT_MAX_AGE_S),
            push=env.get(ENV_PUSH, "0") == "1",
            load_window_s=number(ENV_LOAD_WINDOW, DEFAULT_LOAD_WINDOW_S),
        ).check()
