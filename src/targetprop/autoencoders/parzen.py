"""Parzen windows: an isotropic Gaussian at each of m stored points.

    P(h) = 1/m Σ_i N(h; μ_i, σ² I)

Two uses (Bengio 2014 §7.3 and the evaluation of generative stacks):

* the score of Eq. 21, ∂log P(h)/∂h = Σ_i w_i (μ_i − h)/σ² with w the
  softmax of −‖h − μ_i‖²/(2σ²): a top-level prior that pulls h toward the
  nearest modes of the stored codes;
* the Parzen-window log-likelihood of test data under generated samples,
  with σ chosen on a validation split (the estimator of the GSN and GAN
  papers), reported with its standard error.

Everything runs in chunks of rows, so m and the number of queries can be in
the tens of thousands without an (n, m) matrix in memory.
"""
from __future__ import annotations

import math

import torch

from .neighbours import squared_distances

Tensor = torch.Tensor

__all__ = ["parzen_log_density", "parzen_score", "select_bandwidth", "parzen_log_likelihood"]


def parzen_log_density(x: Tensor, centres: Tensor, sigma: float, chunk: int = 2048) -> Tensor:
    """log P(x_a) for each row of ``x`` (n, d) under the Parzen windows on
    ``centres`` (m, d) with bandwidth ``sigma``:

        log P(x) = logsumexp_i(−‖x − μ_i‖² / 2σ²) − log m − (d/2) log(2πσ²)
    """
    if sigma <= 0:
        raise ValueError(f"the bandwidth must be > 0, got {sigma}")
    m, d = centres.shape
    norm = math.log(m) + 0.5 * d * math.log(2 * math.pi * sigma ** 2)
    out = []
    for rows in x.split(chunk):
        # logsumexp over centres, a chunk at a time
        total = torch.full((len(rows),), -math.inf, dtype=x.dtype, device=x.device)
        for block in centres.split(chunk):
            exponents = squared_distances(rows, block).mul_(-0.5 / sigma ** 2)
            total = torch.logaddexp(total, torch.logsumexp(exponents, dim=1))
        out.append(total - norm)
    return torch.cat(out)


def parzen_score(h: Tensor, centres: Tensor, sigma: float, chunk: int = 2048) -> Tensor:
    """Eq. 21: ∂log P(h)/∂h = Σ_i w_i (μ_i − h)/σ², with w_i the softmax over
    i of −‖h − μ_i‖²/(2σ²); one row per row of ``h``. Exclude h's own entry
    from ``centres`` when h is a stored point (the paper's "a set of
    training examples excluding h_L")."""
    if sigma <= 0:
        raise ValueError(f"the bandwidth must be > 0, got {sigma}")
    out = []
    for rows in h.split(chunk):
        weights = torch.softmax(squared_distances(rows, centres).mul_(-0.5 / sigma ** 2), dim=1)
        out.append((weights @ centres - rows) / sigma ** 2)
    return torch.cat(out)


def select_bandwidth(validation: Tensor, centres: Tensor, sigmas: list[float]) -> tuple[float, list[float]]:
    """The σ among ``sigmas`` with the highest mean validation log-density,
    and the mean for every σ tried."""
    if not sigmas:
        raise ValueError("give at least one bandwidth to try")
    means = [parzen_log_density(validation, centres, s).mean().item() for s in sigmas]
    return sigmas[max(range(len(sigmas)), key=means.__getitem__)], means


def parzen_log_likelihood(test: Tensor, centres: Tensor, sigma: float) -> tuple[float, float]:
    """Mean Parzen log-likelihood of ``test`` and its standard error,
    std / √n over the test rows."""
    values = parzen_log_density(test, centres, sigma)
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()
