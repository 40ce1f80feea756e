"""Discrete and stochastic transmission between layers (Bengio 2014 §2.2.6;
Lee et al. 2015, §3.3).

A unit computes a continuous value h = act(a) (tanh for ``sign``, sigmoid
for ``step`` and ``bernoulli``) but sends the layer above only a discrete
one: sign(h), step(h) = 1[h > ½], or a Bernoulli sample with probability h.
Target propagation never differentiates through what is sent: each layer's
local loss trains its own continuous output (its input, the discrete
message, is a constant), so the rules need no derivative of the discrete
map. Back-propagation does; it gets the straight-through estimator (the
backward pass treats the discrete map as the identity, Bengio et al. 2013),
which is also what carries the output loss's gradient across the read-out's
own transmission to the top target ĥ_L (one step, inside no hidden layer).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["DISCRETE_UNITS", "Transmit", "transmit", "check_continuous"]

# activation name -> (the unit's continuous activation, what it transmits)
DISCRETE_UNITS = {"sign": ("tanh", "sign"), "step": ("sigmoid", "step"),
                  "bernoulli": ("sigmoid", "bernoulli")}


class _StraightThrough(torch.autograd.Function):
    """The discrete map forward, the identity backward."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, kind: str) -> torch.Tensor:
        if kind == "sign":
            return torch.where(h >= 0, 1.0, -1.0).to(h.dtype)
        if kind == "step":
            return (h > 0.5).to(h.dtype)
        return torch.bernoulli(h.clamp(0.0, 1.0))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


KINDS = ("sign", "step", "bernoulli")


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown transmission {kind!r}; choose one of: {', '.join(KINDS)}")


def transmit(h: torch.Tensor, kind: str) -> torch.Tensor:
    """sign(h) (±1, sign(0) = +1), step(h) = 1[h > ½] or a Bernoulli(h) sample,
    with the straight-through gradient."""
    _check(kind)
    return _StraightThrough.apply(h, kind)


class Transmit(nn.Module):
    """:func:`transmit` as a module, placed at the input of the layer above."""

    def __init__(self, kind: str):
        super().__init__()
        _check(kind)
        self.kind = kind

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return transmit(h, self.kind)

    def extra_repr(self) -> str:
        return self.kind


def check_continuous(activation: str, who: str) -> None:
    """Rules whose layers are auto-encoders of continuous codes refuse discrete units."""
    if activation in DISCRETE_UNITS:
        raise ValueError(f"{who} need continuous units: activation {activation!r} is for the chain "
                         "rules (bp, tp, dtp, drl, ldrl)")
