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

:class:`LearnedTopNoise` learns how much to corrupt each top-level unit
instead (§7.4, Eq. 22).
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.noise import gaussian_like

Tensor = torch.Tensor

__all__ = ["linear_dae_optimum", "gaussian_of_linear_dae", "sample_gaussian", "LearnedTopNoise",
           "FactorialGaussianPrior"]


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
    noise = torch.randn(n, len(mean), generator=generator, dtype=mean.dtype).to(mean.device)
    return mean + noise @ root.T


class LearnedTopNoise(nn.Module):
    """Per-dimension top-level corruption σ_j, learned (Bengio 2014 §7.4).

    The top code h_L is the mean μ; the corrupted code is μ + σ ⊙ ξ,
    ξ ~ N(0, I), with σ independent of the input, so the decoder can learn in
    which directions to contract. :meth:`penalty` is Eq. 22's prior and
    entropy terms,

        −½ Σ_j (log σ_j² + 1 − μ_j² − σ_j²)      (= KL(N(μ, σ²) ‖ N(0, I))),

    averaged over the batch; added to the reconstruction error it lets
    gradient descent pick the noise level of each unit. Units the decoder
    ignores drift to σ_j = 1 (pure prior), units that carry signal to small
    σ_j: :meth:`spectrum` reads off the dimensionality the model found.
    """

    def __init__(self, width: int, initial_sigma: float = 0.1):
        super().__init__()
        if initial_sigma <= 0:
            raise ValueError(f"initial_sigma must be > 0, got {initial_sigma}")
        self.log_sigma = nn.Parameter(torch.full((width,), float(initial_sigma)).log())

    @property
    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def forward(self, mean: Tensor) -> Tensor:
        """A corrupted sample μ + σ ⊙ ξ (reparameterised: gradients reach σ)."""
        return mean + self.sigma * gaussian_like(mean)

    def penalty(self, mean: Tensor) -> Tensor:
        """Eq. 22 without its reconstruction term, averaged over the batch."""
        log_variance = 2 * self.log_sigma
        per_unit = log_variance + 1 - mean.pow(2) - log_variance.exp()
        return -0.5 * per_unit.sum() / mean.shape[0]

    def spectrum(self) -> Tensor:
        """σ_j sorted from smallest (signal) to largest (noise)."""
        return self.sigma.detach().sort().values


class FactorialGaussianPrior(nn.Module):
    """A factorial top-level prior P(h) = Π_j N(h_j; m_j, s_j²) (Bengio 2014
    §7.2): no auto-encoder is needed at the top, because its score is
    analytic, ∂log P(h)/∂h = (m − h)/s², and sampling is exact and ancestral.
    ``fit`` sets (m, s) to the maximum-likelihood values on a batch of codes.
    """

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    @torch.no_grad()
    def fit(self, codes: Tensor, floor: float = 1e-4) -> "FactorialGaussianPrior":
        self.mean.copy_(codes.mean(0))
        self.std.copy_(codes.std(0, unbiased=False).clamp_min(floor))
        return self

    def log_prob(self, h: Tensor) -> Tensor:
        return torch.distributions.Normal(self.mean, self.std).log_prob(h).sum(-1)

    def score(self, h: Tensor) -> Tensor:
        """∂log P(h)/∂h, the direction a top-level target moves h in."""
        return (self.mean - h) / self.std ** 2

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(n, len(self.mean), generator=generator, dtype=self.mean.dtype).to(self.mean.device)
        return self.mean + self.std * noise
