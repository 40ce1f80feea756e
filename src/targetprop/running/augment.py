"""Image augmentation of training batches, on the batch's device: random
crops after zero padding and horizontal flips (Krizhevsky et al. 2012; the
usual CIFAR-10 recipe pads by 4 pixels). Batches are flat (B, features)
tensors of images of shape (H, W) or (C, H, W); the padding value is 0, the
training mean once features are standardised.
"""
from __future__ import annotations

import torch

__all__ = ["PADDING", "augment_batch"]

PADDING = 4


def _random_crop(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Each (C, H, W) image shifted by its own offset in [−padding, padding]²,
    what falls outside filled with zeros: a crop of the zero-padded image."""
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy, dx = (torch.randint(0, 2 * padding + 1, (b,), device=images.device) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def _random_flip(images: torch.Tensor) -> torch.Tensor:
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def augment_batch(x: torch.Tensor, image_shape: tuple[int, ...], kind: str) -> torch.Tensor:
    """``x`` (B, features) augmented as ``kind`` says: none, crop, flip or
    crop-flip. Draws from torch's random stream of x's device."""
    if kind == "none":
        return x
    images = x.reshape(len(x), *((1, *image_shape) if len(image_shape) == 2 else image_shape))
    if "crop" in kind:
        images = _random_crop(images, PADDING)
    if "flip" in kind:
        images = _random_flip(images)
    return images.reshape(x.shape)
