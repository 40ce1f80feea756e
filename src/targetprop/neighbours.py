"""Nearest-neighbour search in a representation, in chunks of rows (for the
nearest-neighbour reconstruction of Bengio 2014 §2.2.8, Eq. 15, and the
Parzen windows of §7.3)."""
from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["squared_distances", "nearest"]


def squared_distances(x: Tensor, pool: Tensor) -> Tensor:
    """‖x_a − p_b‖² for every pair (n, m), from one matrix product
    ‖x‖² + ‖p‖² − 2x·p, clamped at 0 against rounding."""
    squared = torch.addmm((x * x).sum(1, keepdim=True) + (pool * pool).sum(1), x, pool.T, alpha=-2)
    return squared.clamp_min_(0)


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
