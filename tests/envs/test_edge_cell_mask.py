"""The cell's action mask never offers what the phone cannot run, and never offers nothing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_rl.actions import ActionLayout
from offload_rl.cell.thermal import DEVICE_CLASSES
from offload_rl.features import FeatureSpec, action_mask, action_masks
from offload_rl.scenario import load_scenario
from offload_rl.scenario_facts import memory_layers_for, resolve_scenario
from tests.decision_states import make_state

CELL = resolve_scenario(load_scenario("cell"))
L = CELL.facts.n_layers
# what a phone of each class holds, and what any phone holds under memory pressure
HELD = sorted(
    {memory_layers_for(CELL.facts, c.model_memory_bytes()) for c in DEVICE_CLASSES.values()}
    | {CELL.scenario.device.memory_pressure_layers}
)
LITE_LAYERS = resolve_scenario(load_scenario("cell_lite")).facts.spec.lite_memory_layers


def _fits(tier: int, k_mem: int, lite: int) -> bool:
    """Whether the phone can run its part of ``tier``: its layers (tiers 0..L), nothing
    (cloud), the small model (lite)."""
    if tier <= L:
        return tier <= k_mem
    return tier == L + 1 or k_mem >= lite


def test_a_budget_phone_in_an_outage_gets_its_deepest_split_not_full_local():
    """Budget phones hold 26 of 28 layers in ``cell``: full local would need the whole model."""
    assert L == 28 and 26 in HELD
    spec = FeatureSpec(n_layers=L, cell=True, k_priv=CELL.facts.spec.k_priv)
    mask = action_mask(make_state(0.0, 26), spec)
    layout = ActionLayout(L)
    tiers = {layout.decode(a)[0] for a in np.flatnonzero(mask)}
    assert tiers == {26}
    # the single-device env follows the same rule (it has no flash path either)
    single = action_mask(make_state(0.0, 26), FeatureSpec(n_layers=L))
    assert {layout.decode(a)[0] for a in np.flatnonzero(single)} == {26}


@given(
    k_mem=st.sampled_from(HELD) | st.integers(0, L),
    private=st.booleans(),
    mbps=st.sampled_from([0.0, 0.05, 0.5, 20.0]),
    lite=st.sampled_from([0, LITE_LAYERS]),
    k_priv=st.integers(0, 4),
    cell=st.booleans(),  # EdgeCell-v0 and SplitCache-v0 share the rule
)
@settings(max_examples=300, deadline=None)
def test_every_offered_action_fits_the_phone_and_the_mask_is_never_empty(
    k_mem: int, private: bool, mbps: float, lite: int, k_priv: int, cell: bool
) -> None:
    spec = FeatureSpec(n_layers=L, cell=cell, k_priv=k_priv, lite_memory_layers=lite)
    state = make_state(mbps, k_mem, private=private)
    mask = action_mask(state, spec)
    assert mask.any()
    layout = spec.layout
    for a in np.flatnonzero(mask):
        assert _fits(layout.decode(int(a))[0], k_mem, lite)
    assert np.array_equal(action_masks([state] * 40, spec)[0], mask)  # the vectorised path
