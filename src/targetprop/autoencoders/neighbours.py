"""Nearest-neighbour search in a representation, in chunks of rows (for the
nearest-neighbour reconstruction of Bengio 2014 §2.2.8, Eq. 15, and the
Parzen windows of §7.3)."""
from __future__ import annotations

from typing import Callable

import torch

from ..core.noise import gaussian_like

Tensor = torch.Tensor

__all__ = ["squared_distances", "nearest", "nearest_neighbour_reconstruction_loss"]


def squared_distances(x: Tensor, pool: Tensor) -> Tensor:
    """‖x_a − p_b‖² for every pair (n, m), from one matrix product
    ‖x‖² + ‖p‖² − 2x·p, clamped at 0 against rounding. With a leading batch
    dimension on both, (k, n, d) and (k, m, d), one (k, n, m) result."""
    norms = (x * x).sum(-1, keepdim=True) + (pool * pool).sum(-1).unsqueeze(-2)
    product = torch.baddbmm if x.dim() == 3 else torch.addmm
    return product(norms, x, pool.transpose(-1, -2), alpha=-2).clamp_min_(0)


def nearest(queries: Tensor, pool: Tensor, chunk: int = 2048) -> tuple[Tensor, Tensor]:
    """For each query row, the index of its nearest row of ``pool`` and the
    squared distance to it. Queries and pool are both taken in chunks, so
    neither side is held as a full (n, m) matrix."""
    if len(pool) == 0:
        raise ValueError("the candidate pool is empty")
    indices, distances = [], []
    for rows in queries.split(chunk):
        best = torch.full((len(rows),), float("inf"), dtype=rows.dtype, device=rows.device)
        where = torch.zeros(len(rows), dtype=torch.long, device=rows.device)
        for start in range(0, len(pool), chunk):
            value, index = squared_distances(rows, pool[start:start + chunk]).min(dim=1)
            closer = value < best
            best = torch.where(closer, value, best)
            where = torch.where(closer, index + start, where)
        indices.append(where)
        distances.append(best)
    return torch.cat(indices), torch.cat(distances)


def nearest_neighbour_reconstruction_loss(encoder: Callable[[Tensor], Tensor],
                                          decoder: Callable[[Tensor], Tensor], x: Tensor,
                                          pool: Tensor | None,
                                          sigma: float | Tensor | Callable[[Tensor], float | Tensor],
                                          noise: Tensor | None = None) -> Tensor:
    """The nearest-neighbour reconstruction criterion (Bengio 2014 §2.2.8, Eq. 15):

    1. z = f(x); sample ξ ~ N(0, σ² I);
    2. x′ = the example of ``pool`` whose code f(x′) is nearest to z − ξ;
    3. x is a target for g(f(x′) + ξ) (updates g and, through x′, f), and
       f(x) and f(x′) are targets for each other.

    Returns the sum of the ½‖·‖² terms averaged over the batch. The search runs
    without gradient over the pool's codes, in chunks; ``noise`` (the ξ/σ
    sample) may be given for reproducibility. ``pool=None`` makes the batch
    its own pool (its codes are encoded once); ``sigma`` may be a function
    of the batch's codes (e.g. their nearest-neighbour σ).
    """
    codes = encoder(x)
    if callable(sigma):
        sigma = sigma(codes)
    xi = sigma * (gaussian_like(codes) if noise is None else noise)
    with torch.no_grad():
        index, _ = nearest(codes - xi, codes if pool is None else encoder(pool))
    neighbour_codes = codes[index] if pool is None else encoder(pool[index])
    n = len(x)
    reconstruction = 0.5 * (decoder(neighbour_codes + xi) - x).pow(2).sum() / n
    agreement = 0.5 * ((codes - neighbour_codes.detach()).pow(2).sum()
                       + (neighbour_codes - codes.detach()).pow(2).sum()) / n
    return reconstruction + agreement
