"""Layers of target propagation: a layer is a pair of modules, a forward map
f_l and a feedback map g_l (the decoder of the layer's auto-encoder).

Notation follows Bengio (2014) §2: h_l = f_l(h_{l-1}); the feedback map g_l
goes the other way, h_l -> h_{l-1}, and is trained to invert f_l. Any pair
of modules makes a :class:`Layer`; :class:`TPLayer` is the fully connected
kind, act(W h + b), and a new layer kind is a new pair of modules.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import normalization
from .delta import activation_derivative
from .discrete import Transmit

__all__ = ["ACTIVATIONS", "NORMALIZATIONS", "UNBOUNDED", "is_unbounded", "make_activation", "make_map", "Layer",
           "TPLayer", "InverseAffine", "linear_part"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky-relu": lambda: nn.LeakyReLU(0.1),
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}

# Activations with no upper bound: their nets start from He et al.'s weights
# (running/setup.py) and the DTP family gates their target steps (rules/dtp.py)
UNBOUNDED = ("relu", "leaky-relu", "elu")


def is_unbounded(act: nn.Module) -> bool:
    return isinstance(act, (nn.ReLU, nn.LeakyReLU, nn.ELU))


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


# normalisations that a fully connected layer can hold between its affine map and its activation
NORMALIZATIONS: dict[str, Callable[[int], nn.Module] | None] = {
    "none": None, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


def make_map(in_features: int, out_features: int, activation: str, hidden: int = 0,
             hidden_activation: str = "tanh", normalization: str = "none") -> nn.Sequential:
    """act(W x + b), or with ``hidden`` > 0 a small MLP
    act(W₂ act_h(W₁ x + b₁) + b₂): an encoder or decoder that is itself a
    network, trained by back-prop inside the layer (Bengio 2014 §6).
    ``normalization`` (batch, layer) puts a norm N before the activation:
    act(N(W x + b))."""
    if hidden < 0:
        raise ValueError(f"hidden width must be >= 0, got {hidden}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of: {', '.join(NORMALIZATIONS)}")
    inner = ([nn.Linear(in_features, hidden), make_activation(hidden_activation)]
             if hidden else [])
    norm = NORMALIZATIONS[normalization]
    return nn.Sequential(*inner, nn.Linear(hidden or in_features, out_features),
                         *([norm(out_features)] if norm else []), make_activation(activation))


class Layer(nn.Module):
    """One layer (block) of a target-propagation chain: a forward map ``f``
    (h_{l-1} -> h_l, the encoder) and an optional feedback map ``g``
    (h_l -> h_{l-1}, the decoder), any two modules.

    ``activation`` names the units' nonlinearity, whose derivative read off
    h_l gates target steps (``rules.dtp``'s ``target_gating``): the module
    that ends f, or that max-pooling follows (max-pooling a monotone
    activation's outputs gives outputs of it). None: the block's output is
    not an activation's (it ends in a normalisation, a sum), and nothing
    gates its targets.

    With ``dropout`` > 0 (or a ``nn.Dropout``) the layer drops units of its
    *input* in training mode: the layer computes f(drop(h_{l-1})) while f
    itself stays deterministic, so feedback objectives, which evaluate
    :meth:`fixed_forward`, invert f and not the random mask.

    Batch norms inside f record the statistics of the real batch's forward
    pass, and every other evaluation of f uses those (:mod:`.normalization`).
    """

    def __init__(self, f: nn.Module, g: nn.Module | None = None, dropout: float | nn.Module = 0.0, *,
                 activation: nn.Module | None = None):
        super().__init__()
        self.f, self.g = f, g
        if isinstance(dropout, nn.Module):
            self.dropout = dropout
        else:
            self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._activation = [activation]  # a list: f's own module, not registered twice
        self._norms = normalization.batch_norms(f)
        self._g_norms: tuple = (None, [])  # (g, its batch norms), found again when g is replaced
        self._statistics: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def activation(self) -> nn.Module | None:
        return self._activation[0]

    @property
    def _feedback_norms(self) -> list[nn.Module]:
        if self._g_norms[0] is not self.g:
            self._g_norms = (self.g, normalization.batch_norms(self.g))
        return self._g_norms[1]

    def forward(self, h_below: torch.Tensor) -> torch.Tensor:
        if self._norms and self.training:
            with normalization.recording(self._norms, self._statistics):
                return self.f(self.dropout(h_below))
        return self.f(self.dropout(h_below))

    def fixed_forward(self, h_below: torch.Tensor) -> torch.Tensor:
        """f(h_below) as on the last recorded batch: its batch norms at that
        batch's statistics, no running statistics updated, no dropout."""
        if self._norms and self.training:
            with normalization.fixed(self._norms, self._statistics):
                return self.f(h_below)
        return self.f(h_below)

    @property
    def drops_input(self) -> bool:
        """Whether ``forward`` differs from ``f`` right now (dropout in training mode)."""
        return self.training and isinstance(self.dropout, nn.Dropout) and self.dropout.p > 0

    def feedback(self, h: torch.Tensor) -> torch.Tensor:
        if self.g is None:
            raise RuntimeError("this layer has no feedback map g")
        if self._feedback_norms:
            with normalization.per_batch(self._feedback_norms):
                return self.g(h)
        return self.g(h)

    @property
    def feedback_stacks(self) -> bool:
        """Whether g treats the examples of a batch independently, so that
        targets and states may go through it stacked in one call."""
        return not self._feedback_norms

    @property
    def feedback_linear(self):
        """d ↦ g's linear part applied to d, where g is affine (g(h) = V h + c:
        linear maps, transposed convolutions, reshapes), else None:
        g(ĥ) − g(h) = V(ĥ − h), so a difference target goes down in one
        product on the batch instead of g on both
        (``targets.linear_difference_propagate``)."""
        return linear_part(self.g) if self.g is not None else None

    def forward_parameters(self) -> list[nn.Parameter]:
        return list(self.f.parameters())

    def feedback_parameters(self) -> list[nn.Parameter]:
        return list(self.g.parameters()) if self.g is not None else []

    def penalty(self, h_below: torch.Tensor) -> torch.Tensor | None:
        """A term of the layer's own local loss that keeps its parametrisation
        valid (:class:`invertible.InvertibleLayer`), or None."""
        return None

    def weights(self) -> list[nn.Parameter]:
        """The forward map's weight tensors (biases and normalisation scales
        left out): what the angle diagnostics compare with back-prop's update."""
        return [p for p in self.f.parameters() if p.dim() > 1]


def linear_part(module: nn.Module):
    """d ↦ M d for an affine module m(h) = M h + c (``nn.Linear``,
    ``nn.ConvTranspose1d/2d``, ``nn.Identity``, ``nn.Flatten``,
    ``nn.Unflatten``, a module with a ``linear_part`` method, or an
    ``nn.Sequential`` of these); None for anything else. It reads the
    weights on every call, so it follows them as they learn."""
    if isinstance(module, nn.Sequential):
        parts = [linear_part(m) for m in module]
        if any(p is None for p in parts):
            return None
        parts = [p for p in parts if not isinstance(p, nn.Identity)]  # d itself: no call
        if len(parts) == 1:
            return parts[0]

        def composed(d):
            for part in parts:
                d = part(d)
            return d
        return composed
    if isinstance(module, nn.Linear):
        return lambda d: F.linear(d, module.weight)
    if isinstance(module, nn.ConvTranspose2d):
        return lambda d: F.conv_transpose2d(d, module.weight, None, module.stride, module.padding,
                                            module.output_padding, module.groups, module.dilation)
    if isinstance(module, nn.ConvTranspose1d):
        return lambda d: F.conv_transpose1d(d, module.weight, None, module.stride, module.padding,
                                            module.output_padding, module.groups, module.dilation)
    if isinstance(module, (nn.Identity, nn.Flatten, nn.Unflatten)):
        return module
    method = getattr(module, "linear_part", None)
    return method() if callable(method) else None


class TPLayer(Layer):
    """The fully connected layer:

    f(h_{l-1}) = act(W h_{l-1} + b)           (forward map, the encoder)
    g(h_l)     = act_g(V h_l + c)             (feedback map, the decoder)

    With ``hidden`` > 0, f and g are each a one-hidden-layer MLP
    (:func:`make_map`).

    ``act_g`` (``feedback_activation``) is "linear" in the DTP family's
    networks, or the activation of the layer below, so that g_l produces
    values in the range of h_{l-1} (Lee et al. 2015, §2.3). The feedback map is
    optional (``feedback_activation=None``): the first layer of a classifier
    never needs one. ``transmit`` (sign, step, bernoulli) makes f read the
    discrete message of the layer below, f(h) = act(W transmit(h) + b),
    while g still reconstructs the continuous h.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "tanh",
                 feedback_activation: str | None = "linear", dropout: float = 0.0, hidden: int = 0,
                 transmit: str | None = None, normalization: str = "none"):
        f = make_map(in_features, out_features, activation, hidden, activation, normalization)
        if transmit is not None:  # the layer below sends a discrete message (:mod:`.discrete`)
            f = nn.Sequential(Transmit(transmit), *f)
        g = (make_map(out_features, in_features, feedback_activation, hidden, activation)
             if feedback_activation is not None else None)
        super().__init__(f, g, dropout, activation=f[-1])
        self.in_features, self.out_features = in_features, out_features


_INVERSE_ACTIVATIONS: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    nn.Tanh: lambda h: torch.atanh(h.clamp(-1 + 1e-7, 1 - 1e-7)),
    nn.Sigmoid: lambda h: torch.logit(h, eps=1e-7),
    nn.Identity: lambda h: h,
}


class InverseAffine(nn.Module):
    """The exact inverse of a square invertible layer f(h) = act(W h + b):
    f^{-1}(y) = W^{-1}(act^{-1}(y) - b) (Bengio 2014 §6).

    It reads W and b from the forward layer on every call, so it stays exact
    while f learns: an oracle feedback map for tests and studies, and the
    feedback map of :class:`invertible.InvertibleLayer`, whose W = L Lᵀ is
    inverted by two triangular solves (its ``solve``) instead of a general one.
    """

    def __init__(self, layer: Layer):
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
        self._linear, self._act = [linear], [act]  # lists: the forward layer's modules, not registered twice

    def solve(self, v: torch.Tensor) -> torch.Tensor:
        """W⁻¹ v for a batch of rows."""
        linear = self._linear[0]
        if hasattr(linear, "solve"):
            return linear.solve(v)
        return torch.linalg.solve(linear.weight, v.T).T

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.solve(self._act_inv(y) - self._linear[0].bias)

    def damped_difference(self, y: torch.Tensor, y_hat: torch.Tensor, damping: float) -> torch.Tensor:
        """W⁻¹ D (D² + λI)⁻¹ (ŷ − y), D = diag act′ at y: the first-order
        difference f⁻¹(ŷ) − f⁻¹(y) = (D W)⁻¹(ŷ − y) with the unit's own
        inverse slope 1/act′ damped as in Levenberg–Marquardt, so that a
        saturated unit (act′ → 0) passes no target down instead of an
        unbounded one. λ = 0 is the undamped (Gauss–Newton) step."""
        d = activation_derivative(self._act[0], y)
        return self.solve(d / (d * d + damping) * (y_hat - y))

