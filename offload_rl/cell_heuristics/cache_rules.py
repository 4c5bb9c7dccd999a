"""The ``keep`` half of a cell heuristic's action: LRU keep-always, or value per byte (GDSF).

* ``lru``: keep every session's KV (on the device for the local tier, in the edge pool
  otherwise); the pool evicts the least recently used entry when it needs room. The rule the
  single-device ``greedy`` ships with.
* ``gdsf``: keep only what is worth its bytes. Greedy-Dual-Size-Frequency (Cherkasova,
  "Improving WWW proxies performance with Greedy-Dual-Size-Frequency caching policy", HP Labs
  HPL-98-69, 1998) ranks a cached object by ``frequency x cost / size``; here the frequency is
  the probability that the session returns (:mod:`.return_model`, fitted on training
  sessions), the cost is the prefill a hit saves (the edge's batched roofline for the entry's
  tokens and layers) and the size the entry's bytes. In GDSF an entry enters when its priority
  beats the cache's inflation value; the pool here evicts by LRU, so the rule decides at the
  door instead: keep iff ``priority x pool bytes >= threshold x occupancy``, i.e. an empty pool
  takes anything that may come back, a full one only what is worth more than the tuned
  threshold per share of the pool. A local keep costs no shared memory and is always taken.
"""

from __future__ import annotations

from typing import Protocol

from offload_rl.actions import DROP, KEEP
from offload_rl.cell_heuristics.predictor import CellForecaster, TierForecast
from offload_rl.cell_heuristics.tuned import GDSFParams, ReturnModelParams
from offload_rl.cost_model import TIER_CLOUD, TIER_DEVICE, TIER_LITE, tier_of
from offload_rl.device_view import kept_kv_tokens
from offload_rl.features import CellDecisionState

CACHE_RULE_NAMES: tuple[str, ...] = ("lru", "gdsf")


class KeepRule(Protocol):
    """Decides keep / drop once the placement is chosen."""

    name: str

    def keep(self, state: CellDecisionState, chosen: TierForecast) -> int: ...


class LRUKeep:
    """Keep always (the stateless cloud excepted); the pool's LRU eviction does the rest."""

    name = "lru"

    def __init__(self, n_layers: int) -> None:
        self.L = n_layers

    def keep(self, state: CellDecisionState, chosen: TierForecast) -> int:
        # the cloud is stateless and the lite model keeps nothing (lite + keep is never valid)
        return DROP if tier_of(chosen.tier, self.L) in (TIER_CLOUD, TIER_LITE) else KEEP


def gdsf_priority(p_return: float, saved_s: float, nbytes: float) -> float:
    """GDSF's ``frequency x cost / size``: expected seconds saved per byte held."""
    return p_return * saved_s / nbytes if nbytes > 0 else float("inf")


class GDSFKeep:
    """Keep iff the entry's value per byte beats the pool's pressure (see the module)."""

    name = "gdsf"

    def __init__(
        self, forecaster: CellForecaster, params: GDSFParams, returns: ReturnModelParams
    ) -> None:
        self.f = forecaster
        self.L = forecaster.L
        self.threshold = params.threshold
        self.returns = returns

    def entry(self, state: CellDecisionState, chosen: TierForecast) -> tuple[float, float]:
        """(prefill seconds a hit saves, bytes held) of keeping after ``chosen``."""
        tokens = kept_kv_tokens(
            int(state.context_tokens), int(state.new_tokens), chosen.output_tokens
        )
        roof = self.f.roofline
        saved = roof.sequence_s(chosen.tier, tokens, 0, False)
        nbytes = float(tokens * (self.L - chosen.tier) * roof.kv_bytes_per_token_layer)
        return saved, nbytes

    def keep(self, state: CellDecisionState, chosen: TierForecast) -> int:
        kind = tier_of(chosen.tier, self.L)
        if kind in (TIER_CLOUD, TIER_LITE):
            return DROP
        p = self.returns.at_turn(int(state.turn))
        if kind == TIER_DEVICE:
            return KEEP if p > 0 else DROP
        saved, nbytes = self.entry(state, chosen)
        value = gdsf_priority(p, saved, nbytes) * self.f.pool_bytes
        return KEEP if value >= self.threshold * float(state.edge_kv_occupancy) else DROP
