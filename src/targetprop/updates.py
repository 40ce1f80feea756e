"""Local updates: how a layer moves its output toward its target."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["local_target_loss"]


def local_target_loss(outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_l ½‖f_l(h_{l-1}) − ĥ_l‖², averaged over the batch (Bengio 2014 §2.2.6,
    "ĥ_l is a target for h_l"; Lee et al. 2015, Eq. 10).

    Each output must carry a graph whose input was detached, so the gradient of
    term l reaches only layer l's parameters: minimising the sum with any
    ``torch.optim`` optimizer is one local step per layer.
    """
    # mse_loss is one fused kernel forward and backward: cheaper than sub/pow/sum.
    total = sum(F.mse_loss(out, target, reduction="sum") for out, target in zip(outputs, targets))
    return total * (0.5 / outputs[0].shape[0])
