"""Local updates: how a layer moves its output toward its target."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["half_squared_error", "squared_norm", "gaussian_nll", "MIN_LOG_VARIANCE", "local_target_loss"]

# Floor of a learned log-variance: features that never vary (image borders)
# would otherwise drive it to −∞ and the likelihood to +∞.
MIN_LOG_VARIANCE = -7.0


def half_squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½‖prediction − target‖², summed over units and averaged over the batch
    ("target is a target for prediction", Bengio 2014 §2.2.5)."""
    return F.mse_loss(prediction, target, reduction="sum") * (0.5 / prediction.shape[0])


def squared_norm(t: torch.Tensor) -> torch.Tensor:
    """‖t‖² over all of t's entries (the whole batch), in one kernel."""
    return torch.vdot(t.flatten(), t.flatten())


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """−log N(x; mean, diag exp(log_variance)), summed over features and
    averaged over the batch (nats per example); the log-variance is floored
    at ``MIN_LOG_VARIANCE``."""
    log_variance = log_variance.clamp_min(MIN_LOG_VARIANCE)
    per_feature = (x - mean).pow(2) / log_variance.exp() + log_variance + math.log(2 * math.pi)
    return 0.5 * per_feature.sum(-1).mean()


class _LocalTargetLoss(torch.autograd.Function):
    """Σ_l ½‖o_l − t_l‖² / B with the gradient (o_l − t_l) / B written out.

    Autograd of the same sum would concatenate the layers (or run one loss
    per layer) and then split the gradient again; on small layers those
    per-op overheads cost more than the arithmetic.
    """

    @staticmethod
    def forward(ctx, num_layers: int, examples: int, *outputs_then_targets: torch.Tensor) -> torch.Tensor:
        outputs, targets = outputs_then_targets[:num_layers], outputs_then_targets[num_layers:]
        scale = 1.0 / examples
        differences = [torch.sub(out, target) for out, target in zip(outputs, targets)]
        ctx.scale = scale
        ctx.save_for_backward(*differences)
        squares = [squared_norm(d) for d in differences]
        total = squares[0] if num_layers == 1 else torch.stack(squares).sum()
        return total * (0.5 * scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        differences = ctx.saved_tensors
        scale = grad * ctx.scale
        return (None, None, *[d * scale for d in differences], *[None] * len(differences))


def local_target_loss(outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                      examples: int | None = None) -> torch.Tensor:
    """Σ_l ½‖f_l(h_{l-1}) − ĥ_l‖², averaged over the batch (Bengio 2014 §2.2.6,
    "ĥ_l is a target for h_l"; Lee et al. 2015, Eq. 10): divided by
    ``examples``, the batch's count (default: the first output's rows;
    a recurrent net's steps stacked, or a tree's levels, have more or fewer).

    Each output must carry a graph whose input was detached, so the gradient of
    term l reaches only layer l's parameters: minimising the sum with any
    ``torch.optim`` optimizer is one local step per layer. The targets are
    constants: no gradient reaches them.
    """
    constants = [t.detach() if t.requires_grad else t for t in targets]
    return _LocalTargetLoss.apply(len(outputs), examples or len(outputs[0]), *outputs, *constants)
