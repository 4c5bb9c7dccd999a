"""The edge's state as the decision service beside the edge runtime knows it.

- :mod:`serving.edge_state.prometheus_text`: the Prometheus text format, parsed;
- :mod:`serving.edge_state.mapping`: runtime facts -> the observation's edge fields (the one
  table, :data:`~serving.edge_state.mapping.EDGE_FIELD_SOURCES`);
- :mod:`serving.edge_state.store`: the latest view and the staleness bound;
- :mod:`serving.edge_state.vllm_pull`: the pull adapter (polls vLLM's ``/metrics``);
- :mod:`serving.edge_state.observation`: request + view -> the encoder's state;
- :mod:`serving.edge_state.decider`: the edge-aware decisions of ``/v1`` and ``/v2``.
"""
