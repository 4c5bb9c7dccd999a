"""Sub-commands of the ``offload-rl`` CLI.

Each module here exposes ``register(subparsers)``, which adds one sub-command whose handler is
stored as ``func`` (``(argparse.Namespace) -> int``). Modules are imported lazily by
:mod:`offload_rl.cli`, so a heavy dependency of one command (torch for ``profile``) never slows
down or breaks another.
"""
