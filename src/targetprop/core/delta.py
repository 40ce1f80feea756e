"""The delta rule (Bengio 2014 §8): a layer's update written out from its
pre-synaptic input x, its output p = act(W x + b) and its target t, with no
autograd through the layer:

    ΔW ∝ ((t − p) ⊙ act'(a)) xᵀ,   Δb ∝ (t − p) ⊙ act'(a)

(for sigmoid units with a cross-entropy criterion act' drops out and this is
the paper's Δw_i ∝ (t − p) x_i). It is the negative gradient of the local
loss ½‖p − t‖² averaged over the batch, so with the same optimizer it makes
the same step as autograd (checked in float64 by the tests); what differs is
that every quantity it uses is available at the layer itself.

The paper's moving-average form, Δw_i ∝ p^r x̄_i − mean(p^f x_i), replaces
the past pre-synaptic value by its average over the time between the forward
pass and the target's arrival. In a feed-forward net the input is held for
that whole presentation, so x̄ = x and mean(p^f x) = p^f x, and the form
is ΔW ∝ (t − p) xᵀ with no act′ (``derivative=False``): the gradient of the
unit's matching loss Σ ∫ (act(a) − t) da, the cross-entropy for sigmoid
units and log cosh(a) − t a for tanh. That loss has a minimum only for a
target inside the unit's range, so targets are first projected into it
(a difference target h + Δ can leave it). Averaging instead over past *steps*
(different examples) would keep only E[t] E[x]ᵀ and lose the correlation
between target and input that carries the credit.
"""
from __future__ import annotations

import torch
from torch import nn

from .discrete import Transmit

Tensor = torch.Tensor

__all__ = ["activation_derivative", "delta_rule_gradients", "delta_rule_loss", "check_delta_rule"]


def activation_derivative(act: nn.Module, out: Tensor) -> Tensor:
    """act'(a) from the output p = act(a), for the activations of :mod:`.layers`."""
    if isinstance(act, nn.Tanh):
        return 1 - out * out
    if isinstance(act, nn.Sigmoid):
        return out * (1 - out)
    if isinstance(act, nn.Identity):
        return torch.ones_like(out)
    if isinstance(act, nn.ReLU):
        return (out > 0).to(out.dtype)
    if isinstance(act, nn.LeakyReLU):
        return torch.where(out > 0, 1.0, act.negative_slope).to(out.dtype)
    if isinstance(act, nn.ELU):
        return torch.where(out > 0, 1.0, out + act.alpha).to(out.dtype)
    raise ValueError(f"the delta rule has no derivative for {type(act).__name__}")


def _into_range(act: nn.Module, t: Tensor) -> Tensor:
    """The target projected into the unit's range, where its matching loss
    has a minimum (a sigmoid unit's cross-entropy needs t in [0, 1])."""
    if isinstance(act, nn.Tanh):
        return t.clamp(-1, 1)
    if isinstance(act, nn.Sigmoid):
        return t.clamp(0, 1)
    if isinstance(act, nn.ReLU):
        return t.clamp_min(0)
    return t


def _parts(layer) -> tuple[Transmit | None, nn.Linear, nn.Module]:
    """The (message, affine map, activation) of a one-layer forward map."""
    modules = list(layer.f)
    transmit = modules.pop(0) if modules and isinstance(modules[0], Transmit) else None
    if len(modules) != 2 or not isinstance(modules[0], nn.Linear):
        raise ValueError("the delta rule needs one-layer forward maps, act(W x + b) (layer_hidden=0)")
    if transmit is not None and transmit.kind == "bernoulli":
        raise ValueError("the delta rule needs a deterministic message (sign or step, not bernoulli)")
    return transmit, modules[0], modules[1]


@torch.no_grad()
def delta_rule_gradients(layer, h_below: Tensor, target: Tensor,
                         derivative: bool = True) -> tuple[Tensor, Tensor]:
    """(∂/∂W, ∂/∂b) of ½‖f(h_below) − target‖² / B, written out as the delta
    rule; with ``derivative=False``, the moving-average form's (t − p) xᵀ / B."""
    transmit, linear, act = _parts(layer)
    x = h_below if transmit is None else transmit(h_below)
    out = act(linear(x))
    if derivative:
        error = (out - target) * activation_derivative(act, out) / x.shape[0]
    else:
        error = (out - _into_range(act, target)) / x.shape[0]
    return error.T @ x, error.sum(0)


def check_delta_rule(layers) -> None:
    """Raise ValueError where the delta rule cannot update one of ``layers``."""
    for layer in layers:
        _parts(layer)
        if isinstance(layer.dropout, nn.Dropout):
            raise ValueError("the delta rule reads the layer's input as recorded: set dropout=0")


def delta_rule_loss(layers, inputs: list[Tensor], targets: list[Tensor],
                    derivative: bool = True) -> Tensor:
    """Σ_l ⟨W_l, G_l⟩ + ⟨b_l, g_l⟩ with (G_l, g_l) the delta-rule gradients held
    constant: its gradient with respect to each layer's weights is exactly
    the delta rule's, so any ``torch.optim`` optimizer applies it."""
    check_delta_rule(layers)
    total = None
    for layer, h_below, target in zip(layers, inputs, targets):
        _, linear, _ = _parts(layer)
        weight_grad, bias_grad = delta_rule_gradients(layer, h_below, target, derivative)
        term = (linear.weight * weight_grad).sum() + (linear.bias * bias_grad).sum()
        total = term if total is None else total + term
    return total
