"""Gymnasium environments of offload-rl (depends on ``offload_rl`` and gymnasium).

Importing this package registers ``offload_rl/SplitCache-v0``, so
``gym.make("envs:offload_rl/SplitCache-v0")`` works and rl-zoo3 finds it with
``--gym-packages envs``.
"""

from gymnasium.envs.registration import register, registry

ENV_ID = "offload_rl/SplitCache-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="envs.split_cache:SplitCacheEnv")

__all__ = ["ENV_ID"]
