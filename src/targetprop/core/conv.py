"""Convolutional layers for target propagation: a layer kind like any other
(:class:`layers.Layer`, a pair of modules), so every chain rule trains it.

    f(h_{l-1}) = pool(act(W ∗ h_{l-1} + b))     3×3 convolution, padding 1;
                                                 pool: 2×2 max-pooling or none
    g(h_l)     = act_g(V ⊛ h_l + c)             a transposed convolution: 3×3
                                                 (no pooling) or 4×4 with stride 2,
                                                 a learned upsampling that undoes the pool

Activities are feature maps (B, C, H, W); targets, feedback objectives and
local losses are taken over every unit of a map, as over a vector. Without
pooling, V has the shape of Wᵀ: L-DRL's Jacobian matching condition
J_g = J_fᵀ can then be met exactly for the linear part. Max-pooling routes
each example's gradient through its own maximum, which no fixed V can do;
the learned upsampling spreads a target step over the 2×2 window as the
average example would (the same limit as one matrix for a ReLU layer, and
the target gating of :mod:`rules.dtp` puts back act′ where it is set).
"""
from __future__ import annotations

import math

from torch import nn

from .layers import Layer, make_activation

__all__ = ["ConvLayer", "image_shape_of", "conv_layers"]


def image_shape_of(in_shape: int | tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of the input: (H, W) images have one channel."""
    if isinstance(in_shape, int) or len(in_shape) not in (2, 3):
        raise ValueError(f"convolutional nets need images, but the data hold flat features "
                         f"({in_shape}); use an mlp: architecture")
    return (1, *in_shape) if len(in_shape) == 2 else tuple(in_shape)


class ConvLayer(Layer):
    """One convolutional block (module docstring) on maps of ``in_shape``,
    (C, H, W). The first layer of a classifier needs no feedback map, since
    a classifier never needs a target for x (``feedback_activation=None``)."""

    def __init__(self, in_shape: tuple[int, int, int], channels: int, pool: bool, activation: str = "tanh",
                 feedback_activation: str | None = "linear", dropout: float = 0.0):
        c, h, w = in_shape
        if pool and min(h, w) < 2:
            raise ValueError(f"a 2×2 max-pool needs maps of at least 2×2, this layer gets {h}×{w}: "
                             "use fewer pooled entries (or Cn entries without pooling)")
        act = make_activation(activation)
        f = [nn.Conv2d(c, channels, 3, padding=1), act] + ([nn.MaxPool2d(2)] if pool else [])
        g = None
        if feedback_activation is not None:
            if pool:  # output (2h' + output_padding) restores odd sizes that the pool floored
                up = nn.ConvTranspose2d(channels, c, 4, stride=2, padding=1,
                                        output_padding=(h % 2, w % 2))
            else:
                up = nn.ConvTranspose2d(channels, c, 3, padding=1)
            g = nn.Sequential(up, make_activation(feedback_activation))
        super().__init__(nn.Sequential(*f), g, dropout, activation=act)
        self.in_shape = in_shape
        self.out_shape = (channels, h // 2, w // 2) if pool else (channels, h, w)


def conv_layers(in_shape: tuple[int, int, int], entries: list[tuple[int, bool]], activation: str, dropout: float,
                feedback_activation: str | None) -> tuple[list[ConvLayer], int]:
    """The blocks (channels, pooled) of ``entries`` on images of ``in_shape``,
    and the number of features of the last map (the read-out's input)."""
    layers, shape = [], in_shape
    for i, (channels, pool) in enumerate(entries):
        layer = ConvLayer(shape, channels, pool, activation,
                          (feedback_activation or activation) if i else None,
                          dropout=0.0 if i == 0 else dropout)
        layers.append(layer)
        shape = layer.out_shape
    return layers, math.prod(shape)
