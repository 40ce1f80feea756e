"""Local updates: how a layer moves its output toward its target."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["half_squared_error", "local_target_loss"]


def half_squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½‖prediction − target‖², summed over units and averaged over the batch
    ("target is a target for prediction", Bengio 2014 §2.2.5)."""
    return F.mse_loss(prediction, target, reduction="sum") * (0.5 / prediction.shape[0])


def local_target_loss(outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_l ½‖f_l(h_{l-1}) − ĥ_l‖², averaged over the batch (Bengio 2014 §2.2.6,
    "ĥ_l is a target for h_l"; Lee et al. 2015, Eq. 10).

    Each output must carry a graph whose input was detached, so the gradient of
    term l reaches only layer l's parameters: minimising the sum with any
    ``torch.optim`` optimizer is one local step per layer.
    """
    # One fused kernel over all layers at once: on small layers the per-op
    # overhead of a loss per layer costs more than the arithmetic.
    flat = torch.cat([out.reshape(-1) for out in outputs])
    with torch.no_grad():
        flat_targets = torch.cat([target.reshape(-1) for target in targets])
    return F.mse_loss(flat, flat_targets, reduction="sum") * (0.5 / outputs[0].shape[0])
