"""Networks for target propagation: chains of layers (:mod:`.layers`) under
a read-out. A classifier is the chain of hidden layers h_1..h_L (h_0 = x)
followed by a linear read-out that produces the logits.

Every network that a rule trains answers the same protocol
(:class:`Network`): ``layers`` (each with f_l and, where it has one, g_l),
``forward(x)`` (the prediction), and the parameters of the two optimizers,
``forward_parameters()`` and ``feedback_parameters()``.
"""
from __future__ import annotations

import math
import re
from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from .conv import CONV_PRESETS, conv_layers, image_shape_of, is_conv_spec
from .discrete import DISCRETE_UNITS, Transmit
from .invertible import InvertibleLayer
from .layers import ACTIVATIONS, Layer, TPLayer
from .recurrent import RecurrentNetwork, is_recurrent_spec, parse_recurrent_spec, sequence_shape_of

__all__ = ["Network", "Chain", "TPNetwork", "ARCHITECTURES", "parse_spec", "parse_arch", "build_network",
           "flat_features", "he_init"]

ARCHITECTURES = ("mlp:WIDTHxDEPTH", "mlp:W1-W2-...", "invertible:WIDTHxDEPTH", "invertible-svd:WIDTHxDEPTH",
                 "cnn:C1-C2-...", *CONV_PRESETS, "rnn:WIDTH",
                 "gru:WIDTH")


@runtime_checkable
class Network(Protocol):
    """What the learner, the trainer and the diagnostics ask of a network."""

    layers: Sequence[nn.Module]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...
    def forward_parameters(self) -> list[nn.Parameter]: ...
    def feedback_parameters(self) -> list[nn.Parameter]: ...


class Chain(nn.Module):
    """A chain of layers (any :class:`Layer`: a pair of modules f, g) under a
    read-out: h_0 = x, h_l = layer_l(h_{l-1}), logits = output(h_L). Every
    chain rule (``bp``, ``tp``, ``dtp``, ``drl``, ``ldrl``) trains any chain:
    a new layer kind is a new pair of modules, not a new code path."""

    def __init__(self, layers: Sequence[Layer], output: nn.Module):
        super().__init__()
        if not layers:
            raise ValueError("a network needs at least one hidden layer")
        self.layers = nn.ModuleList(layers)
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers:
            h = layer(h)
        return self.output(h)

    def unrolled(self, x: torch.Tensor) -> Sequence[Layer]:
        """The layers a batch ``x`` goes through: the chain's own (a
        recurrent net's are its time steps, :mod:`.recurrent`)."""
        return self.layers

    def layer_forward_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in layer.forward_parameters()]

    def weight_groups(self) -> dict[str, list[nn.Parameter]]:
        """The weights the angle diagnostics compare, by layer (numbered from 1)."""
        return {str(l): layer.weights() for l, layer in enumerate(self.layers, start=1)}

    def forward_parameters(self) -> list[nn.Parameter]:
        return self.layer_forward_parameters() + list(self.output.parameters())

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in layer.feedback_parameters()]


class TPNetwork(Chain):
    """The fully connected chain: hidden layers h_1..h_L (each a
    :class:`TPLayer`) and a linear read-out.

    Layer l > 1 has g_l: h_l -> h_{l-1}; ``layers[0]`` has one (a linear
    decoder back to the input) only with ``first_feedback``, since a
    classifier never needs a target for x. ``dropout`` drops hidden units on
    their way into the next layer and the read-out (never the input pixels).
    A discrete ``activation`` (``sign``, ``step``, ``bernoulli``,
    :mod:`.discrete`) gives every hidden unit its continuous activation and
    makes each layer above, and the read-out, read its discrete message.
    ``feedback_activation`` is that of every g_l (default: the layer's own
    activation, so g_l's values lie in h_{l-1}'s range, Lee et al. 2015 §2.3).
    """

    def __init__(self, in_features: int, widths: list[int], num_classes: int,
                 activation: str = "tanh", dropout: float = 0.0, first_feedback: bool = False,
                 hidden: int = 0, feedback_activation: str | None = None):
        if not widths:
            raise ValueError("a network needs at least one hidden layer")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        activation, kind = DISCRETE_UNITS.get(activation, (activation, None))
        sizes = [in_features, *widths]
        first_g = "linear" if first_feedback else None  # a decoder back to the input, if asked for
        layers = [TPLayer(sizes[i], sizes[i + 1], activation,
                          feedback_activation=(feedback_activation or activation) if i else first_g,
                          dropout=0.0 if i == 0 else dropout, hidden=hidden, transmit=kind if i else None)
                  for i in range(len(widths))]
        output = nn.Linear(widths[-1], num_classes)
        if kind is not None:
            output = nn.Sequential(Transmit(kind), output)
        super().__init__(layers, nn.Sequential(nn.Dropout(dropout), output) if dropout > 0 else output)


