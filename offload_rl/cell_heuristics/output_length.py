"""How many tokens the answer will have, before it is generated.

A session's answers are correlated (a long answer is followed by a long one: the log output
lengths of consecutive BurstGPT turns correlate at about 0.77, :mod:`offload_rl.workloads.
correlation`), so the previous turn's length is information, and how much depends on the
workload: the prediction shrinks it towards the workload's mean in log space,
``exp(w log(prev) + (1 - w) log(mean))``, with ``w`` tuned on training sessions (for lognormal
lengths with correlation ``rho`` between turns the conditional median is exactly this with
``w = rho``). A first turn gets the mean.
"""

from __future__ import annotations

import math


class OutputLengthPredictor:
    """``exp(w log(prev) + (1 - w) log(mean))``; the mean for a first turn."""

    def __init__(self, mean_output_tokens: float, prev_weight: float) -> None:
        if not (0.0 <= prev_weight <= 1.0) or mean_output_tokens <= 0:
            raise ValueError(
                f"need 0 <= prev_weight <= 1 and a positive mean, got {prev_weight}, "
                f"{mean_output_tokens}"
            )
        self.mean = float(mean_output_tokens)
        self.w = float(prev_weight)

    def predict(self, prev_output_tokens: int) -> int:
        """Predicted output tokens (at least 1)."""
        if prev_output_tokens <= 0:
            return max(round(self.mean), 1)
        log_o = self.w * math.log(prev_output_tokens) + (1.0 - self.w) * math.log(self.mean)
        return max(round(math.exp(log_o)), 1)
