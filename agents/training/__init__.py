"""Training a MaskablePPO agent, one concern per module; :mod:`agents.training.loop` reads
top to bottom and names the others in order."""
