"""Feedback objectives: losses that teach a feedback map g_l to invert its
forward map f_l. Each takes the layer, its input h_{l-1} and output h_l (both
detached) and returns a scalar averaged over the batch whose gradient reaches
only g_l's parameters, because every forward-map evaluation runs under
``no_grad``. They evaluate f_l as :meth:`layers.Layer.fixed_forward`: the
map it was on the recorded batch, its batch norms at that batch's
statistics, so that g_l inverts one function and no running statistics
move.

``noise(t)`` returns an N(0, I) sample shaped like ``t``; by default a fresh
one from the global torch generator, drawn in float32 and cast, so a run in
float64 sees the same noise as one in float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from .layers import TPLayer
from .noise import Noise, gaussian_like
from .updates import local_target_loss, squared_norm

Tensor = torch.Tensor

__all__ = [
    "noisy_reconstruction_loss", "difference_reconstruction_loss",
    "local_difference_reconstruction_loss", "FeedbackPath", "FEEDBACK_OBJECTIVES",
]


class FeedbackObjective(Protocol):
    def __call__(self, layer: TPLayer, h_below: Tensor, h: Tensor, sigma: float,
                 regularization: float = 0.0, noise: Noise = ...) -> Tensor: ...


def _feedback_differences(layer: TPLayer, h: Tensor, steps: list[Tensor]) -> list[Tensor]:
    """g(h + d) − g(h) for each step d, in one call: V d where g is affine
    (``layer.feedback_linear``; the bias and any input term cancel), else g
    on every h + d and on h, stacked."""
    linear = getattr(layer, "feedback_linear", None)
    if linear is not None:
        return [linear(steps[0])] if len(steps) == 1 else list(linear(torch.cat(steps)).chunk(len(steps)))
    if not getattr(layer, "feedback_stacks", True):  # g normalises over its batch: one call per batch
        clean = layer.feedback(h)
        return [layer.feedback(h + d) - clean for d in steps]
    *moved, clean = layer.feedback(torch.cat([h + d for d in steps] + [h])).chunk(len(steps) + 1)
    return [m - clean for m in moved]


def noisy_reconstruction_loss(layer: TPLayer, h_below: Tensor, h: Tensor, sigma: float,
                              regularization: float = 0.0, noise: Noise = gaussian_like) -> Tensor:
    """DTP's denoising inverse loss (Lee et al. 2015, Eq. 16):

        L_g = ½ ‖g_l(f_l(h_{l-1} + ε)) − (h_{l-1} + ε)‖²,   ε ~ N(0, σ² I)

    The noisy input is a constant target for g's reconstruction: the loss is
    :func:`updates.local_target_loss`'s, whose gradient is written out.
    """
    noisy = torch.add(h_below, noise(h_below), alpha=sigma)
    with torch.no_grad():
        up = layer.fixed_forward(noisy)
    return local_target_loss([layer.feedback(up)], [noisy])


@dataclass(frozen=True)
class FeedbackPath:
    """The chain around layer l, for the difference reconstruction loss
    through the whole path: ``up`` carries a value of h_l to h_L through
    f_{l+1}..f_L (their maps on the recorded batch), ``down`` carries a value
    of h_L back to h_l down g_L..g_{l+1} with the difference corrections at
    the recorded states, exactly as the targets come down; ``top`` is h_L."""
    up: Callable[[Tensor], Tensor]
    down: Callable[[Tensor], Tensor]
    top: Tensor


def difference_reconstruction_loss(layer: TPLayer, h_below: Tensor, h: Tensor, sigma: float,
                                   regularization: float = 0.0, noise: Noise = gaussian_like, *,
                                   path: FeedbackPath | None = None) -> Tensor:
    """Difference reconstruction loss (Meulemans et al. 2020, §4). Layer-wise
    (``path`` None):

        L = 1/σ² ( ‖g(f(h_{l-1} + σε)) − g(h_l) − σε‖² + λ ‖g(h_l + ση) − g(h_l)‖² )

    ε, η ~ N(0, I). It reconstructs the *difference* that DTP propagates, so
    for small σ it drives J_g J_f → I, and the λ term damps J_g; its minimiser
    is the damped pseudo-inverse J_g = J_fᵀ(J_f J_fᵀ + λI)⁻¹, which makes the
    propagated targets Gauss-Newton targets. Through the whole ``path``, as
    the paper defines it, the noisy h_{l-1} + σε goes up every layer above
    to h_L and back down the feedback path to h_l before g_l:

        L = 1/σ² ( ‖g(D(U(f(h_{l-1} + σε)))) − g(h_l) − σε‖² + λ ‖g(D(h_L + ση)) − g(h_l)‖² )

    (U = ``path.up``, D = ``path.down``; η at the top damps the whole path),
    so g_l learns to make the path from h_L down to h_{l-1} the damped
    pseudo-inverse of the forward path from h_{l-1} up to h_L.
    """
    eps = noise(h_below)
    with torch.no_grad():
        up = layer.fixed_forward(torch.add(h_below, eps, alpha=sigma))
        if path is not None:
            up = path.down(path.up(up))
        steps = [up - h]
        if regularization > 0:
            steps.append(sigma * noise(h) if path is None
                         else path.down(torch.add(path.top, noise(path.top), alpha=sigma)) - h)
    out = _feedback_differences(layer, h, steps)
    loss = F.mse_loss(out[0], sigma * eps, reduction="sum")  # one fused kernel
    if regularization > 0:
        loss = torch.add(loss, squared_norm(out[1]), alpha=regularization)
    return loss * (1.0 / (h.shape[0] * sigma ** 2))


def local_difference_reconstruction_loss(layer: TPLayer, h_below: Tensor, h: Tensor, sigma: float,
                                         regularization: float = 0.0,
                                         noise: Noise = gaussian_like) -> Tensor:
    """Local difference reconstruction loss, L-DRL (Ernoult et al. 2022, §3):

        L = 1/σ² ( −σ εᵀ[g(f(h_{l-1} + σε)) − g(h_l)] + ½ ‖g(h_l + ση) − g(h_l)‖² )

    For small σ its expectation is −tr(J_g J_f) + ½‖J_g‖²_F, minimised by
    J_g = J_fᵀ (the Jacobian matching condition): difference targets then
    carry exactly the back-prop error down the chain.
    """
    eps, eta = noise(h_below), noise(h)
    with torch.no_grad():
        up = layer.fixed_forward(torch.add(h_below, eps, alpha=sigma))
    along_f, along_noise = _feedback_differences(layer, h, [up - h, sigma * eta])
    alignment = torch.vdot(eps.flatten().to(along_f.dtype), along_f.flatten())  # εᵀ[g(f(h_{l-1} + σε)) − g(h_l)]
    n = h.shape[0]
    return torch.add(alignment * (-1.0 / (sigma * n)), squared_norm(along_noise), alpha=0.5 / (sigma ** 2 * n))


FEEDBACK_OBJECTIVES: dict[str, FeedbackObjective] = {
    "noisy-reconstruction": noisy_reconstruction_loss,
    "drl": difference_reconstruction_loss,
    "ldrl": local_difference_reconstruction_loss,
}
