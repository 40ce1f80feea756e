"""Generation and inference with a trained generative stack (Bengio 2014
§2.2.7, §7.5): samples (Algorithm 3 or ancestral), class-conditional
samples and MAP completion of a hidden modality (Algorithm 6).
All results are in the data space of the stack's input.
"""
from __future__ import annotations

import torch

from .stacks import PARTS, GenerativeStack

Tensor = torch.Tensor

__all__ = ["START", "generate", "generate_class", "part_features", "complete", "completion_error"]

START = ("noise", "data")


@torch.no_grad()
def generate(net: GenerativeStack, pool: Tensor, n: int, steps: int = 10, start: str = "noise",
             generator: torch.Generator | None = None) -> list[Tensor]:
    """n generated inputs per state of the top's chain (Algorithm 3, the
    last state is the sample; analytic tops give one exact state).
    A chain starts from the codes h_{L-1} of n examples of ``pool``
    (``start="data"``), or from Gaussian noise with those codes' per-unit
    mean and spread (``"noise"``, the default)."""
    if start not in START:
        raise ValueError(f"unknown start {start!r}; choose one of: {', '.join(START)}")
    codes = None
    if not net.top.analytic_sampling:
        pick = torch.randperm(len(pool), generator=generator)[:n]
        device = next(net.parameters()).device
        codes = net.join([hs[-1] for hs in net.encode(pool[pick].to(device))])[0]
        if start == "noise":
            noise = torch.randn(codes.shape, generator=generator).to(codes)
            codes = codes.mean(0) + codes.std(0) * noise
    return net.sample(n, codes, steps, generator)


def part_features(net: GenerativeStack, hide: str) -> slice:
    """The input features of the part ``hide`` ("upper" or "lower" half)."""
    parts = PARTS.get(net.modalities, {})
    if hide not in parts or parts[hide] >= len(net.sizes):
        images = [p for p, i in parts.items() if i < len(net.sizes)]
        raise ValueError(f"a stack with modalities={net.modalities} can complete: {', '.join(images) or 'nothing'}")
    start = sum(net.sizes[:parts[hide]])
    return slice(start, start + net.sizes[parts[hide]])


@torch.no_grad()
def complete(net: GenerativeStack, x: Tensor, hide: str, steps: int = 10, noise: float = 0.0,
             generator: torch.Generator | None = None) -> Tensor:
    """x with the part ``hide`` ("upper" or "lower" half of a ``halves`` stack)
    replaced by its completion (Algorithm 6; ``noise`` > 0: the annealed
    MCMC variant). The observed part is returned exactly as given."""
    part = part_features(net, hide)
    completed = x.clone()
    completed[:, part] = net.decode(net.complete(x, hide, steps, noise, generator))[:, part]
    return completed


@torch.no_grad()
def completion_error(net: GenerativeStack, x: Tensor, hide: str, fill: Tensor,
                     steps: int = 10) -> tuple[float, float]:
    """Mean squared error per hidden feature of the completion of ``hide``,
    and of filling it with ``fill`` (e.g. the training mean), on ``x``."""
    part = part_features(net, hide)
    error = (complete(net, x, hide, steps)[:, part] - x[:, part]).pow(2).mean().item()
    baseline = (fill[part].to(x) - x[:, part]).pow(2).mean().item()
    return error, baseline


@torch.no_grad()
def generate_class(net: GenerativeStack, label: int, n: int, steps: int = 20, noise: float = 1.0,
                   generator: torch.Generator | None = None) -> Tensor:
    """n images of class ``label`` from an ``image+label`` stack: the label
    clamped, the image code completed by Algorithm 6 from zero with annealed
    noise (``noise`` × the top's σ; 0 gives the MAP image, the same n times)."""
    if not net.labelled:
        raise ValueError("class-conditional samples need an image+label stack")
    if not 0 <= label < net.num_classes:
        raise ValueError(f"label must lie in 0..{net.num_classes - 1}, got {label}")
    like = next(net.parameters())  # dtype and device
    y = torch.full((n,), label, dtype=torch.long, device=like.device)
    codes = [torch.zeros(n, w, dtype=like.dtype, device=like.device) for w in net.code_widths[:-1]]
    h, present = net.join(codes, y)
    present[:, :-1] = False
    return net.decode(net.top.complete(h, present, steps, noise, generator))
