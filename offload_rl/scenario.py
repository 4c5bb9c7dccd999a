"""Scenarios: one YAML file says which model, hardware, links, workload and reward to simulate.

Every key is validated on load (unknown keys are errors too), and errors name the file and the
dotted key. Relative paths in a scenario are relative to the scenario file. What a scenario
*implies* (compiled profiles, feature spec, reward rule, ...) is derived in
:mod:`offload_rl.scenario_facts`, never here. The embedded
``default`` scenario uses synthetic trace presets and the embedded workload, so it runs on a
machine without ``../shared``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from offload_rl.cell.config import CellConfig
from offload_rl.config_yaml import parse_yaml, validation_message
from offload_rl.cost_model import EnergyModel
from offload_rl.edge_load import EdgeLoadParams
from offload_rl.errors import ConfigError
from offload_rl.traces import TraceFormat
from offload_rl.workloads.mapping import FieldMapping

SYNTHETIC_PREFIX = "synthetic:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfilesConfig(_Strict):
    """Profile of the model on each tier: a shipped name (``model@hardware``) or a JSON path."""

    device: str
    edge: str
    cloud: str


class TraceSource(_Strict):
    """One entry of ``network.traces``: a file, a folder, or ``synthetic:<preset>``.

    Most recorded families measure the downlink; when one stands in for the uplink, say so
    with ``direction: downlink`` and the ``uplink_scale`` applied (PARAMETERS.md section 4b
    gives measured UL/DL ratios, e.g. 0.22 for LTE).
    """

    source: str
    direction: Literal["uplink", "downlink"] = "uplink"
    uplink_scale: float = Field(1.0, gt=0.0, description="uplink capacity = scale x trace")
    downlink_scale: float = Field(1.0, gt=0.0, description="downlink capacity = scale x trace")


class NetworkConfig(_Strict):
    """The radio link (from traces) and the backhaul."""

    traces: list[TraceSource | str] = Field(min_length=1)
    trace_format: TraceFormat = "auto"
    synthetic_traces: int = Field(8, ge=1, description="traces drawn per synthetic preset")
    synthetic_first_seed: int = Field(
        0,
        ge=0,
        description=(
            "seed of a synthetic preset's first trace (seeds first .. first + n - 1): training "
            "draws links from seeds the evaluation (from 0) never sees"
        ),
    )
    synthetic_duration_s: float = Field(900.0, gt=0.0)
    rtt_edge_ms: float = Field(20.0, ge=0.0)
    rtt_cloud_extra_ms: float = Field(30.0, ge=0.0)
    backhaul_gbps: float = Field(10.0, gt=0.0)
    outage_mbps: float = Field(0.1, ge=0.0)
    throughput_history: int = Field(8, ge=1, le=64)
    throughput_sample_s: float = Field(1.0, gt=0.0)
    throughput_noise: float = Field(0.1, ge=0.0, description="lognormal sd of measurement error")

    def sources(self) -> list[TraceSource]:
        """``traces`` with string shorthands expanded."""
        return [TraceSource(source=t) if isinstance(t, str) else t for t in self.traces]


class SloClass(_Strict):
    """A class of requests with its latency targets."""

    name: str
    share: float = Field(ge=0.0, le=1.0)
    ttft_s: float = Field(gt=0.0)
    tpot_s: float = Field(gt=0.0)


class WorkloadConfig(_Strict):
    """Where requests come from and which are private.

    ``source`` is ``default`` (the fitted synthetic workload), ``default-correlated`` (the
    same with session lengths correlated across turns as in BurstGPT), or a path. ``mapping``
    reads ``source`` as any CSV/JSON Lines request log: a YAML file of a
    :class:`~offload_rl.workloads.FieldMapping` (relative to the scenario) or the mapping inline.
    """

    source: str = "default"
    mapping: str | FieldMapping | None = None
    token_scale: float = Field(1.0, gt=0.0)
    max_context_tokens: int = Field(4096, ge=16)
    max_new_tokens: int = Field(2048, ge=1)
    max_output_tokens: int = Field(1024, ge=1)
    private_share: float = Field(0.2, ge=0.0, le=1.0, description="share of private sessions")
    k_priv: int = Field(2, ge=1, description="layers a private request keeps on the device")
    slo_classes: list[SloClass] = Field(
        default_factory=lambda: [
            SloClass(name="interactive", share=0.5, ttft_s=1.0, tpot_s=0.1),
            SloClass(name="relaxed", share=0.5, ttft_s=4.0, tpot_s=0.25),
        ],
        min_length=1,
    )

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> WorkloadConfig:
        if self.mapping is not None and self.source in ("default", "default-correlated"):
            raise ValueError("mapping: reads a recorded request log: set source to its path")
        total = sum(c.share for c in self.slo_classes)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"slo_classes shares must sum to 1, got {total:g}")
        return self


class DeviceConfig(_Strict):
    """The device's memory and power draw."""

    memory_layers: int | None = Field(None, ge=0, description="layers it can hold; None = all")
    memory_pressure_share: float = Field(0.1, ge=0.0, le=1.0)
    memory_pressure_layers: int = Field(8, ge=0)
    compute_w: float = Field(5.0, ge=0.0)
    radio_tx_w: float = Field(1.2, ge=0.0)
    radio_tx_w_per_mbps: float = Field(0.438, ge=0.0)
    radio_rx_w: float = Field(1.06, ge=0.0)
    radio_tail_s: float = Field(0.0, ge=0.0)

    def energy_model(self) -> EnergyModel:
        return EnergyModel(
            compute_w=self.compute_w,
            radio_tx_w=self.radio_tx_w,
            radio_tx_w_per_mbps=self.radio_tx_w_per_mbps,
            radio_rx_w=self.radio_rx_w,
            radio_tail_s=self.radio_tail_s,
        )


