"""A policy for the cell observation (``FeatureSpec(cell=True)``), exported the project's way.

An untrained MaskablePPO on ``EdgeCellEnv`` with no hidden layers (its logits are one linear
map of the observation), whose weights are then set so that the decision is legible: the edge
(action "edge, drop") while the edge's KV occupancy and queue are low, the cloud ("cloud")
otherwise. It goes through the exporter's own pieces (:func:`agents.export.build_export_module`,
:func:`~agents.export.export_graph`, the metadata and its hash) and the service's validation
(:class:`serving.policy_runtime.OnnxPolicy`); the parity step of ``export_policy`` samples
``SplitCache-v0``, whose observation is not the cell's, so it is done here on cell states.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offload_rl.features import FeatureSpec

EDGE_BIAS = 2.0
KV_WEIGHT = -3.0  # per unit of edge_kv_occupancy
WAITING_WEIGHT = -3.0  # per unit of the edge_waiting feature (log1p(n)/log1p(256))


def cell_policy(out: Path) -> tuple[Path, FeatureSpec]:
    """Write the policy to ``out``; returns its path and its feature spec."""
    import torch
    from sb3_contrib import MaskablePPO

    from agents.export import (
        build_export_module,
        check_parity,
        describe_normalization,
        export_graph,
    )
    from envs.edge_cell import EdgeCellEnv
    from serving.policy_file import build_metadata, set_metadata
    from serving.policy_runtime import OnnxPolicy

    env = EdgeCellEnv("cell", episode_requests=16)
    spec = env.feature_spec
    model = MaskablePPO(
        "MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu",
        policy_kwargs={"net_arch": {"pi": [], "vf": []}},
    )  # fmt: skip
    names = spec.feature_names()
    layout = spec.layout
    edge, cloud = layout.encode(0, 0), layout.encode(layout.cloud_index, 0)
    with torch.no_grad():
        net = model.policy.action_net
        net.weight.zero_()
        net.bias.zero_()
        net.bias[edge] = EDGE_BIAS
        net.weight[edge, names.index("edge_kv_occupancy")] = KV_WEIGHT
        net.weight[edge, names.index("edge_waiting")] = WAITING_WEIGHT
        net.bias[cloud] = 0.0
        for a in range(layout.n_actions):
            if a not in (edge, cloud):
                net.bias[a] = -10.0
    graph = export_graph(build_export_module(model, None), spec.obs_dim, layout.n_actions)
    profiles = {t: str(getattr(env.scenario.profiles, t)) for t in ("device", "edge", "cloud")}
    set_metadata(
        graph,
        build_metadata(
            spec, scenario="cell", profiles=profiles, normalization=describe_normalization(None)
        ),
    )
    data = graph.SerializeToString()
    rng = np.random.default_rng(0)
    obs = rng.random((256, spec.obs_dim), dtype=np.float32)
    check_parity(model, None, data, obs, np.ones((256, layout.n_actions), dtype=bool))
    OnnxPolicy(data, out, spec)  # the service accepts exactly these bytes
    out.write_bytes(data)
    return out, spec
