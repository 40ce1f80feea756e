"""The supervised architecture of Bengio (2014) §3.1 (Figure 4): a stack of
layer-wise auto-encoders topped by a *conditional* auto-encoder that sees the
label as an extra, maskable input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...core.architectures import user_model
from ...core.discrete import check_continuous
from ...core.layers import ACTIVATIONS, make_map
from ...core.networks import Chain, TPNetwork, flat_features
from ...core.wrap import wrap

Tensor = torch.Tensor

__all__ = ["ConditionalTop", "ConditionalNetwork", "conditional_mlp", "conditional_from_model", "build_conditional"]


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


class ConditionalNetwork(Chain):
    """Layers 1..L-1, each with its auto-encoder pair (f_l, g_l) (g_1 decodes
    back to x), and the conditional top auto-encoder as layer L (its
    ``output``: Algorithm 4 predicts with it). Forward parameters are the
    encoders f_1..f_L; feedback parameters all decoders, g_L^h and g_L^y
    included. Built from an ``mlp:`` spec (:func:`conditional_mlp`) or from a
    fully connected ``nn.Sequential`` of the user's own
    (:func:`conditional_from_model`)."""

    kind = "conditional"

    def __init__(self, layers, top: ConditionalTop, input_shape=None):
        super().__init__(layers, top, input_shape)

    def forward_parameters(self) -> list[nn.Parameter]:
        return self.layer_forward_parameters() + list(self.output.encoder.parameters())

    def feedback_parameters(self) -> list[nn.Parameter]:
        top = self.output
        return super().feedback_parameters() + list(top.g_h.parameters()) + list(top.g_y.parameters())


def conditional_mlp(in_features: int, widths: list[int], num_classes: int, activation: str = "tanh",
                    dropout: float = 0.0, hidden: int = 0, top_hidden: int = 0) -> ConditionalNetwork:
    """``widths`` lists h_1..h_L: the last width is the top code h_L.
    ``hidden`` and ``top_hidden`` make the layer-wise and the top maps small
    MLPs."""
    if len(widths) < 2:
        raise ValueError("bengio2014 needs at least two layers: hidden layers and the top code")
    body = TPNetwork(in_features, widths[:-1], num_classes, activation, dropout, first_feedback=True,
                     hidden=hidden)
    top = ConditionalTop(widths[-2], widths[-1], num_classes, activation, activation, top_hidden)
    return ConditionalNetwork(body.layers, top, body.input_shape)


# the activations a top auto-encoder's maps can be given by name, by module type
_NAMES = {type(make()): name for name, make in ACTIVATIONS.items()}


@torch.no_grad()
def conditional_from_model(model: nn.Module, input_shape, num_classes: int, top_width: int = 0,
                           top_hidden: int = 0) -> ConditionalNetwork:
    """A fully connected ``nn.Sequential``'s blocks (:func:`core.wrap.wrap`,
    each g_l = act_{l−1}(V h + c), g_1 linear back to the input) under a
    conditional top auto-encoder in place of the model's read-out, its code
    ``top_width`` wide (0: as wide as the last block). Every block must give
    vectors: the layer-wise auto-encoders and the top read them so."""
    if isinstance(model, ConditionalNetwork):
        return model
    if hasattr(model, "layers"):
        raise ValueError("bengio2014 builds its conditional net from an nn.Sequential of your own (or an mlp: "
                         "spec); this is a network of target propagation already, with its own read-out")
    chain = wrap(model, input_shape, num_classes, feedback_map="activation", first_feedback=True)
    was_training = chain.training
    chain.eval()
    like = next(chain.parameters())  # dtype and device
    h = chain.as_input(torch.zeros(2, *input_shape, dtype=like.dtype, device=like.device))
    for l, layer in enumerate(chain.layers, start=1):
        h = layer(h)
        if h.dim() != 2:
            raise ValueError(f"bengio2014's layer-wise auto-encoders and its top read vectors, but block {l} of "
                             f"this model gives {tuple(h.shape[1:])}: use a fully connected model, or a chain rule "
                             "(bp, tp, dtp, drl, ldrl)")
    chain.train(was_training)
    below = chain.layers[-1].activation
    name = _NAMES.get(type(below), "linear")
    top = ConditionalTop(h.shape[1], top_width or h.shape[1], num_classes, name if name != "linear" else "tanh",
                         name, top_hidden).to(like)
    return ConditionalNetwork(chain.layers, top, chain.input_shape)


def build_conditional(spec, input_shape, num_outputs: int, activation: str = "tanh", dropout: float = 0.0,
                      layer_hidden: int = 0, top_hidden: int = 0, top_width: int = 0) -> ConditionalNetwork:
    """The conditional net of an ``mlp:W1-...-WL`` spec (h_1..h_{L-1} and the
    top code h_L), or of the fully connected model of a ``FILE.py:FUNCTION``
    spec."""
    check_continuous(activation, "bengio2014")
    if spec.name == "file":
        if (activation, dropout, layer_hidden) != ("tanh", 0.0, 0):
            raise ValueError(f"{spec.text}: activation, dropout and layer_hidden are in your model's code")
        model = user_model(spec.arguments["path"], spec.arguments["function"], input_shape, num_outputs)
        return conditional_from_model(model, input_shape, num_outputs, top_width, top_hidden)
    if top_width:
        raise ValueError(f"{spec.text}: an mlp: spec's last width is the top code; top_width is for a model of "
                         "your own")
    return conditional_mlp(flat_features(input_shape), spec.arguments["widths"], num_outputs, activation, dropout,
                           layer_hidden, top_hidden)
