"""Gymnasium environments of offload-rl (depends on ``offload_rl`` and gymnasium).

Importing this package registers ``offload_rl/SplitCache-v0`` and ``offload_rl/EdgeCell-v0``,
so ``gym.make("envs:offload_rl/SplitCache-v0")`` works and rl-zoo3 finds it with
``--gym-packages envs``.
"""

from gymnasium.envs.registration import register, registry

ENV_ID = "offload_rl/SplitCache-v0"
CELL_ENV_ID = "offload_rl/EdgeCell-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="envs.split_cache:SplitCacheEnv")
if CELL_ENV_ID not in registry:
    register(id=CELL_ENV_ID, entry_point="envs.edge_cell:EdgeCellEnv")

__all__ = ["CELL_ENV_ID", "ENV_ID"]
