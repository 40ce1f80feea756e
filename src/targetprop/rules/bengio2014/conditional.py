"""The supervised architecture of Bengio (2014) §3.1 (Figure 4): a stack of
layer-wise auto-encoders topped by a *conditional* auto-encoder that sees the
label as an extra, maskable input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...core.discrete import check_continuous
from ...core.layers import make_map
from ...core.networks import TPNetwork, flat_features

Tensor = torch.Tensor

__all__ = ["ConditionalTop", "ConditionalNetwork", "build_conditional"]


class ConditionalTop(nn.Module):
    """Top-level auto-encoder over (h_{L-1}, y):

        h_L      = f_L(h_{L-1}, m·y, m) = act(W_h h_{L-1} + W_y (m·y) + w_m m + b)
        ĥ_{L-1}  = g_L^h(h_L) = act_below(V_h h_L + c_h)
        ŷ        = g_L^y(h_L) = softmax(V_y h_L + c_y)      (cross-entropy reconstruction)

    With ``hidden`` > 0 the encoder f_L and the decoder g_L^h are
    one-hidden-layer MLPs (§6: back-prop inside the top layer).

    y is one-hot and m ∈ {0, 1} says whether it is observed; a missing label
    is the zero vector with m = 0 (§3.1). Called on h_{L-1} alone, the module
    predicts as Algorithm 4 does: the logits of g_L^y(f_L(h_{L-1}, 0, 0)).
    """

    def __init__(self, in_features: int, width: int, num_classes: int, activation: str = "tanh",
                 below_activation: str = "tanh", hidden: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.encoder = make_map(in_features + num_classes + 1, width, activation, hidden, activation)
        self.g_h = make_map(width, in_features, below_activation, hidden, activation)
        self.g_y = nn.Linear(width, num_classes)

    def encode(self, h_below: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """f_L(h_{L-1}, m·y, m); ``y`` holds class indices (any value where m = 0),
        ``mask`` is a float or bool vector of m."""
        m = mask.to(h_below.dtype).unsqueeze(1)
        label = F.one_hot(y.clamp_min(0), self.num_classes).to(h_below.dtype) * m
        return self.encoder(torch.cat([h_below, label, m], dim=1))

    def reconstruct(self, h_below: Tensor, y: Tensor, *masks: Tensor) -> tuple[Tensor, ...]:
        """g_L^h(f_L(h_{L-1}, m·y, m)) for each mask m, in one batched call."""
        n = len(masks)
        joined = self.g_h(self.encode(h_below.repeat(n, 1), y.repeat(n), torch.cat(masks)))
        return joined.split(h_below.shape[0])

    def forward(self, h_below: Tensor) -> Tensor:
        """Algorithm 4: logits of ŷ with the label missing."""
        missing = torch.zeros(h_below.shape[0], dtype=torch.long, device=h_below.device)
        return self.g_y(self.encode(h_below, missing, missing))


class ConditionalNetwork(TPNetwork):
    """Layers 1..L-1, each with its auto-encoder pair (f_l, g_l) (g_1 decodes
    back to x), and the conditional top auto-encoder as layer L.

    ``widths`` lists h_1..h_L: the last width is the top code h_L. ``hidden``
    and ``top_hidden`` make the layer-wise and the top maps small MLPs. Forward
    parameters are the encoders f_1..f_L; feedback parameters all decoders,
    g_L^h and g_L^y included.
    """

    kind = "conditional"

    def __init__(self, in_features: int, widths: list[int], num_classes: int,
                 activation: str = "tanh", dropout: float = 0.0, hidden: int = 0, top_hidden: int = 0):
        if len(widths) < 2:
            raise ValueError("bengio2014 needs at least two layers: hidden layers and the top code")
        super().__init__(in_features, widths[:-1], num_classes, activation, dropout, first_feedback=True,
                         hidden=hidden)
        self.output = ConditionalTop(widths[-2], widths[-1], num_classes, activation, activation,
                                     top_hidden)

    def forward_parameters(self) -> list[nn.Parameter]:
        return self.layer_forward_parameters() + list(self.output.encoder.parameters())

    def feedback_parameters(self) -> list[nn.Parameter]:
        top = self.output
        return super().feedback_parameters() + list(top.g_h.parameters()) + list(top.g_y.parameters())


def build_conditional(spec, input_shape, num_outputs: int, activation: str = "tanh", dropout: float = 0.0,
                      layer_hidden: int = 0, top_hidden: int = 0) -> ConditionalNetwork:
    """The conditional net of an ``mlp:W1-...-WL`` spec: h_1..h_{L-1} and the top code h_L."""
    check_continuous(activation, "bengio2014")
    return ConditionalNetwork(flat_features(input_shape), spec.arguments["widths"], num_outputs, activation,
                              dropout, layer_hidden, top_hidden)
