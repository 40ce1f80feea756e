"""Batch normalisation inside a target-propagation layer.

A batch norm computes y = γ (x − μ_B) / √(σ²_B + ε) + β with the mean and
variance of the batch it is given, and in training mode moves its running
statistics toward them. Target propagation evaluates a layer's forward map
f_l many more times than once per batch: on noisy inputs in the feedback
objectives (g_l learns to invert f_l there), on reconstructions in the short
loops. Left alone, every such call would move the running statistics toward
noisy batches, and f_l would be a different function on each call (its own
batch's statistics). So a layer records, on the real batch's forward pass,
the statistics (μ_B, σ²_B) each of its batch norms used, and every other
evaluation of f_l (:meth:`layers.Layer.fixed_forward`) normalises with those,
as the fixed per-channel affine map that f_l was on that batch, and updates
nothing. Only the forward pass of the real batch updates the running
statistics; ``eval()`` uses them, as in PyTorch.

A feedback map g_l that holds batch norms normalises each batch it is given
on its own (never targets and states stacked together) and never updates
running statistics.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor

__all__ = ["BATCH_NORMS", "batch_norms", "running_statistics_frozen", "recording", "fixed", "per_batch"]

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

# False inside ``running_statistics_frozen``: forward passes use their batch's statistics, update none
_UPDATES = ContextVar("targetprop_running_statistics_update", default=True)


def batch_norms(module: nn.Module | None) -> list[nn.Module]:
    """Every batch norm inside ``module`` (none for None)."""
    return [] if module is None else [m for m in module.modules() if isinstance(m, BATCH_NORMS)]


@contextlib.contextmanager
def running_statistics_frozen() -> Iterator[None]:
    """Forward passes inside normalise with their own batch's statistics and
    leave every running mean and variance as it is (a feedback-only step's
    forward pass: it trains no forward map, so it must not move them)."""
    token = _UPDATES.set(False)
    try:
        yield
    finally:
        _UPDATES.reset(token)


def _statistics(norm: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(μ_B, σ²_B) over every dimension but the channels (dim 1), biased, as
    batch norm uses them; in the dtype of the norm's own statistics (float32
    under autocast, where x is bfloat16)."""
    dims = [0, *range(2, x.dim())]
    like = norm.running_mean if norm.running_mean is not None else norm.weight
    variance, mean = torch.var_mean(x.detach().to(like.dtype if like is not None else x.dtype), dim=dims,
                                    unbiased=False)
    return mean, variance


@contextlib.contextmanager
def _forwards(norms: Sequence[nn.Module], make) -> Iterator[None]:
    """Each norm's ``forward`` replaced by ``make(index, norm)`` for the
    duration (an instance attribute, deleted afterwards)."""
    for index, norm in enumerate(norms):
        norm.forward = make(index, norm)
    try:
        yield
    finally:
        for norm in norms:
            del norm.forward


def _batch_only(norm: nn.Module, x: Tensor) -> Tensor:
    """Normalised by x's own batch statistics, with no running statistics read or written."""
    return F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)


def recording(norms: Sequence[nn.Module], store: dict[int, tuple[Tensor, Tensor]]):
    """A context in which each norm runs as usual (training mode: batch
    statistics, running statistics updated, except inside
    ``running_statistics_frozen``) and leaves the batch statistics it used in
    ``store[index]``."""
    update = _UPDATES.get()

    def make(index: int, norm: nn.Module):
        def forward(x: Tensor) -> Tensor:
            store[index] = _statistics(norm, x)
            return type(norm).forward(norm, x) if update else _batch_only(norm, x)
        return forward
    return _forwards(norms, make)


def fixed(norms: Sequence[nn.Module], store: dict[int, tuple[Tensor, Tensor]]):
    """A context in which each norm is the affine map it was on the recorded
    batch, γ (x − μ_B)/√(σ²_B + ε) + β with ``store``'s (μ_B, σ²_B), and
    updates nothing; a norm with nothing recorded normalises by its input's
    own batch statistics."""
    def make(index: int, norm: nn.Module):
        def forward(x: Tensor) -> Tensor:
            if index not in store:
                return _batch_only(norm, x)
            mean, variance = store[index]
            return F.batch_norm(x, mean, variance, norm.weight, norm.bias, False, 0.0, norm.eps)
        return forward
    return _forwards(norms, make)


def per_batch(norms: Sequence[nn.Module]):
    """A context in which each norm normalises every call's batch by its own
    statistics and updates nothing (batch norms inside a feedback map)."""
    return _forwards(norms, lambda index, norm: lambda x: _batch_only(norm, x))
