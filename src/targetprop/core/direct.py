"""Direct feedback: a chain whose every hidden layer h_l has a linear map
Q_l from the output's space (the logits a) back to it, in place of the
layer-wise g_l (Meulemans et al. 2020's DDTP-linear), and the direct
difference reconstruction loss that trains each Q_l.
"""
from __future__ import annotations

import math
from typing import Callable, ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Layer
from .networks import Chain, layer_shapes
from .noise import Noise, gaussian_like
from .updates import squared_norm

Tensor = torch.Tensor

__all__ = ["DirectFeedbackChain", "direct_feedback_chain", "direct_difference_reconstruction_loss"]


class DirectFeedbackChain(Chain):
    """A chain (its layers and read-out) with direct feedback maps
    ``direct[l-1]`` = Q_l: R^K → the shape of h_l, for l = 1..L (K the
    read-out's width); the layers carry no g_l of their own. Q_l has no
    bias: only differences Q_l(τ − a) are ever taken."""

    kind: ClassVar[str] = "direct"

    def __init__(self, layers: Sequence[Layer], output: nn.Module, direct: Sequence[nn.Module],
                 input_shape: Sequence[int] | None = None):
        super().__init__(layers, output, input_shape)
        if len(direct) != len(layers):
            raise ValueError(f"a direct feedback map per hidden layer: {len(layers)} layers, {len(direct)} maps")
        self.direct = nn.ModuleList(direct)

    def feedback_parameters(self) -> list[nn.Parameter]:
        return list(self.direct.parameters())

    def above(self, l: int, h: Tensor) -> Tensor:
        """The logits of a value ``h`` of h_l (l from 1): through the fixed
        maps of layers l+1..L (as on the recorded batch) and the read-out,
        without its dropout."""
        for layer in self.layers[l:]:
            h = layer.fixed_forward(h)
        was_training = self.output.training
        self.output.eval()
        try:
            return self.read_out(h)
        finally:
            self.output.train(was_training)


def direct_feedback_chain(chain: Chain, input_shape: int | Sequence[int]) -> DirectFeedbackChain:
    """``chain``'s layers and read-out with a direct map Q_l per hidden layer
    (Xavier-normal, as Meulemans et al. initialise them) and no g_l; the
    shapes of h_l are those of examples of ``input_shape``."""
    shapes, width = layer_shapes(chain, input_shape)
    direct = []
    for shape in shapes:
        linear = nn.Linear(width, math.prod(shape), bias=False)
        nn.init.xavier_normal_(linear.weight)
        direct.append(linear if len(shape) == 1 else nn.Sequential(linear, nn.Unflatten(1, shape)))
    for layer in chain.layers:
        layer.g = None
    return DirectFeedbackChain(list(chain.layers), chain.output, direct, chain.input_shape)


def direct_difference_reconstruction_loss(q: nn.Module, h: Tensor, above: Callable[[Tensor], Tensor],
                                          sigma: float, regularization: float = 0.0,
                                          noise: Noise = gaussian_like) -> Tensor:
    """The difference reconstruction loss of a direct map (Meulemans et al.
    2020, DDTP): h_l perturbed goes up through every layer above and the
    read-out (``above``), and Q_l must carry the change of the logits back:

        L = 1/(Bσ²) ( ‖Q_l(F(h_l + σε) − a) − σε‖² + λ ‖Q_l(ση)‖² )

    a = F(h_l); ε ~ N(0, I) like h_l, η ~ N(0, I) like a; F runs under
    no_grad, so the gradient reaches Q_l only. For small σ its minimiser is the damped
    pseudo-inverse Q_l = Jᵀ(JJᵀ + λI)⁻¹ of J = ∂a/∂h_l, which makes the
    targets h_l + Q_l(τ − a) Gauss–Newton targets."""
    eps = noise(h)
    with torch.no_grad():
        noisy, clean = above(torch.cat([torch.add(h, eps, alpha=sigma), h])).split(h.shape[0])
    steps = [noisy - clean] + ([sigma * noise(clean)] if regularization > 0 else [])
    out = q(torch.cat(steps)).split(h.shape[0])
    loss = F.mse_loss(out[0], sigma * eps, reduction="sum")
    if regularization > 0:
        loss = torch.add(loss, squared_norm(out[1]), alpha=regularization)
    return loss * (1.0 / (h.shape[0] * sigma ** 2))
