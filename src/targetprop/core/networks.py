"""Networks for target propagation: chains of layers (:mod:`.layers`) under
a read-out. A classifier is the chain of hidden layers h_1..h_L (h_0 = x)
followed by a read-out that produces the logits.

Every network that a rule trains answers the same protocol
(:class:`Network`), and the chain rules' networks a wider one
(:class:`ChainNetwork`). Its ``kind`` says, as data, which rules can train
it (each rule lists the kinds it trains).
"""
from __future__ import annotations

import math
from typing import ClassVar, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

from .discrete import DISCRETE_UNITS, Transmit
from .layers import Layer, TPLayer
from .records import ForwardRecord

__all__ = ["Network", "ChainNetwork", "Chain", "SharedCellNetwork", "detached_pass", "TPNetwork", "flat_features", "he_init", "layer_shapes"]


@runtime_checkable
class Network(Protocol):
    """What the learner and the trainer ask of every network: ``kind``, a
    name for its form (``chain``, ``recurrent``, ``stack``, ...) that rules
    declare they train; ``layers``, each a pair (f_l, g_l); the parameters
    of the two optimizers; and calling it, the prediction."""

    kind: str
    layers: Sequence[nn.Module]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...
    def forward_parameters(self) -> list[nn.Parameter]: ...
    def feedback_parameters(self) -> list[nn.Parameter]: ...


@runtime_checkable
class ChainNetwork(Network, Protocol):
    """A :class:`Network` that the chain rules (``bp``, ``tp``, ``dtp``,
    ``drl``, ``ldrl``) and the per-layer diagnostics train and read:

    * ``unrolled(x)``: the layers a batch goes through (a recurrent net's
      time steps; a chain's own layers);
    * ``as_input(x)``: h_0, the batch as the first layer reads it;
    * ``local_pass(x)``: the forward pass of a local rule, every layer's
      input detached (a :class:`records.ForwardRecord`);
    * ``read(hs)`` and ``read_out(top)``: what the read-out reads of
      h_1..h_L (h_L; a recurrent net's states), and its logits;
    * ``weight_groups()``: the weights the angle diagnostics compare.
    """

    def unrolled(self, x: torch.Tensor) -> Sequence[nn.Module]: ...
    def as_input(self, x: torch.Tensor) -> torch.Tensor: ...
    def local_pass(self, x: torch.Tensor) -> ForwardRecord: ...
    def read(self, hs: Sequence[torch.Tensor]) -> torch.Tensor: ...
    def read_out(self, top: torch.Tensor) -> torch.Tensor: ...
    def weight_groups(self) -> dict[str, list[nn.Parameter]]: ...


def detached_pass(layers: Sequence, h: torch.Tensor, read_out, top_gradient: bool = True) -> ForwardRecord:
    """The record of a local rule's forward pass: each of ``layers`` on its
    detached input, so its graph stays local; the top a leaf of its own (hs
    stays graph-free), ``read_out``'s logits from it; ``top_gradient``: the
    leaf requires grad, so that ∂ℓ/∂h_L can be read."""
    below = h.detach()
    hs, outputs = [below], []
    for layer in layers:
        outputs.append(layer(below))
        below = outputs[-1].detach()
        hs.append(below)
    top = hs[-1].detach().requires_grad_(top_gradient)
    return ForwardRecord(hs, outputs, top, read_out(top), layers)


class SharedCellNetwork(nn.Module):
    """A network whose steps all share one cell, ``self.cell`` (a recurrent
    net's time steps, a tree net's levels), under a read-out ``self.output``:
    ``layers`` holds the cell alone, and each step of ``unrolled(x)`` binds
    its own part of x, so x goes in as it is."""

    def as_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def read_out(self, top: torch.Tensor) -> torch.Tensor:
        return self.output(top)

    @property
    def layers(self) -> list[nn.Module]:
        return [self.cell]

    def forward_parameters(self) -> list[nn.Parameter]:
        return [*self.cell.forward_parameters(), *self.output.parameters()]

    def layer_forward_parameters(self) -> list[nn.Parameter]:
        return self.cell.forward_parameters()

    def weight_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.cell.weight_groups()

    def feedback_parameters(self) -> list[nn.Parameter]:
        return self.cell.feedback_parameters()


