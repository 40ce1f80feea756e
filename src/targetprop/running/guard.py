"""Divergence is a fault, not a result: a run whose losses become NaN or
infinite, or grow by orders of magnitude, or whose diagnostics become NaN or
infinite, stops with a message that names the quantity, where it happened
and the settings most likely to blame.
"""
from __future__ import annotations

import math

__all__ = ["TrainingDiverged", "DivergenceGuard"]

# What to try first, per quantity (a name's prefix).
_HINTS = {
    "loss": "a smaller forward_lr, or for the DTP family a smaller target_step",
    "feedback_loss": "a smaller feedback_lr or feedback_noise, or a bounded activation (tanh)",
}
_DEFAULT_HINT = "a smaller forward_lr and feedback_lr, or a bounded activation (tanh)"


class TrainingDiverged(RuntimeError):
    """A loss or diagnostic became NaN or infinite, or a loss grew by orders of magnitude."""


class DivergenceGuard:
    """Watches named running values. Each loss's first value sets its scale,
    s = max(|first|, ``floor``); a later value v diverges when it is not
    finite or when |v| > ``factor`` · s (``factor`` = 0 checks finiteness
    only). The floor keeps losses that start near zero from tripping it."""

    def __init__(self, factor: float = 1e3, floor: float = 1.0):
        self.factor, self.floor = factor, floor
        self.scales: dict[str, float] = {}

    def check_losses(self, values: dict[str, float], where: str) -> None:
        for name, value in values.items():
            if not math.isfinite(value):
                raise TrainingDiverged(self._message(name, value, where, "is not finite"))
            scale = self.scales.setdefault(name, max(abs(value), self.floor))
            if self.factor and abs(value) > self.factor * scale:
                raise TrainingDiverged(self._message(
                    name, value, where, f"grew to {abs(value) / scale:.3g}× its starting scale {scale:.3g}"))

    def check_finite(self, values: dict[str, float], where: str) -> None:
        """Diagnostics and evaluation scores: NaN or infinite is divergence."""
        for name, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                what = ("is not finite: the layer's update or back-prop's gradient is zero (every unit of a "
                        "layer off for every example: a dead net) or overflowed" if name.startswith("angle_")
                        else "is not finite")
                raise TrainingDiverged(self._message(name, value, where, what))

    @staticmethod
    def _message(name: str, value: float, where: str, what: str) -> str:
        hint = next((h for prefix, h in _HINTS.items() if name == prefix), _DEFAULT_HINT)
        return f"{name} {what} ({value:.4g}) at {where}; try {hint}"

    def state_dict(self) -> dict:
        return {"scales": dict(self.scales)}

    def load_state_dict(self, state: dict) -> None:
        self.scales = dict(state["scales"])