_ARCH_RE = re.compile(r"^(mlp|invertible|invertible-svd):(?:(\d+)x(\d+)|(\d+(?:-\d+)*))$")


def parse_spec(spec: str) -> tuple[str, list[int]]:
    """The kind and hidden widths of a spec: ``mlp:256x5`` (5 layers of 256),
    ``mlp:512-256-128``, or ``invertible:256x5`` (a first layer to 256, then
    square layers with exact inverses, W = L Lᵀ, :mod:`.invertible`;
    ``invertible-svd:256x5`` for W = U D Vᵀ)."""
    match = _ARCH_RE.match(spec.strip())
    if match is None:
        raise ValueError(f"unknown architecture {spec!r}; valid forms: {', '.join(ARCHITECTURES)}"
                         " (e.g. mlp:256x5)")
    kind, width, depth, listed = match.groups()
    widths = [int(width)] * int(depth) if listed is None else [int(w) for w in listed.split("-")]
    if not widths or min(widths) < 1:
        raise ValueError(f"architecture {spec!r} needs at least one layer of positive width")
    if kind != "mlp" and len(set(widths)) != 1:
        raise ValueError(f"architecture {spec!r}: layers with exact inverses are square, so every width "
                         "must be the same (e.g. invertible:256x5)")
    return kind, widths


def parse_arch(spec: str) -> list[int]:
    """Hidden widths of an ``mlp:`` spec (the kind every rule builds)."""
    kind, widths = (("cnn", []) if is_conv_spec(spec) else ("rnn", []) if is_recurrent_spec(spec)
                    else parse_spec(spec))
    if kind != "mlp":
        raise ValueError(f"architecture {spec!r} is for the chain rules (bp, tp, dtp, drl, ldrl); "
                         "this rule builds mlp: networks")
    return widths


def build_network(arch: str, in_features: int | tuple[int, ...], num_classes: int, activation: str = "tanh",
                  dropout: float = 0.0, hidden: int = 0, feedback_activation: str | None = None) -> Chain:
    """The chain of ``arch`` on inputs of ``in_features`` features, or of
    that shape ((H, W) or (C, H, W) images: convolutional nets need it;
    (T, features) sequences: recurrent nets need it). A recurrent net's g is
    linear whatever ``feedback_activation`` says."""
    if activation not in ACTIVATIONS and activation not in DISCRETE_UNITS:  # before any allocation
        raise ValueError(f"unknown activation {activation!r}; choose one of: "
                         f"{', '.join([*ACTIVATIONS, *DISCRETE_UNITS])}")
    if is_recurrent_spec(arch):
        if dropout or hidden:
            raise ValueError(f"{arch}: recurrent nets take dropout=0 and layer_hidden=0")
        kind, width = parse_recurrent_spec(arch)
        return RecurrentNetwork(sequence_shape_of(in_features), width, num_classes, activation, kind=kind)
    if is_conv_spec(arch):
        if activation not in ACTIVATIONS or hidden:
            raise ValueError(f"{arch}: convolutional layers take the activations {', '.join(ACTIVATIONS)} "
                             "and layer_hidden=0")
        layers, features = conv_layers(image_shape_of(in_features), arch, activation, dropout,
                                       feedback_activation)
        output = nn.Sequential(nn.Flatten(), *([nn.Dropout(dropout)] if dropout > 0 else []),
                               nn.Linear(features, num_classes))
        return Chain(layers, output)
    in_features = flat_features(in_features)
    kind, widths = parse_spec(arch)
    if kind == "mlp":
        return TPNetwork(in_features, widths, num_classes, activation, dropout, hidden=hidden,
                         feedback_activation=feedback_activation)
    if activation != "tanh" or hidden:
        raise ValueError(f"{kind}: layers are tanh(W h + b): use activation=tanh and layer_hidden=0")
    first = TPLayer(in_features, widths[0], "tanh", feedback_activation=None)
    parametrisation = "svd" if kind == "invertible-svd" else "cholesky"
    rest = [InvertibleLayer(width, dropout, parametrisation) for width in widths[1:]]
    output = nn.Linear(widths[-1], num_classes)
    return Chain([first, *rest], nn.Sequential(nn.Dropout(dropout), output) if dropout > 0 else output)


def flat_features(inputs: int | tuple[int, ...]) -> int:
    """The number of input features, given it or the shape of one example."""
    return inputs if isinstance(inputs, int) else math.prod(inputs)


@torch.no_grad()
def he_init(net: Network) -> None:
    """W ~ N(0, 2 / fan_in), b = 0 for every affine map (and convolution) of every forward map f_l
    (He et al. 2015): activity keeps its scale through a ReLU net instead of
    shrinking layer by layer (PyTorch's default, U(±1/√fan_in), halves it in
    every ReLU layer), so the rule does not have to grow the weights first —
    the phase in which target propagation's noisy early updates inflate a
    ReLU net's activity (issue 10)."""
    for layer in net.layers:
        for module in layer.f.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
