"""Layers with exact inverses (Bengio 2014 §6): a square tanh layer whose
weight matrix is kept invertible by its parametrisation,

    W = L Lᵀ,   L lower triangular with a positive diagonal (exp of a free one),

so f(h) = tanh(W h + b) has the exact inverse f⁻¹(y) = L⁻ᵀ L⁻¹ (atanh(y) − b):
two triangular solves, O(d²) per example, and no feedback weights to train;
or

    W = U D Vᵀ,  D = diag(exp s),  U and V kept near-orthogonal,

inverted as V D⁻¹ Uᵀ (two products, O(d²)): exact while U and V are
orthogonal, which §6 keeps approximately by making each the encoder of a
linear auto-encoder with squared reconstruction error (:meth:`SVDLinear.penalty`,
added to the layer's local loss).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import InverseAffine, Layer

Tensor = torch.Tensor

__all__ = ["CholeskyLinear", "SVDLinear", "InvertibleLayer", "PARAMETRISATIONS"]


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


class SVDLinear(nn.Module):
    """x ↦ U diag(exp s) Vᵀ x + b, U and V starting orthogonal, s at 0."""

    def __init__(self, features: int):
        super().__init__()
        self.in_features = self.out_features = features
        self.u = nn.Parameter(nn.init.orthogonal_(torch.empty(features, features)))
        self.v = nn.Parameter(nn.init.orthogonal_(torch.empty(features, features)))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.bias = nn.Parameter(torch.zeros(features))

    @property
    def weight(self) -> Tensor:
        return (self.u * self.log_scale.exp()) @ self.v.T

    def forward(self, x: Tensor) -> Tensor:
        return ((x @ self.v) * self.log_scale.exp()) @ self.u.T + self.bias

    def solve(self, pre: Tensor) -> Tensor:
        """V D⁻¹ Uᵀ pre for a batch of rows: W⁻¹ pre while U and V are orthogonal."""
        return ((pre @ self.u) * (-self.log_scale).exp()) @ self.v.T

    def penalty(self, x: Tensor) -> Tensor:
        """½‖V Vᵀ x − x‖² + ½‖U Uᵀ z − z‖², z = U D Vᵀ x, averaged over the
        batch: the squared reconstruction errors of the linear auto-encoders
        whose encoders are Vᵀ (of the layer's input) and Uᵀ (of its
        pre-activation), zero when U and V are orthogonal (§6)."""
        code = x @ self.v
        z = (code * self.log_scale.exp()) @ self.u.T
        errors = (code @ self.v.T - x).pow(2).sum() + ((z @ self.u) @ self.u.T - z).pow(2).sum()
        return 0.5 * errors / x.shape[0]


PARAMETRISATIONS = {"cholesky": CholeskyLinear, "svd": SVDLinear}


class InvertibleLayer(Layer):
    """f(h) = tanh(W h + b), W = L Lᵀ or U D Vᵀ (``parametrisation``), with
    g = f⁻¹ (:class:`layers.InverseAffine` reading the factors on every call),
    so g has no parameters to train."""

    def __init__(self, features: int, dropout: float = 0.0, parametrisation: str = "cholesky"):
        f = nn.Sequential(PARAMETRISATIONS[parametrisation](features), nn.Tanh())
        super().__init__(f, None, dropout, activation=f[1])
        self.g = InverseAffine(self)

    def penalty(self, h_below: Tensor) -> Tensor | None:
        linear = self.f[0]
        return linear.penalty(h_below) if hasattr(linear, "penalty") else None