class Chain(nn.Module):
    """A chain of layers (any :class:`Layer`: a pair of modules f, g) under a
    read-out: h_0 = x, h_l = layer_l(h_{l-1}), logits = output(h_L). Every
    chain rule (``bp``, ``tp``, ``dtp``, ``drl``, ``ldrl``) trains any chain:
    a new layer kind is a new pair of modules, not a new code path.

    ``input_shape``, if given, is the shape of one example as the first layer
    reads it: a batch is reshaped to it on the way in, so flat vectors and
    images of that many features both go in."""

    kind: ClassVar[str] = "chain"

    def __init__(self, layers: Sequence[Layer], output: nn.Module, input_shape: Sequence[int] | None = None):
        super().__init__()
        if not layers:
            raise ValueError("a network needs at least one hidden layer")
        self.layers = nn.ModuleList(layers)
        self.output = output
        self.input_shape = None if input_shape is None else tuple(input_shape)

    def as_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_shape is None else x.reshape(len(x), *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.as_input(x)
        for layer in self.layers:
            h = layer(h)
        return self.output(h)

    def unrolled(self, x: torch.Tensor) -> Sequence[Layer]:
        """The layers a batch ``x`` goes through: the chain's own (a
        recurrent net's are its time steps, :mod:`.recurrent`)."""
        return self.layers

    def local_pass(self, x: torch.Tensor, top_gradient: bool = True) -> ForwardRecord:
        """Each layer on its detached input, so its graph stays local; the
        top h_L a leaf of its own (hs stays graph-free), the logits from it;
        ``top_gradient``: the leaf requires grad, so that ∂ℓ/∂h_L can be read."""
        return detached_pass(self.layers, self.as_input(x), self.read_out, top_gradient)

    def read(self, hs: Sequence[torch.Tensor]) -> torch.Tensor:
        """What the read-out reads of h_1..h_L: h_L."""
        return hs[-1]

    def read_out(self, top: torch.Tensor) -> torch.Tensor:
        return self.output(top)

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
    ``normalization`` (batch, layer) normalises every layer before its
    activation, act(N(W h + b)).
    """

    def __init__(self, in_features: int, widths: list[int], num_classes: int,
                 activation: str = "tanh", dropout: float = 0.0, first_feedback: bool = False,
                 hidden: int = 0, feedback_activation: str | None = None, normalization: str = "none"):
        if not widths:
            raise ValueError("a network needs at least one hidden layer")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        activation, kind = DISCRETE_UNITS.get(activation, (activation, None))
        sizes = [in_features, *widths]
        first_g = "linear" if first_feedback else None  # a decoder back to the input, if asked for
        layers = [TPLayer(sizes[i], sizes[i + 1], activation,
                          feedback_activation=(feedback_activation or activation) if i else first_g,
                          dropout=0.0 if i == 0 else dropout, hidden=hidden, transmit=kind if i else None,
                          normalization=normalization)
                  for i in range(len(widths))]
        output = nn.Linear(widths[-1], num_classes)
        if kind is not None:
            output = nn.Sequential(Transmit(kind), output)
        super().__init__(layers, nn.Sequential(nn.Dropout(dropout), output) if dropout > 0 else output,
                         input_shape=(in_features,))


def layer_shapes(chain: Chain, input_shape: int | Sequence[int]) -> tuple[list[tuple[int, ...]], int]:
    """The shape of one example's h_1..h_L in ``chain`` on examples of
    ``input_shape``, and the width of its logits (evaluated in eval mode on
    two zero examples: no batch norm statistics move)."""
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    was_training = chain.training
    chain.eval()
    try:
        with torch.no_grad():
            h, shapes = chain.as_input(torch.zeros(2, *shape)), []
            for layer in chain.layers:
                h = layer(h)
                shapes.append(tuple(h.shape[1:]))
            return shapes, chain.read_out(h).shape[1]
    finally:
        chain.train(was_training)


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
    ReLU net's activity."""
    for layer in net.layers:
        for module in layer.f.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and module.weight.dim() > 1:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
