"""The VAE baseline: its loss against torch.distributions, and that it learns."""
from __future__ import annotations

import pytest
import torch

from targetprop.vae import VAE


def test_loss_is_the_negative_elbo_of_torch_distributions():
    torch.manual_seed(0)
    vae = VAE(5, [7, 3]).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    torch.manual_seed(1)
    loss = vae.loss(x)

    torch.manual_seed(1)  # the same reparameterisation noise
    mean, log_var = vae.encode(x)
    std = (0.5 * log_var).exp()
    z = mean + std * torch.randn_like(mean)
    likelihood = torch.distributions.Normal(vae.decoder(z), (0.5 * vae.log_variance).exp())
    posterior = torch.distributions.Normal(mean, std)
    prior = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    expected = (-likelihood.log_prob(x).sum(1)
                + torch.distributions.kl_divergence(posterior, prior).sum(1)).mean()
    torch.testing.assert_close(loss, expected)


def test_training_lowers_the_loss_and_samples_have_the_data_shape():
    torch.manual_seed(0)
    data = torch.randn(512, 2) @ torch.randn(2, 6)  # a 2-d subspace of R^6
    vae = VAE(6, [16, 2])
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-2)
    before = vae.loss(data).item()
    for _ in range(300):
        optimizer.zero_grad()
        vae.loss(data).backward()
        optimizer.step()
    assert vae.loss(data).item() < before - 5
    assert vae.sample(10).shape == (10, 6)
    with pytest.raises(ValueError, match="latent width"):
        VAE(6, [])
