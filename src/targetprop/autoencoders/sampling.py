"""Sampling and inference with a stack of auto-encoders (Bengio 2014 §2.2.4,
Algorithms 3 and 6). The maps are plain callables, so any encoder/decoder
pair (a layer's f and g, or a top auto-encoder) can be plugged in.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

Tensor = torch.Tensor
Map = Callable[[Tensor], Tensor]

__all__ = ["top_chain", "decode_down", "walk_back_loss", "map_complete"]


@torch.no_grad()
def top_chain(h: Tensor, encode: Map, decode: Map, corrupt: Map, steps: int) -> list[Tensor]:
    """Algorithm 3, first part: h_{L-1} ← g_L(corrupt(f_L(h_{L-1}))) for
    ``steps`` steps; returns the chain's states after each step."""
    if steps < 1:
        raise ValueError(f"the chain needs at least one step, got {steps}")
    states = []
    for _ in range(steps):
        h = decode(corrupt(encode(h)))
        states.append(h)
    return states


def decode_down(h: Tensor, decoders: Sequence[Map]) -> Tensor:
    """Algorithm 3, second part: h_{l-1} = g_l(h_l) from the top decoder in
    ``decoders`` (ordered g_1..g_{L-1}) down to x = h_0 (differentiable:
    Algorithm 1 trains through it)."""
    for decode in reversed(decoders):
        h = decode(h)
    return h


def walk_back_loss(h: Tensor, encode: Map, decode: Map, corrupt: Map, walks: int,
                   start: Tensor | None = None,
                   error: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """The walk-back criterion (Bengio et al. 2013b; §2.2.4): starting from
    a training point h (or ``start``, e.g. where an earlier step ended), take
    ``walks`` corrupt–encode–decode steps, and after every step make h the
    target of the reconstruction,

        Σ_k ½‖g(corrupt(f(h̃_{k-1}))) − h‖²,   h̃_0 = h,  h̃_k the k-th reconstruction,

    averaged over the batch (``error(reconstruction, h)`` replaces the
    squared error). The walk itself is not differentiated through (each h̃_k
    enters detached): only the last encode–decode of each step learns, so
    spurious modes the chain wanders into are pulled back."""
    if walks < 1:
        raise ValueError(f"walk-back needs at least one step, got {walks}")
    if error is None:
        error = lambda out, target: 0.5 * (out - target).pow(2).sum() / len(target)  # noqa: E731
    loss, start = h.new_zeros(()), h if start is None else start
    for _ in range(walks):
        reconstruction = decode(corrupt(encode(start)))
        loss = loss + error(reconstruction, h)
        start = reconstruction.detach()
    return loss


@torch.no_grad()
def map_complete(h: Tensor, observed: Tensor, reconstruct: Map, steps: int,
                 first_reconstruct: Map | None = None) -> Tensor:
    """Algorithm 6: fill the missing entries of ``h`` (``observed`` is a bool
    mask of its shape, True where the value is known) by iterating the
    noise-free reconstruction and keeping the observed entries fixed.
    ``first_reconstruct`` serves the first iteration (the top auto-encoder
    told which parts are missing); later ones treat all inputs as observed."""
    if steps < 1:
        raise ValueError(f"MAP completion needs at least one step, got {steps}")
    for step in range(steps):
        reconstruction = (first_reconstruct if step == 0 and first_reconstruct else reconstruct)(h)
        h = torch.where(observed, h, reconstruction)
    return h
