"""The VAE baseline: its loss against torch.distributions, and that it learns."""
from __future__ import annotations

import pytest
import torch

from targetprop.rules.generative.vae import VAE, fit


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


def test_fit_lowers_the_loss_reports_every_epoch_and_samples_have_the_data_shape():
    torch.manual_seed(0)
    data = torch.randn(512, 2) @ torch.randn(2, 6)  # a 2-d subspace of R^6
    vae = VAE(6, [16, 2])
    before = vae.loss(data).item()
    seen = []
    losses = fit(vae, data, 20, batch_size=64, lr=1e-2, after_epoch=lambda epoch, model: seen.append(epoch))
    assert seen == list(range(1, 21)) and len(losses) == 20
    assert vae.loss(data).item() < before - 5
    assert vae.sample(10).shape == (10, 6)
    with pytest.raises(ValueError, match="latent width"):
        VAE(6, [])
