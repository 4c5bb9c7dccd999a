"""Simulator validation: the cost model's latencies checked against a real split runtime.

``validation.runtime`` is a reference split-inference runtime (device and edge processes running
real ``transformers`` layers over loopback TCP paced to a trace); the other modules replay
requests through it, predict the same requests with :mod:`offload_rl.cost_model` and report the
errors (``offload-rl validate``). Not an agent and not the decision service: it imports torch
and transformers (inside functions), which ``serving`` and ``offload_rl`` never do.
"""
