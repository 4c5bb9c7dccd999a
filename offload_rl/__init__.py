"""offload-rl core: numpy-only data layer, cost model, features and CLI.

Nothing in this package imports torch, stable-baselines3 or gymnasium at module level, so the
decision service (``serving``) can depend on it and stay small.
"""

__version__ = "0.1.0"
