"""Gaussian noise for objectives and corruption processes.

Every N(0, I) sample is drawn in float32 and cast, so a run in float64 sees
the same noise as one in float32 (and the float64 contract compares like
with like).
"""
from __future__ import annotations

from typing import Callable

import torch

Tensor = torch.Tensor
Noise = Callable[[Tensor], Tensor]

__all__ = ["Noise", "gaussian", "gaussian_like", "SharedNoise"]


def gaussian(shape: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A fresh N(0, I) sample, drawn in float32 and cast: a float64 run sees
    the same noise as a float32 one."""
    return torch.randn(shape, device=device, dtype=torch.float32).to(dtype)


def gaussian_like(t: Tensor) -> Tensor:
    """:func:`gaussian` shaped like ``t``."""
    return gaussian(t.shape, t.dtype, t.device)


class SharedNoise:
    """N(0, I) samples drawn once per shape and handed to every caller.

    Within one training step, layers of the same width then share a noise
    sample (and so do the ε and η of one layer's DRL or L-DRL when its widths
    match). Every term of every objective still sees exact N(0, I) noise, so
    each expected loss and gradient is unchanged; only the estimators'
    errors become correlated. What is saved is the random-number generation,
    the largest non-matmul cost of a CPU step.
    """

    def __init__(self) -> None:
        self._drawn: dict[tuple, Tensor] = {}

    def __call__(self, like: Tensor) -> Tensor:
        return self.sample(like.shape, like.dtype, like.device)

    def sample(self, shape: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
        key = (tuple(shape), dtype, device)
        if key not in self._drawn:
            self._drawn[key] = gaussian(shape, dtype, device)
        return self._drawn[key]

    def stacked(self, count: int) -> Noise:
        """Noise for ``count`` batches stacked into one tensor (a recurrent
        net's steps, :func:`recurrent.stacked_steps`): every batch gets the
        sample that unstacked layers of its width would share."""
        def noise(like: Tensor) -> Tensor:
            one = self.sample((like.shape[0] // count, *like.shape[1:]), like.dtype, like.device)
            return one.repeat(count, *[1] * (like.dim() - 1))
        return noise
