"""Parzen windows (density against a direct mixture, Eq. 21 against autograd),
the chunked nearest-neighbour search against brute force, and Eq. 15's
nearest-neighbour reconstruction criterion."""
from __future__ import annotations

import math

import pytest
import torch

from targetprop.autoencoders.parzen import parzen_log_density, parzen_log_likelihood, parzen_score, select_bandwidth


def data(n=30, m=50, d=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=generator, dtype=torch.float64),
            torch.randn(m, d, generator=generator, dtype=torch.float64))


def test_log_density_matches_the_mixture_of_gaussians():
    x, centres = data()
    sigma = 0.7
    components = torch.distributions.Normal(centres.unsqueeze(0), sigma)   # (1, m, d)
    per_component = components.log_prob(x.unsqueeze(1)).sum(-1)           # (n, m)
    expected = torch.logsumexp(per_component, dim=1) - math.log(len(centres))
    torch.testing.assert_close(parzen_log_density(x, centres, sigma), expected)
    # chunking over queries and centres changes nothing
    torch.testing.assert_close(parzen_log_density(x, centres, sigma, chunk=7), expected)


def test_score_of_eq_21_is_the_gradient_of_the_log_density():
    h, centres = data()
    sigma = 0.9
    h = h.requires_grad_()
    (gradient,) = torch.autograd.grad(parzen_log_density(h, centres, sigma).sum(), h)
    torch.testing.assert_close(parzen_score(h.detach(), centres, sigma), gradient)
    torch.testing.assert_close(parzen_score(h.detach(), centres, sigma, chunk=4), gradient)


def test_score_pulls_toward_the_nearest_centre_at_small_bandwidth():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    h = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    sigma = 0.5
    torch.testing.assert_close(parzen_score(h, centres, sigma), (centres[:1] - h) / sigma ** 2)


def test_bandwidth_selection_and_standard_error():
    validation, centres = data(n=40, m=200, seed=1)
    sigmas = [0.05, 0.3, 1.0, 5.0]
    best, means = select_bandwidth(validation, centres, sigmas)
    assert means == [parzen_log_density(validation, centres, s).mean().item() for s in sigmas]
    assert best == sigmas[means.index(max(means))] and best not in (0.05, 5.0)  # interior optimum
    test = data(n=25, seed=2)[0]
    mean, error = parzen_log_likelihood(test, centres, best)
    values = parzen_log_density(test, centres, best)
    assert mean == pytest.approx(values.mean().item())
    assert error == pytest.approx(values.std().item() / 5)
    with pytest.raises(ValueError, match="bandwidth"):
        parzen_log_density(test, centres, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        select_bandwidth(validation, centres, [])


def test_nearest_matches_brute_force_across_chunks():
    from targetprop.autoencoders.neighbours import nearest
    queries, pool = data(n=23, m=41, d=5, seed=3)
    brute = torch.cdist(queries, pool)
    indices, squared = nearest(queries, pool, chunk=8)
    assert torch.equal(indices, brute.argmin(dim=1))
    torch.testing.assert_close(squared, brute.min(dim=1).values ** 2)
    with pytest.raises(ValueError, match="empty"):
        nearest(queries, pool[:0])


def test_nearest_neighbour_reconstruction_follows_eq_15():
    """With fixed noise the criterion picks, by brute force, the pool example
    whose code is nearest to f(x) − ξ, and reconstructs x from its code + ξ."""
    from targetprop.autoencoders.neighbours import nearest_neighbour_reconstruction_loss
    torch.manual_seed(0)
    encoder, decoder = torch.nn.Linear(5, 3).double(), torch.nn.Linear(3, 5).double()
    x, pool = data(n=8, m=40, d=5, seed=4)
    noise = torch.randn(8, 3, dtype=torch.float64)
    sigma = 0.3
    loss = nearest_neighbour_reconstruction_loss(encoder, decoder, x, pool, sigma, noise)

    codes, xi = encoder(x), sigma * noise
    chosen = torch.cdist(codes - xi, encoder(pool)).argmin(dim=1)
    neighbour = encoder(pool[chosen])
    expected = 0.5 * ((decoder(neighbour + xi) - x).pow(2).sum() + 2 * (codes - neighbour).pow(2).sum()) / 8
    torch.testing.assert_close(loss, expected)
    # without noise and with x in the pool, x is its own neighbour: a plain auto-encoder
    plain = nearest_neighbour_reconstruction_loss(encoder, decoder, x, torch.cat([pool, x]), 0.0)
    torch.testing.assert_close(plain, 0.5 * (decoder(encoder(x)) - x).pow(2).sum() / 8)
    loss.backward()
    assert all(p.grad is not None for p in [*encoder.parameters(), *decoder.parameters()])
    # the batch as its own pool, σ a function of the codes: the same as passing both explicitly
    own = nearest_neighbour_reconstruction_loss(encoder, decoder, x, None, lambda c: c.std(), noise)
    explicit = nearest_neighbour_reconstruction_loss(encoder, decoder, x, x, encoder(x).std(), noise)
    torch.testing.assert_close(own, explicit)
