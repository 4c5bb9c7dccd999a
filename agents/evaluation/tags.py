"""TensorBoard tag and run names, the same for training's validation and for evaluation.

The README promises identical tags whatever wrote them, so the one rule that makes a trace
family or a policy spec safe for a tag or a folder lives here: every run of characters outside
``A-Z a-z 0-9 . _ -`` (spaces, slashes, non-ASCII letters) becomes a single ``_``.
"""

from __future__ import annotations

import re

SUMMARY_TAGS: dict[str, str] = {
    "eval/mean_reward": "mean_reward",
    "eval/mean_reward_ci95": "mean_reward_ci95",
    "eval/latency_mean_s": "mean_latency_s",
    "eval/latency_p50_s": "latency_p50_s",
    "eval/latency_p95_s": "latency_p95_s",
    "eval/latency_p99_s": "latency_p99_s",
    "eval/ttft_mean_s": "mean_ttft_s",
    "eval/slo_violation_rate": "slo_violation_rate",
    "eval/energy_j": "energy_j_per_request",
    "eval/cache_hit_rate": "cache_hit_rate",
    "eval/keep_rate": "keep_rate",
    "eval/invalid_action_rate": "invalid_action_rate",
}
LITE_FIELDS: tuple[str, ...] = ("lite_share", "mean_quality")
"""Figures only an evaluation of a scenario with a device-lite model has: the share of requests
the lite model answered and the mean benchmark score delivered."""
LITE_TAGS: dict[str, str] = {"eval/lite_share": "lite_share", "eval/mean_quality": "mean_quality"}
FAMILY_TAGS: dict[str, str] = {
    "mean_reward": "mean_reward",
    "latency_p95_s": "latency_p95_s",
    "slo_violation_rate": "slo_violation_rate",
    "energy_j": "energy_j_per_request",
}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def tag_safe(text: str) -> str:
    """``text`` as one tag component (``5G / bus`` -> ``5G_bus``)."""
    return _UNSAFE.sub("_", text)


def run_dir_name(spec: str) -> str:
    """A folder name for a policy's TensorBoard run (``onnx:a/b.onnx`` -> ``onnx_a_b.onnx``)."""
    return tag_safe(spec).strip("_") or "policy"
