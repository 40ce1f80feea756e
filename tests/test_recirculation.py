"""Corruption processes and Algorithm 2's short loop."""
from __future__ import annotations

import math

import pytest
import torch

from targetprop import TPLayer
from targetprop.autoencoders.corruption import (Corruption, masking_corruption, nearest_neighbour_distances,
                                   nearest_neighbour_sigma)
from targetprop.autoencoders.recirculation import short_loop_loss


def test_nearest_neighbour_distances_match_brute_force():
    torch.manual_seed(0)
    h = torch.randn(40, 7, dtype=torch.float64)
    expected = [min(torch.dist(h[i], h[j]).item() for j in range(40) if j != i) for i in range(40)]
    torch.testing.assert_close(nearest_neighbour_distances(h), torch.tensor(expected, dtype=h.dtype))
    with pytest.raises(ValueError, match="two examples"):
        nearest_neighbour_distances(h[:1])


@pytest.mark.parametrize("n", [39, 40])
def test_nearest_neighbour_sigma_is_the_median_distance_over_root_d(n):
    torch.manual_seed(0)
    h = torch.randn(n, 7, dtype=torch.float64)
    distances = [min(torch.dist(h[i], h[j]).item() for j in range(n) if j != i) for i in range(n)]
    expected = torch.tensor(distances, dtype=h.dtype).median() / 7 ** 0.5  # torch: the lower middle
    torch.testing.assert_close(nearest_neighbour_sigma(h), expected)
    with pytest.raises(ValueError, match="two examples"):
        nearest_neighbour_sigma(h[:1])


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
    assert Corruption(sigma="nn").scale(h) == nearest_neighbour_sigma(h)
    ones = torch.ones_like
    torch.testing.assert_close(Corruption(sigma="nn")(h, sigma=0.5, noise=ones), h + 0.5)
    per_layer = Corruption(sigma=(0.0, 0.5, 2.0))
    assert per_layer.scales([h, h], first_index=1) == [0.5, 2.0]
    torch.testing.assert_close(per_layer(h, noise=torch.ones_like, index=1), h + 0.5)
    per_layer.check_depth(3)
    with pytest.raises(ValueError, match="needs 4 values"):
        per_layer.check_depth(4)
    for bad in ({"sigma": "auto"}, {"sigma": -1.0}, {"sigma": (0.1, -1.0)}, {"mask": 1.0}):
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

    # the encoder weight scales the f_l term alone; 0 leaves f_l without gradient
    weighted = short_loop_loss(layer, h_below, h, corrupt, encoder_weight=0.25)
    for got, want in zip(torch.autograd.grad(weighted, f_params, retain_graph=True), got_f):
        torch.testing.assert_close(got, 0.25 * want)
    for got, want in zip(torch.autograd.grad(weighted, g_params), got_g):
        torch.testing.assert_close(got, want)
    decoder_only = short_loop_loss(layer, h_below, h, corrupt, encoder_weight=0.0)
    assert torch.autograd.grad(decoder_only, f_params, allow_unused=True) == (None, None)


def test_long_loop_target_adds_its_decoder_term():
    """With ĥ_l given, the loss gains ½‖g_l(corrupt(ĥ_l)) − h_{l-1}‖² (Algorithm 5),
    decoded in the same call; the encoder term still uses the short loop's h̃."""
    torch.manual_seed(0)
    layer = TPLayer(6, 5, "tanh", feedback_activation="tanh").double()
    h_below = torch.tanh(torch.randn(16, 6, dtype=torch.float64))
    h = layer(h_below).detach()
    target = h + 0.05 * torch.randn_like(h)
    noise = 0.1 * torch.randn(32, 5, dtype=torch.float64)
    corrupt = lambda t: t + noise[:len(t)] if len(t) == 16 else t + noise  # noqa: E731
    both = short_loop_loss(layer, h_below, h, corrupt, encoder_weight=0.5, long_loop_target=target)
    short = short_loop_loss(layer, h_below, h, corrupt, encoder_weight=0.5)
    long = 0.5 * (layer.g(target + noise[16:]) - h_below).pow(2).sum() / 16
    torch.testing.assert_close(both, short + long)


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
        short_loop_loss(layer, data, layer(data).detach(), corrupt, corrupt_input=corrupt).backward()
        optimizer.step()
    assert error() < 0.1 * before
