"""The short loop of Bengio (2014), Algorithm 2: every layer-wise pair (f_l, g_l)
is trained as a denoising auto-encoder *both ways* without back-propagating
through it, after the recirculation algorithm of Hinton & McClelland (1988).
"""
from __future__ import annotations

from typing import Callable

import torch

from .networks import TPLayer
from .updates import half_squared_error

Tensor = torch.Tensor

__all__ = ["short_loop_loss"]



def short_loop_loss(layer: TPLayer, h_below: Tensor, h: Tensor, corrupt: Callable[[Tensor], Tensor],
                    corrupt_encoder_input: bool = False) -> Tensor:
    """Algorithm 2, first loop, at layer l (h_below = h_{l-1}, h = h_l, detached):

        h̃_{l-1} = g_l(corrupt(h_l));   h_{l-1} is a target for h̃_{l-1}   (updates g_l)
        h_l is a target for f_l(h̃_{l-1})                                 (updates f_l)
        optionally, h_l is a target for f_l(corrupt(h_{l-1}))             (updates f_l)

    Returns the sum of ½‖prediction − target‖² terms, averaged over the
    batch. Each prediction's input is detached, so the decoder term reaches
    only g_l and the encoder terms only f_l: no gradient crosses the pair.
    """
    reconstruction = layer.feedback(corrupt(h).detach())
    loss = half_squared_error(reconstruction, h_below)
    loss = loss + half_squared_error(layer.f(reconstruction.detach()), h)
    if corrupt_encoder_input:
        loss = loss + half_squared_error(layer.f(corrupt(h_below).detach()), h)
    return loss
