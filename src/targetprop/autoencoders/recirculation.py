"""The short loop of Bengio (2014), Algorithm 2: every layer-wise pair (f_l, g_l)
is trained as a denoising auto-encoder *both ways* without back-propagating
through it, after the recirculation algorithm of Hinton & McClelland (1988).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..core.layers import TPLayer
from ..core.updates import half_squared_error

Tensor = torch.Tensor

__all__ = ["short_loop_loss"]

Corrupt = Callable[[Tensor], Tensor]



def short_loop_loss(layer: TPLayer, h_below: Tensor, h: Tensor, corrupt: Corrupt,
                    corrupt_input: Corrupt | None = None, encoder_weight: float = 1.0,
                    long_loop_target: Tensor | None = None, through_encoder: bool = False) -> Tensor:
    """Algorithm 2, first loop, at layer l (h_below = h_{l-1}, h = h_l, detached):

        h̃_{l-1} = g_l(corrupt(h_l));   h_{l-1} is a target for h̃_{l-1}   (updates g_l)
        h_l is a target for f_l(h̃_{l-1})                                 (updates f_l)
        optionally, h_l is a target for f_l(corrupt_input(h_{l-1}))       (updates f_l)

    With ``long_loop_target`` ĥ_l, Algorithm 5's long-loop decoder term
    joins them: h_{l-1} is a target for g_l(corrupt(ĥ_l)) (updates g_l),
    decoded in the same batched call.

    Returns the sum of ½‖prediction − target‖² terms, each averaged over the
    batch, with the encoder (f_l) terms weighted by ``encoder_weight`` (0
    leaves f_l alone). Each prediction's input is detached, so the decoder
    terms reach only g_l and the encoder terms only f_l: no gradient crosses
    the pair. With ``through_encoder`` (``h`` then carries its graph to
    f_l), the reconstruction of h_{l-1} from corrupt(h_l) is back-propagated
    into f_l too: the layer trains as one denoising auto-encoder (§6).
    """
    n = h.shape[0]
    codes = h if long_loop_target is None else torch.cat([h, long_loop_target])
    corrupted = corrupt(codes)
    reconstructions = layer.feedback(corrupted if through_encoder else corrupted.detach())
    h = h.detach()
    # (example, loop, unit): the error summed over loops, averaged over examples
    k = len(codes) // n
    loss = half_squared_error(reconstructions.reshape(k, n, -1).transpose(0, 1),
                              h_below.reshape(n, 1, -1).expand(-1, k, -1))  # h_below of any shape (an image)
    if encoder_weight:
        encoder = half_squared_error(layer.f(reconstructions[:n].detach()), h)
        if corrupt_input is not None:
            encoder = encoder + half_squared_error(layer.f(corrupt_input(h_below).detach()), h)
        loss = loss + encoder_weight * encoder
    return loss
