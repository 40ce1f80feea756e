"""Records of a forward pass: what a rule keeps of one batch's way up."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import torch

Tensor = torch.Tensor

__all__ = ["Record", "ForwardRecord"]


@runtime_checkable
class Record(Protocol):
    """What every record of a forward pass answers, whatever the network:
    ``x``, the input; ``pairs()``, (h_{l-1}, h_l) detached for each layer in
    ``net.layers`` order; ``outputs``, the same h_l with a graph back to each
    layer's parameters; ``logits``, the prediction where the network makes one."""

    outputs: list[Tensor]
    logits: Tensor | None

    @property
    def x(self) -> Tensor: ...

    def pairs(self) -> list[tuple[Tensor, Tensor]]: ...


@dataclass
class ForwardRecord:
    """One forward pass through a chain. ``hs`` holds detached h_0..h_L
    (h_0 the input as the first layer reads it); ``outputs`` holds h_1..h_L
    again with a graph back to each layer's own input (detached, for local
    rules); ``top`` is what the read-out reads, as a leaf, so ∂loss/∂top can
    be read off (h_L; a recurrent net whose read-out reads every state:
    s_1..s_T stacked, (T, N, W)); ``logits`` hangs from ``top`` (local rules)
    or from the whole chain (back-prop); ``layers`` are the layers the batch
    went through (``net.unrolled(x)``: a recurrent net's time steps).

    A recurrent net's record also keeps its steps stacked: ``states``
    s_1..s_T as (T, N, W), of which ``hs[1:]`` are views, and
    ``stacked_outputs``, (T·N, W), of which ``outputs`` are views, so that a
    rule can treat all steps in one operation (None for a chain).

    A :class:`Record`."""
    hs: list[Tensor]
    outputs: list[Tensor]
    top: Tensor
    logits: Tensor | None
    layers: Sequence = ()
    states: Tensor | None = None
    stacked_outputs: Tensor | None = None

    @property
    def x(self) -> Tensor:
        return self.hs[0]

    def pairs(self) -> list[tuple[Tensor, Tensor]]:
        return list(zip(self.hs[:-1], self.hs[1:]))
