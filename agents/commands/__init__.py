"""CLI sub-commands that drive agents (evaluate, train, export); heavy imports stay in handlers."""
