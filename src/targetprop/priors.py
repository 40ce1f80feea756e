"""Top-level priors read off auto-encoders (Bengio 2014 §7.1).

A linear denoising auto-encoder r(h̃) = A h̃ + b, trained with corruption
h̃ = h + σξ (ξ ~ N(0, I)) on data h ~ N(μ, Σ), has as its optimum the
posterior mean E[h | h̃]:

    A = Σ (Σ + σ² I)⁻¹,        b = (I − A) μ.

So r(h) − h = −σ² (Σ + σ² I)⁻¹ (h − μ), which tends to σ² Σ⁻¹ (μ − h), the
score of the Gaussian, as σ → 0; and the weights map back to the Gaussian

    Σ = σ² (I − A)⁻¹ A,        μ = (I − A)⁻¹ b,

which can be sampled exactly instead of by running the auto-encoder's
Markov chain.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["linear_dae_optimum", "gaussian_of_linear_dae", "sample_gaussian"]


def linear_dae_optimum(mean: Tensor, covariance: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """(A, b) of the best linear denoising auto-encoder for N(mean,
    covariance) data under N(0, σ² I) corruption."""
    eye = torch.eye(len(mean), dtype=mean.dtype, device=mean.device)
    weight = torch.linalg.solve(covariance + sigma ** 2 * eye, covariance).T  # Σ(Σ+σ²I)⁻¹, Σ symmetric
    return weight, (eye - weight) @ mean


def gaussian_of_linear_dae(weight: Tensor, bias: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """The Gaussian (mean, covariance) that a linear denoising auto-encoder
    with weights ``weight`` (A) and ``bias`` (b), trained with corruption σ,
    has learned. A learned A is only approximately symmetric; the covariance
    is symmetrised."""
    eye = torch.eye(len(bias), dtype=bias.dtype, device=bias.device)
    complement = eye - weight
    covariance = sigma ** 2 * torch.linalg.solve(complement, weight)
    return torch.linalg.solve(complement, bias), 0.5 * (covariance + covariance.T)


def sample_gaussian(mean: Tensor, covariance: Tensor, n: int,
                    generator: torch.Generator | None = None) -> Tensor:
    """n exact samples of N(mean, covariance) (ancestral sampling of a
    Gaussian top level, no Markov chain); the covariance may be singular."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    root = eigenvectors * eigenvalues.clamp_min(0).sqrt()
    noise = torch.randn(n, len(mean), generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + noise @ root.T
