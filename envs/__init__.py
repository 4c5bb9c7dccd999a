"""Gymnasium environments of offload-rl (depends on ``offload_rl`` and gymnasium)."""
