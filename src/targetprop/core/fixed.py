"""Fixed feedback: a chain whose feedback maps are drawn at random once and
never trained (Shibuya et al. 2023, fixed-weight DTP), with a fixed map from
the output back to the top layer, so that no weight of the forward path is
ever read backwards (no Wᵀ of the read-out either).
"""
from __future__ import annotations

import copy
import math
from typing import ClassVar, Sequence

import torch
from torch import nn

from .layers import Layer
from .networks import Chain, layer_shapes

__all__ = ["FixedFeedbackChain", "fixed_feedback_chain", "freeze"]


class FixedFeedbackChain(Chain):
    """A chain whose g_l are constants (their weights buffers, kept in the
    state dict), and ``output_feedback``: a fixed map from the logits' space
    to h_L. It has no feedback parameters."""

    kind: ClassVar[str] = "fixed"

    def __init__(self, layers: Sequence[Layer], output: nn.Module, output_feedback: nn.Module,
                 input_shape: Sequence[int] | None = None):
        super().__init__(layers, output, input_shape)
        self.output_feedback = output_feedback

    def feedback_parameters(self) -> list[nn.Parameter]:
        return []


def freeze(module: nn.Module) -> nn.Module:
    """``module`` with every parameter turned into a buffer of the same value:
    it computes as before, follows ``.to()`` and the state dict, and no
    optimizer sees it."""
    for owner in list(module.modules()):
        for name, parameter in list(owner.named_parameters(recurse=False)):
            del owner._parameters[name]
            owner.register_buffer(name, parameter.detach().clone())
    return module


@torch.no_grad()
def _draw(module: nn.Module, scale: float) -> None:
    """Every weight of ``module`` U(±scale·√(3 / fan_in)) (variance scale²/fan_in), every bias 0."""
    for name, parameter in module.named_parameters():
        if parameter.dim() > 1:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(parameter)
            bound = scale * math.sqrt(3.0 / fan_in)
            parameter.copy_(torch.rand(parameter.shape) * (2 * bound) - bound)
        else:
            parameter.zero_()


def fixed_feedback_chain(chain: Chain, input_shape: int | Sequence[int], scale: float = 1.0,
                         feedback_map: str = "linear") -> FixedFeedbackChain:
    """``chain`` with every g_l redrawn at random (weights U(±scale·√(3/fan_in)),
    biases 0, Shibuya et al.'s g_l having none) and frozen, and a fixed map
    from the logits to h_L: linear, or followed by the top layer's activation
    with ``feedback_map=activation`` (as each g_l then is)."""
    shapes, width = layer_shapes(chain, input_shape)
    top = shapes[-1]
    for layer in chain.layers:
        if layer.g is not None and list(layer.g.parameters()):
            _draw(layer.g, scale)
            freeze(layer.g)
    linear = nn.Linear(width, math.prod(top), bias=False)
    _draw(linear, scale)
    parts = [linear] + ([nn.Unflatten(1, top)] if len(top) > 1 else [])
    activation = chain.layers[-1].activation
    if feedback_map == "activation" and activation is not None:
        parts.append(copy.deepcopy(activation))
    return FixedFeedbackChain(list(chain.layers), chain.output, freeze(nn.Sequential(*parts)), chain.input_shape)
