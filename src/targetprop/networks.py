"""Networks for target propagation: chains of layers that each own a forward
map f_l and a feedback map g_l (the decoder of the layer's auto-encoder).

Notation follows Bengio (2014) §2: h_0 = x, h_l = f_l(h_{l-1}); the feedback
map g_l goes the other way, h_l -> h_{l-1}, and is trained to invert f_l.
A classifier is the chain of hidden layers h_1..h_L followed by a linear
read-out that produces the logits.
"""
from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS", "ARCHITECTURES", "TPLayer", "TPNetwork", "InverseAffine",
    "parse_arch", "build_network", "make_map",
]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky-relu": lambda: nn.LeakyReLU(0.1),
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}

ARCHITECTURES = ("mlp:WIDTHxDEPTH", "mlp:W1-W2-...")


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def make_map(in_features: int, out_features: int, activation: str, hidden: int = 0,
             hidden_activation: str = "tanh") -> nn.Sequential:
    """act(W x + b), or with ``hidden`` > 0 a small MLP
    act(W₂ act_h(W₁ x + b₁) + b₂): an encoder or decoder that is itself a
    network, trained by back-prop inside the layer (Bengio 2014 §6)."""
    if hidden < 0:
        raise ValueError(f"hidden width must be >= 0, got {hidden}")
    inner = ([nn.Linear(in_features, hidden), make_activation(hidden_activation)]
             if hidden else [])
    return nn.Sequential(*inner, nn.Linear(hidden or in_features, out_features),
                         make_activation(activation))


class TPLayer(nn.Module):
    """One layer of a target-propagation chain.

    f(h_{l-1}) = act(W h_{l-1} + b)           (forward map, the encoder)
    g(h_l)     = act_g(V h_l + c)             (feedback map, the decoder)

    With ``hidden`` > 0, f and g are each a one-hidden-layer MLP
    (:func:`make_map`); W is then the encoder's last weight matrix.

    ``act_g`` is the activation of the layer below, so that g_l produces values
    in the range of h_{l-1} (Lee et al. 2015, §2.3). The feedback map is
    optional: the first layer of a classifier never needs one.

    With ``dropout`` > 0 the layer drops units of its *input* in training mode:
    the layer computes f(drop(h_{l-1})) while f itself stays deterministic, so
    feedback objectives, which evaluate ``layer.f``, invert f and not the
    random mask.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "tanh",
                 feedback_activation: str | None = "linear", dropout: float = 0.0, hidden: int = 0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.f = make_map(in_features, out_features, activation, hidden, activation)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.g: nn.Module | None = None
        if feedback_activation is not None:
            self.g = make_map(out_features, in_features, feedback_activation, hidden, activation)

    @property
    def weight(self) -> torch.Tensor:
        """The forward weight matrix W that produces h_l (what diagnostics
        compare with back-prop)."""
        return self.f[-2].weight

    def forward(self, h_below: torch.Tensor) -> torch.Tensor:
        return self.f(self.dropout(h_below))

    @property
    def drops_input(self) -> bool:
        """Whether ``forward`` differs from ``f`` right now (dropout in training mode)."""
        return self.training and isinstance(self.dropout, nn.Dropout)

    def feedback(self, h: torch.Tensor) -> torch.Tensor:
        if self.g is None:
            raise RuntimeError("this layer has no feedback map g")
        return self.g(h)

    def forward_parameters(self):
        return self.f.parameters()

    def feedback_parameters(self):
        return self.g.parameters() if self.g is not None else iter(())


_INVERSE_ACTIVATIONS: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    nn.Tanh: lambda h: torch.atanh(h.clamp(-1 + 1e-7, 1 - 1e-7)),
    nn.Sigmoid: lambda h: torch.logit(h, eps=1e-7),
    nn.Identity: lambda h: h,
}


class InverseAffine(nn.Module):
    """The exact inverse of a square invertible layer f(h) = act(W h + b):
    f^{-1}(y) = W^{-1}(act^{-1}(y) - b) (Bengio 2014 §6).

    It reads W and b from the forward layer on every call, so it stays exact
    while f learns. Used as an oracle feedback map in tests and studies.
    """

    def __init__(self, layer: TPLayer):
        super().__init__()
        if len(layer.f) != 2:
            raise ValueError("an exact inverse needs a one-layer encoder")
        linear, act = layer.f[0], layer.f[1]
        if linear.in_features != linear.out_features:
            raise ValueError("an exact inverse needs a square layer")
        if isinstance(act, nn.LeakyReLU):
            slope = act.negative_slope
            self._act_inv = lambda h: torch.where(h >= 0, h, h / slope)
        elif type(act) in _INVERSE_ACTIVATIONS:
            self._act_inv = _INVERSE_ACTIVATIONS[type(act)]
        else:
            raise ValueError(f"activation {type(act).__name__} has no inverse")
        self._linear = [linear]  # a list, so the forward layer is not registered twice

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        linear = self._linear[0]
        pre = self._act_inv(y) - linear.bias
        return torch.linalg.solve(linear.weight, pre.T).T


class TPNetwork(nn.Module):
    """Hidden layers h_1..h_L (each a :class:`TPLayer`) and a linear read-out.

    Layer l > 1 has g_l: h_l -> h_{l-1}; ``layers[0]`` has one (a linear
    decoder back to the input) only with ``first_feedback``, since a
    classifier never needs a target for x. ``dropout`` drops hidden units on
    their way into the next layer and the read-out (never the input pixels).
    """

    def __init__(self, in_features: int, widths: list[int], num_classes: int,
                 activation: str = "tanh", dropout: float = 0.0, first_feedback: bool = False,
                 hidden: int = 0):
        super().__init__()
        if not widths:
            raise ValueError("a network needs at least one hidden layer")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        sizes = [in_features, *widths]
        self.layers = nn.ModuleList(
            TPLayer(sizes[i], sizes[i + 1], activation,
                    feedback_activation=activation if i else ("linear" if first_feedback else None),
                    dropout=0.0 if i == 0 else dropout, hidden=hidden)
            for i in range(len(widths)))
        self.output = nn.Linear(widths[-1], num_classes)
        if dropout > 0:
            self.output = nn.Sequential(nn.Dropout(dropout), self.output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers:
            h = layer(h)
        return self.output(h)

    def hidden_forward_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in layer.forward_parameters()]

    def forward_parameters(self) -> list[nn.Parameter]:
        return self.hidden_forward_parameters() + list(self.output.parameters())

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in layer.feedback_parameters()]


_ARCH_RE = re.compile(r"^mlp:(?:(\d+)x(\d+)|(\d+(?:-\d+)*))$")


def parse_arch(spec: str) -> list[int]:
    """Hidden widths from a spec: ``mlp:256x5`` (5 layers of 256) or ``mlp:512-256-128``."""
    match = _ARCH_RE.match(spec.strip())
    if match is None:
        raise ValueError(f"unknown architecture {spec!r}; valid forms: {', '.join(ARCHITECTURES)}"
                         " (e.g. mlp:256x5)")
    width, depth, listed = match.groups()
    widths = [int(width)] * int(depth) if listed is None else [int(w) for w in listed.split("-")]
    if not widths or min(widths) < 1:
        raise ValueError(f"architecture {spec!r} needs at least one layer of positive width")
    return widths


def build_network(arch: str, in_features: int, num_classes: int, activation: str = "tanh",
                  dropout: float = 0.0, hidden: int = 0) -> TPNetwork:
    make_activation(activation)  # validates the name before any allocation
    return TPNetwork(in_features, parse_arch(arch), num_classes, activation, dropout, hidden=hidden)
