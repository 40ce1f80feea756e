"""The back-prop baseline for generative stacks: a variational auto-encoder
(Kingma & Welling 2014) of the same layer sizes, scored by the same Parzen
estimator as the target-propagation stacks.

Encoder q(z|x) = N(μ(x), diag σ²(x)); decoder p(x|z) = N(m(z), diag s²) with
one learned log-variance per input unit (a Gaussian over pixels in [0, 1],
as the stacks see them); prior p(z) = N(0, I). ``loss`` is the negative evidence lower bound
per example, −E_q[log p(x|z)] + KL(q(z|x) ‖ p(z)), with one reparameterised
sample.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ...core.layers import make_activation
from ...core.updates import gaussian_nll

Tensor = torch.Tensor

__all__ = ["VAE", "fit"]


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """``widths`` are the hidden layers of the encoder, bottom-up, ending with
    the latent width (e.g. [256, 256, 64]); the decoder mirrors them."""

    def __init__(self, in_features: int, widths: list[int], activation: str = "tanh"):
        super().__init__()
        if not widths:
            raise ValueError("a VAE needs at least the latent width")
        *hidden, latent = widths
        self.encoder = _mlp([in_features, *hidden, 2 * latent], activation)
        self.decoder = _mlp([latent, *reversed(hidden), in_features], activation)
        self.log_variance = nn.Parameter(torch.zeros(in_features))
        self.latent = latent

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ²) of q(z|x)."""
        return self.encoder(x).chunk(2, dim=1)

    def loss(self, x: Tensor) -> Tensor:
        """Negative ELBO, averaged over the batch (nats per example)."""
        mean, log_var = self.encode(x)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        reconstruction = self.decoder(z)
        kl = 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var).sum(1)
        return gaussian_nll(x, reconstruction, self.log_variance) + kl.mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Decoder means of n prior samples (what a Parzen estimate is built on)."""
        like = self.log_variance  # for dtype and device
        z = torch.randn(n, self.latent, generator=generator, dtype=like.dtype).to(like.device)
        return self.decoder(z)


def fit(vae: VAE, x: Tensor, epochs: int, batch_size: int = 128, lr: float = 1e-3,
        seed: int = 0, after_epoch: Callable[[int, VAE], None] | None = None) -> list[float]:
    """Adam on the negative ELBO over ``x`` for ``epochs`` passes in shuffled
    mini-batches; returns the mean loss of each epoch. ``after_epoch(epoch,
    vae)`` is called after each (e.g. to keep the best checkpoint)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        total = 0.0
        order = torch.randperm(len(x), generator=generator)
        for rows in order.split(batch_size):
            loss = vae.loss(x[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        losses.append(total / len(x))
        if after_epoch is not None:
            after_epoch(len(losses), vae)
    return losses
