"""Layers with exact inverses (Bengio 2014 §6): a square tanh layer whose
weight matrix is kept invertible by its parametrisation,

    W = L Lᵀ,   L lower triangular with a positive diagonal (exp of a free one),

so f(h) = tanh(W h + b) has the exact inverse f⁻¹(y) = L⁻ᵀ L⁻¹ (atanh(y) − b):
two triangular solves, O(d²) per example, and no feedback weights to train.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import InverseAffine, Layer

Tensor = torch.Tensor

__all__ = ["CholeskyLinear", "InvertibleLayer"]


class CholeskyLinear(nn.Module):
    """x ↦ W x + b with W = L Lᵀ symmetric positive definite. L starts at the
    identity plus a small strictly lower part, so W starts near I."""

    def __init__(self, features: int, init_scale: float = 0.5):
        super().__init__()
        self.in_features = self.out_features = features
        lower = torch.randn(features, features) * (init_scale / math.sqrt(features))
        self.lower = nn.Parameter(torch.tril(lower, diagonal=-1))
        self.log_diagonal = nn.Parameter(torch.zeros(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def factor(self) -> Tensor:
        """L: the strictly lower part of ``lower`` plus exp(``log_diagonal``) on the diagonal."""
        return torch.tril(self.lower, diagonal=-1) + torch.diag_embed(self.log_diagonal.exp())

    @property
    def weight(self) -> Tensor:
        factor = self.factor()
        return factor @ factor.T

    def forward(self, x: Tensor) -> Tensor:
        factor = self.factor()
        return (x @ factor) @ factor.T + self.bias

    def solve(self, pre: Tensor) -> Tensor:
        """W⁻¹ pre for a batch of rows: L u = preᵀ, then Lᵀ z = u."""
        factor = self.factor()
        u = torch.linalg.solve_triangular(factor, pre.T, upper=False)
        return torch.linalg.solve_triangular(factor.T, u, upper=True).T


class InvertibleLayer(Layer):
    """f(h) = tanh(L Lᵀ h + b) with g = f⁻¹ exactly (:class:`layers.InverseAffine`
    reading the factor on every call), so g has no parameters to train."""

    def __init__(self, features: int, dropout: float = 0.0):
        f = nn.Sequential(CholeskyLinear(features), nn.Tanh())
        super().__init__(f, None, dropout)
        self.g = InverseAffine(self)
