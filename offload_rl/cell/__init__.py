"""Physics of the EdgeCell: the edge server's batching and KV pool, device heat, radio state.

Numpy-free plain-float modules that an event-driven environment drives: advance time, submit
work, read the state a runtime or an OS would expose, collect what finished.
"""