class EdgeConfig(_Strict):
    """The edge server: KV memory for sessions, load from other users, price."""

    kv_cache_bytes: float = Field(256e6, ge=0.0)
    load: EdgeLoadParams = Field(default_factory=EdgeLoadParams)
    usd_per_hour: float = Field(0.80, ge=0.0)


class CloudConfig(_Strict):
    """A hosted multi-tenant service: fast GPUs, but requests share them with other tenants."""

    usd_per_hour: float = Field(3.78, ge=0.0)
    queue_s: float = Field(0.25, ge=0.0, description="mean admission/scheduling wait")
    slowdown: float = Field(8.0, ge=1.0, description="layer time x this (batched tenants)")


class RewardConfig(_Strict):
    """reward = -(w_latency * latency / SLO + w_energy * J + w_slo * violated + w_cost * USD)."""

    w_latency: float = Field(1.0, ge=0.0)
    w_energy: float = Field(0.02, ge=0.0, description="per joule of device energy")
    w_slo: float = Field(1.0, ge=0.0, description="per SLO violation")
    w_cost: float = Field(0.0, ge=0.0, description="per US dollar of edge/cloud GPU time")
    invalid_action_penalty: float = Field(1.0, ge=0.0)
    keep_credit: bool = Field(
        False,
        description=(
            "training aid: credit a KV keep at once with the hit it would give the session's "
            "next turn, and take the credit back when that turn comes or the entry is evicted "
            "(the episode's total reward is unchanged)"
        ),
    )


class LiteConfig(_Strict):
    """A device-lite model: a small model fully on the device, answering worse but without the
    link (scenario key ``lite:``). Without this section the action space, the reward and every
    figure are exactly those of a scenario without it.

    ``quality`` and ``main_quality`` are scores of the lite and the main model on one published
    benchmark (the same benchmark and setting for both: say which in ``benchmark``), as fractions
    in [0, 1] (MMLU 47.5% is 0.475). A request the lite model answers costs
    ``w_quality * (main_quality - quality)`` in the reward.
    """

    profile: str = Field(description="the lite model's device profile (model@hardware or JSON)")
    quality: float = Field(ge=0.0, le=1.0, description="the lite model's benchmark score")
    main_quality: float = Field(ge=0.0, le=1.0, description="the main model's benchmark score")
    benchmark: str = Field(min_length=1, description="which benchmark, and its source")
    w_quality: float = Field(ge=0.0, description="reward weight per unit of score gap")

    @model_validator(mode="after")
    def _main_is_better(self) -> LiteConfig:
        if self.quality > self.main_quality:
            raise ValueError(
                f"quality {self.quality:g} exceeds main_quality {self.main_quality:g}: "
                "the lite model is the smaller, weaker one"
            )
        return self


class EpisodeConfig(_Strict):
    requests: int = Field(256, ge=1)


class Scenario(_Strict):
    """A whole simulated deployment."""

    name: str
    description: str = ""
    profiles: ProfilesConfig
    network: NetworkConfig
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    cloud: CloudConfig = Field(default_factory=CloudConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    episode: EpisodeConfig = Field(default_factory=EpisodeConfig)
    cell: CellConfig | None = Field(None, description="EdgeCell-v0: devices sharing the edge")
    lite: LiteConfig | None = Field(None, description="a small model fully on the device")
    base_dir: str | None = Field(None, exclude=True, description="folder of the scenario file")

    def resolve_path(self, path: str) -> Path:
        """A path from the scenario, relative to the scenario file's folder."""
        p = Path(path).expanduser()
        if not p.is_absolute() and self.base_dir is not None:
            p = Path(self.base_dir) / p
        return p

    def with_traces(self, traces: list[str]) -> Scenario:
        """A copy whose trace sources are replaced (``evaluate --traces``), paths as given.

        The scaling of the scenario's first source is kept, so a scenario written for downlink
        traces keeps its stated uplink scaling.
        """
        first = self.network.sources()[0]
        sources = [first.model_copy(update={"source": str(t)}) for t in traces]
        network = self.network.model_copy(update={"traces": sources})
        return self.model_copy(update={"network": network})


def scenario_from_dict(data: object, source: str, base_dir: str | None = None) -> Scenario:
    """Validate a parsed YAML mapping; errors name ``source`` and the dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Scenario.model_validate({**data, "base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError(validation_message(source, err)) from None


def shipped_scenarios() -> list[str]:
    """Names of the scenarios embedded in the package."""
    folder = importlib.resources.files("offload_rl") / "data" / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by embedded name (``default``) or YAML path."""
    text: str
    base_dir: str | None
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: scenario file not found")
        text = path.read_text()
        source, base_dir = str(path), str(path.resolve().parent)
    else:
        name = str(name_or_path)
        resource = importlib.resources.files("offload_rl") / "data" / "scenarios" / f"{name}.yaml"
        if not resource.is_file():
            known = ", ".join(shipped_scenarios())
            raise ConfigError(f"unknown scenario {name!r}: give a YAML path or one of {known}")
        text = resource.read_text()
        source, base_dir = f"scenario {name}", None
    data = parse_yaml(text, source)
    return scenario_from_dict(data, source, base_dir)
