"""Corruption processes for denoising auto-encoders (Bengio 2014 §2.2.5).

"A reasonable choice for the level of corruption is given by the
nearest-neighbor distance between examples in the corresponding
representation": :func:`nearest_neighbour_sigma` measures it on a batch, so
the empty ball around each example is contracted toward it without pulling
one example onto its neighbour.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..core.noise import gaussian_like
from .neighbours import squared_distances

Tensor = torch.Tensor

__all__ = ["nearest_neighbour_distances", "nearest_neighbour_sigma",
           "masking_corruption", "parse_sigma", "Corruption"]


def nearest_neighbour_distances(h: Tensor) -> Tensor:
    """Euclidean distance from each row of ``h`` (batch, features) to its
    nearest *other* row, computed in one batched distance matrix."""
    if h.shape[0] < 2:
        raise ValueError("a nearest-neighbour distance needs at least two examples")
    distances = torch.cdist(h, h)
    distances.fill_diagonal_(float("inf"))
    return distances.min(dim=1).values


def nearest_neighbour_sigma(h: Tensor) -> Tensor:
    """Per-unit Gaussian σ whose expected noise norm, σ√d, equals the median
    nearest-neighbour distance of the batch: noise then reaches about as far
    as the closest other example, not beyond (Bengio 2014 §2.2.5).

    ``h`` is (batch, d), or (k, batch, d) for k representations at once
    (one σ each). Squared distances come from one matrix product,
    ‖a‖² + ‖b‖² − 2a·b; the square root, which preserves the order, is taken
    of the median alone."""
    if h.shape[-2] < 2:
        raise ValueError("a nearest-neighbour distance needs at least two examples")
    with torch.no_grad():
        squared = squared_distances(h, h)
        squared.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
        nearest = squared.min(dim=-1).values
        return nearest.median(dim=-1).values.sqrt() / h.shape[-1] ** 0.5


def parse_sigma(value: str | float) -> str | float | tuple[float, ...]:
    """A σ setting: ``nn``, a number, or comma-separated numbers (one per
    representation, input first)."""
    if value == "nn":
        return value
    try:
        values = tuple(float(v) for v in str(value).split(","))
    except ValueError:
        raise ValueError("corruption_sigma must be nn, a number or comma-separated numbers, "
                         f"got {value!r}") from None
    return values if len(values) > 1 else values[0]


def masking_corruption(h: Tensor, probability: float) -> Tensor:
    """Zero each unit independently with ``probability`` (Vincent et al. 2008),
    without rescaling: a masked unit reads as "missing", as in §3.1."""
    if probability <= 0:
        return h
    return h * (torch.rand(h.shape, device=h.device) >= probability).to(h.dtype)


@dataclass
class Corruption:
    """Masking noise, then Gaussian noise. ``sigma="nn"`` sets σ on every call
    from the batch's nearest-neighbour distance; a number fixes it for every
    representation; a tuple fixes one per representation, indexed from the
    input (0) up to the top code."""

    sigma: float | str | tuple[float, ...] = 0.1
    mask: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.sigma, str) and self.sigma != "nn":
            raise ValueError(f"sigma must be a number, a tuple of numbers or 'nn', got {self.sigma!r}")
        values = self.sigma if isinstance(self.sigma, tuple) else () if self.sigma == "nn" else (self.sigma,)
        if any(value < 0 for value in values):
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if not 0 <= self.mask < 1:
            raise ValueError(f"mask probability must lie in [0, 1), got {self.mask}")

    def scale(self, h: Tensor, index: int = -1) -> float | Tensor:
        """The Gaussian σ for representation number ``index`` (0: the input),
        whose batch is ``h``: measured on it (``"nn"``), or fixed."""
        if self.sigma == "nn":
            return nearest_neighbour_sigma(h)
        return self.sigma[index] if isinstance(self.sigma, tuple) else self.sigma

    def scales(self, hs: list[Tensor], first_index: int = 0) -> list[float | Tensor]:
        """:meth:`scale` of consecutive representations; equal shapes are
        measured in one batched call."""
        if self.sigma == "nn" and len({h.shape for h in hs}) == 1:
            return list(nearest_neighbour_sigma(torch.stack(hs)).unbind())
        return [self.scale(h, first_index + i) for i, h in enumerate(hs)]

    def check_depth(self, representations: int) -> None:
        """A tuple of σ must name one per representation, input included."""
        if isinstance(self.sigma, tuple) and len(self.sigma) != representations:
            raise ValueError(f"per-layer sigma needs {representations} values, one per representation "
                             f"from the input up, got {len(self.sigma)}")

    def __call__(self, h: Tensor, sigma: float | Tensor | None = None,
                 noise: Callable[[Tensor], Tensor] = gaussian_like, index: int = -1) -> Tensor:
        """Corrupt ``h``, representation number ``index``; ``sigma`` overrides
        :meth:`scale` (a σ measured once per batch and reused), ``noise``
        draws the N(0, I) sample."""
        sigma = self.scale(h, index) if sigma is None else sigma
        return masking_corruption(h, self.mask) + sigma * noise(h)
