"""A linear denoising auto-encoder as a Gaussian prior (Bengio 2014 §7.1)."""
from __future__ import annotations

import torch

from targetprop.autoencoders.priors import gaussian_of_linear_dae, linear_dae_optimum, sample_gaussian


def gaussian(d=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))[0]
    covariance = basis @ torch.diag(torch.tensor([0.2, 0.5, 1.0, 3.0], dtype=torch.float64)) @ basis.T
    return torch.randn(d, generator=generator, dtype=torch.float64), covariance, generator


def test_weights_map_back_to_the_gaussian():
    mean, covariance, _ = gaussian()
    weight, bias = linear_dae_optimum(mean, covariance, sigma=0.3)
    got_mean, got_covariance = gaussian_of_linear_dae(weight, bias, sigma=0.3)
    torch.testing.assert_close(got_mean, mean)
    torch.testing.assert_close(got_covariance, covariance)


def test_fitted_linear_dae_matches_the_optimum_and_the_gaussian_score():
    """Least squares on corrupted samples (an independent fit, no formula)
    finds the optimum, and its reconstruction direction follows Σ⁻¹(μ − h)."""
    mean, covariance, generator = gaussian()
    sigma, n = 0.1, 200_000
    clean = sample_gaussian(mean, covariance, n, generator)
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    design = torch.cat([noisy, torch.ones(n, 1, dtype=clean.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, clean).solution            # r(h̃) = [h̃, 1] @ solution
    weight, bias = solution[:-1].T, solution[-1]
    want_weight, want_bias = linear_dae_optimum(mean, covariance, sigma)
    torch.testing.assert_close(weight, want_weight, atol=0.01, rtol=0)
    torch.testing.assert_close(bias, want_bias, atol=0.01, rtol=0)

    h = sample_gaussian(mean, covariance, 500, generator)
    direction = h @ weight.T + bias - h
    score = (mean - h) @ torch.linalg.inv(covariance)
    cosine = torch.nn.functional.cosine_similarity(direction, score, dim=1)
    assert cosine.min() > 0.95 and cosine.mean() > 0.99


def test_exact_samples_have_the_gaussian_moments():
    mean, covariance, generator = gaussian(seed=1)
    samples = sample_gaussian(mean, covariance, 100_000, generator)
    torch.testing.assert_close(samples.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), covariance, atol=0.05, rtol=0)
    singular = torch.zeros(4, 4, dtype=torch.float64)
    singular[0, 0] = 1.0
    flat = sample_gaussian(mean, singular, 10, generator)
    assert torch.equal(flat[:, 1:], mean[1:].expand(10, 3))


def test_eq_22_penalty_is_the_kl_to_the_standard_normal():
    from targetprop.autoencoders.priors import LearnedTopNoise
    noise = LearnedTopNoise(3, initial_sigma=0.4).double()
    with torch.no_grad():
        noise.log_sigma.copy_(torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64).log())
    mean = torch.randn(5, 3, dtype=torch.float64)
    posterior = torch.distributions.Normal(mean, noise.sigma.detach())
    prior = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    kl = torch.distributions.kl_divergence(posterior, prior).sum() / 5
    torch.testing.assert_close(noise.penalty(mean), kl)


def test_learned_noise_finds_the_signal_dimensions():
    """Data on a 2-d subspace of R^6, a 4-unit linear auto-encoder with learned
    top noise: two σ_j shrink (signal), two go to the prior's 1 (noise)."""
    from targetprop.autoencoders.priors import LearnedTopNoise
    torch.manual_seed(0)
    mixing = torch.randn(6, 2)
    encoder, decoder, noise = torch.nn.Linear(6, 4), torch.nn.Linear(4, 6), LearnedTopNoise(4)
    modules = torch.nn.ModuleList([encoder, decoder, noise])
    optimizer = torch.optim.Adam(modules.parameters(), lr=2e-2)
    for _ in range(1500):
        x = torch.randn(256, 2) @ mixing.T
        mean = encoder(x)
        reconstruction_error = 50 * (decoder(noise(mean)) - x).pow(2).sum() / len(x)
        optimizer.zero_grad()
        (reconstruction_error + noise.penalty(mean)).backward()
        optimizer.step()
    spectrum = noise.spectrum()
    assert spectrum[1] < 0.2 and spectrum[2] > 0.8, spectrum


def test_factorial_prior_score_is_the_gradient_of_its_log_density():
    from targetprop.autoencoders.priors import FactorialGaussianPrior
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(1000, 3, generator=generator, dtype=torch.float64) * torch.tensor(
        [0.5, 1.0, 2.0], dtype=torch.float64) + 1.0
    prior = FactorialGaussianPrior(3).double().fit(codes)
    torch.testing.assert_close(prior.mean, codes.mean(0))
    torch.testing.assert_close(prior.std, codes.std(0, unbiased=False))
    h = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(prior.log_prob(h).sum(), h)
    torch.testing.assert_close(prior.score(h.detach()), gradient)
    samples = prior.sample(50_000, generator)
    torch.testing.assert_close(samples.std(0), prior.std, atol=0.03, rtol=0)
