"""Blocks that a plain ``nn.Sequential`` cannot spell."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Residual"]


class Residual(nn.Module):
    """h + F(h), or S(h) + F(h) with a ``shortcut`` S where F changes the
    shape (He et al. 2016): ``body`` is F. Put the activation after it, in
    the enclosing ``nn.Sequential``: ``Residual(body), nn.ReLU()``."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        skip = h if self.shortcut is None else self.shortcut(h)
        return self.body(h) + skip
