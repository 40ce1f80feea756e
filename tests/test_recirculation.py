"""Corruption processes and Algorithm 2's short loop."""
from __future__ import annotations

import math

import pytest
import torch

from targetprop import TPLayer
from targetprop.corruption import (Corruption, masking_corruption, nearest_neighbour_distances,
                                   nearest_neighbour_sigma)
from targetprop.recirculation import short_loop_loss


def test_nearest_neighbour_distances_match_brute_force():
    torch.manual_seed(0)
    h = torch.randn(40, 7, dtype=torch.float64)
    expected = [min(torch.dist(h[i], h[j]).item() for j in range(40) if j != i) for i in range(40)]
    torch.testing.assert_close(nearest_neighbour_distances(h), torch.tensor(expected, dtype=h.dtype))
    with pytest.raises(ValueError, match="two examples"):
        nearest_neighbour_distances(h[:1])


def test_nearest_neighbour_sigma_reaches_the_neighbour():
    torch.manual_seed(0)
    h = torch.randn(200, 16)
    sigma = nearest_neighbour_sigma(h)
    noise_norm = (sigma * torch.randn(5000, 16)).norm(dim=1).mean()
    median = nearest_neighbour_distances(h).median()
    assert abs(noise_norm - median) / median < 0.05  # σ√d ≈ median nearest-neighbour distance


def test_masking_rate_and_no_rescaling():
    torch.manual_seed(0)
    h = torch.ones(200, 100)
    masked = masking_corruption(h, 0.3)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert math.isclose((masked == 0).float().mean().item(), 0.3, abs_tol=0.01)
    assert masking_corruption(h, 0.0) is h


def test_corruption_settings():
    torch.manual_seed(0)
    h = torch.randn(64, 8)
    assert Corruption(sigma=0.0)(h).equal(h)
    assert not Corruption(sigma="nn")(h).equal(h)
    for bad in ({"sigma": "auto"}, {"sigma": -1.0}, {"mask": 1.0}):
        with pytest.raises(ValueError):
            Corruption(**bad)


def test_short_loop_terms_reach_only_their_own_map():
    torch.manual_seed(0)
    layer = TPLayer(6, 5, "tanh", feedback_activation="tanh").double()
    h_below = torch.tanh(torch.randn(16, 6, dtype=torch.float64))
    h = layer(h_below).detach()
    noise = 0.1 * torch.randn_like(h)
    corrupt = lambda t: t + noise if t.shape == h.shape else t  # noqa: E731  fixed noise
    total = short_loop_loss(layer, h_below, h, corrupt)
    g_params, f_params = list(layer.g.parameters()), list(layer.f.parameters())
    got_g = torch.autograd.grad(total, g_params, retain_graph=True)
    got_f = torch.autograd.grad(total, f_params)

    reconstruction = layer.g(h + noise)
    decoder = 0.5 * (reconstruction - h_below).pow(2).sum() / 16
    encoder = 0.5 * (layer.f(reconstruction.detach()) - h).pow(2).sum() / 16
    for got, want in zip(got_g, torch.autograd.grad(decoder, g_params)):
        torch.testing.assert_close(got, want)
    for got, want in zip(got_f, torch.autograd.grad(encoder, f_params)):
        torch.testing.assert_close(got, want)


def test_short_loop_training_makes_a_denoising_auto_encoder():
    """Trained with recirculation alone, g_l learns to undo f_l on the data."""
    torch.manual_seed(0)
    layer = TPLayer(8, 8, "tanh", feedback_activation="linear")
    data = torch.randn(512, 8)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    corrupt = Corruption(sigma=0.05)

    def error():
        with torch.no_grad():
            return (layer.g(layer(data)) - data).pow(2).mean().item()

    before = error()
    for _ in range(300):
        optimizer.zero_grad()
        short_loop_loss(layer, data, layer(data).detach(), corrupt, corrupt_encoder_input=True).backward()
        optimizer.step()
    assert error() < 0.1 * before
