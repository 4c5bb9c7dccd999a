"""The scenario's ``cell:`` section: how many devices share the edge, and what they are.

Validated like every other scenario section (unknown keys are errors). The physics constants live
beside the modules that use them (:data:`~offload_rl.cell.thermal.DEVICE_CLASSES`,
:data:`~offload_rl.cell.radio.RADIOS`, the edge's budgets in
:mod:`~offload_rl.cell.edge_server`); this section only chooses among them and sizes the cell. The
edge GPU is the hardware of the scenario's ``profiles.edge`` (its model shape and peaks give the
batched roofline), so one model runs on every tier.

The switches (``batching``, ``thermal``, ``radio_state_machine``, ``radio_tail``) exist for the
``N = 1`` check against ``SplitCache-v0`` and for ablations (:mod:`offload_rl.cell.ablation`);
every one is on in a real cell.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from offload_rl.cell.edge_server import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS
from offload_rl.cell.radio import RADIOS
from offload_rl.cell.thermal import DEVICE_CLASSES


class CellConfig(BaseModel):
    """``cell:``: the devices, their links and radios, the edge's pool and budgets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_devices: int = Field(8, ge=1, le=4096, description="phones sharing the edge server")
    device_mix: dict[str, float] = Field(
        default_factory=lambda: {"flagship": 0.3, "mid-range": 0.4, "budget": 0.3},
        description="share of each device class (offload_rl.cell.thermal.DEVICE_CLASSES)",
    )
    radio: str = Field("lte", description="radio of devices on cellular traces (RADIOS key)")
    wifi_radio: str = Field("wifi", description="radio of devices whose trace family is WiFi")
    arrival_rate_scale: float = Field(
        1.0, gt=0.0, description="x the workload's session rate (synthetic workloads only)"
    )
    kv_pool_bytes: float | None = Field(
        None, gt=0.0, description="edge KV pool (running + kept); None: edge.kv_cache_bytes"
    )
    max_num_batched_tokens: int = Field(DEFAULT_MAX_NUM_BATCHED_TOKENS, ge=1)
    max_num_seqs: int = Field(DEFAULT_MAX_NUM_SEQS, ge=1)
    batching: bool = Field(True, description="False: the edge runs one sequence at a time")
    thermal: bool = Field(True, description="False: devices never heat or throttle")
    radio_state_machine: bool = Field(True, description="False: no promotion delay, no tail")
    radio_tail: bool = Field(
        True, description="False: tail time 0 (idle as a transfer ends); promotion kept"
    )

    @field_validator("device_mix")
    @classmethod
    def _known_classes(cls, mix: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(mix) - set(DEVICE_CLASSES))
        if unknown:
            raise ValueError(f"unknown device classes {unknown}; known: {list(DEVICE_CLASSES)}")
        if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError("device_mix shares must be >= 0 and not all 0")
        return mix

    @field_validator("radio", "wifi_radio")
    @classmethod
    def _known_radio(cls, name: str) -> str:
        if name not in RADIOS:
            raise ValueError(f"unknown radio {name!r}; known: {list(RADIOS)}")
        return name

    def class_probabilities(self) -> tuple[list[str], list[float]]:
        """Class names (in DEVICE_CLASSES order) and their normalised shares."""
        names = [n for n in DEVICE_CLASSES if n in self.device_mix]
        total = sum(self.device_mix[n] for n in names)
        return names, [self.device_mix[n] / total for n in names]
