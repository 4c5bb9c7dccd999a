"""A reference split-inference runtime on real ``transformers`` layers.

A device process runs the embedding and layers ``< k``, an edge process the rest and the LM
head; they talk over loopback TCP through a link paced to a bandwidth trace (with the scenario's
one-way delay), and keep per-session KV caches. It exists to check the simulator
(:mod:`offload_rl.cost_model`) against what really happens: ``offload-rl validate``.

This package imports torch; ``serving`` never imports it.
"""
