"""Top levels of a generative stack: models of P(h_{L-1}) (Bengio 2014 §7).

Every top answers four questions about the joined top code h = h_{L-1}
(the concatenated codes of every modality):

* ``loss(h, known)``: the criterion that trains its own parameters;
* ``target(h, known)``: ĥ_{L-1}, a nearby more probable value: a noise-free
  reconstruction, or h + σ² ∂log P(h)/∂h where the score is analytic
  (a denoising auto-encoder's r(h) − h estimates σ² times the score,
  Alain & Bengio 2013, §2.2.4);
* ``sample(n, start, steps)``: top codes drawn from P(h_{L-1}), returned as
  the chain over time (a single state for exact, ancestral samplers);
* ``diagnostics()``: figures for the per-epoch log.

σ, the corruption of the top's denoising criterion (and the scale of its
target step), is the nearest-neighbour distance of the batch (§2.2.5) unless
fixed; a running average of it is kept for sampling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...autoencoders.corruption import nearest_neighbour_sigma
from ...core.noise import gaussian_like
from ...autoencoders.neighbours import nearest_neighbour_reconstruction_loss
from ...core.layers import make_map
from ...autoencoders.parzen import parzen_score
from ...autoencoders.priors import FactorialGaussianPrior, LearnedTopNoise, gaussian_of_linear_dae, sample_gaussian
from ...autoencoders.sampling import map_complete, top_chain, walk_back_loss
from ...core.updates import gaussian_nll, half_squared_error

Tensor = torch.Tensor

__all__ = ["Top", "DenoisingTop", "LinearTop", "FactorialTop", "ParzenTop", "LearnedNoiseTop",
           "TOPS", "TOP_CRITERIA", "make_top"]

TOP_CRITERIA = ("reconstruction", "nearest-neighbour")
_RUNNING = 0.05  # weight of the newest batch in the running σ and moments


class Top(nn.Module):
    """Shared plumbing: the corruption scale σ, measured or fixed, and its
    running average (a buffer, so it is saved with the network)."""

    analytic_sampling = True  # False: sampling runs Algorithm 3's chain from ``start``

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        if sigma < 0:
            raise ValueError(f"top_sigma must be >= 0 (0: nearest-neighbour), got {sigma}")
        self.fixed_sigma = sigma
        self.register_buffer("sigma", torch.tensor(float(sigma)))
        self.register_buffer("batches", torch.tensor(0))

    def scale(self, h: Tensor) -> Tensor | float:
        """σ for this batch; in training mode also folded into the running σ."""
        if self.fixed_sigma:
            return self.fixed_sigma
        sigma = nearest_neighbour_sigma(h.detach())
        if self.training:
            self._track(self.sigma, sigma)
        return sigma

    @torch.no_grad()
    def _track(self, running: Tensor, value: Tensor) -> None:
        """Running average: the first batch sets it, later ones move it by 5 %."""
        running.copy_(value if self.batches == 0 else torch.lerp(running, value.to(running), _RUNNING))

    def loss(self, h: Tensor, known: Tensor | None) -> Tensor:
        """The top's own criterion on the batch ``h`` (``known``: which
        modalities each row has); counts the training batches."""
        out = self._loss(h, known)
        if self.training:
            self.batches += 1
        return out

    def _loss(self, h: Tensor, known: Tensor | None) -> Tensor:
        raise NotImplementedError

    def target(self, h: Tensor, known: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, start: Tensor | None = None, steps: int = 1,
               generator: torch.Generator | None = None) -> list[Tensor]:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, float]:
        return {"top_sigma": float(self.sigma)}

    def _randn(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        """N(0, I) drawn on the CPU (where a seeded generator lives) and moved:
        a seed gives the same samples on every device."""
        return torch.randn(*shape, generator=generator).to(self.sigma.device, self.sigma.dtype)


class DenoisingTop(Top):
    """A denoising auto-encoder over the joined codes of M modalities
    (§2.2.4, §4): h_L = f_L(m ⊙ h, m), ĥ = g_L(corrupt(h_L)), with one
    missingness bit m per modality. Continuous modalities are reconstructed
    by squared error, categorical ones (a label as a one-hot code) by
    cross-entropy.

    While it trains (multi-modal stacks only), a fraction ``hide`` of the
    rows hide one of their modalities, drawn uniformly, which stays a
    reconstruction target: the missing-modality paths that Algorithm 6 uses
    are trained, and every row keeps something to infer from.
    ``walk_back`` > 1 adds the walk-back steps of Bengio et al. (2013b);
    ``criterion="nearest-neighbour"`` trains by Eq. 15 instead (§2.2.8), the
    batch being the candidate pool.
    """

    analytic_sampling = False

    def __init__(self, widths: list[int], categorical: list[bool], width: int,
                 activation: str = "tanh", hidden: int = 0, sigma: float = 0.0, hide: float = 0.67,
                 walk_back: int = 1, criterion: str = "reconstruction"):
        super().__init__(sigma)
        if criterion not in TOP_CRITERIA:
            raise ValueError(f"unknown top_criterion {criterion!r}; choose one of: {', '.join(TOP_CRITERIA)}")
        if criterion == "nearest-neighbour" and (len(widths) > 1 or any(categorical)):
            raise ValueError("the nearest-neighbour criterion needs a single continuous modality")
        if walk_back < 1:
            raise ValueError(f"walk_back must be >= 1, got {walk_back}")
        if not 0 <= hide <= 1:
            raise ValueError(f"modality_hide must lie in [0, 1], got {hide}")
        self.widths, self.categorical = list(widths), list(categorical)
        self.hide, self.walk_back, self.criterion = hide, walk_back, criterion
        self.encoder = make_map(sum(widths) + len(widths), width, activation, hidden, activation)
        self.decoders = nn.ModuleList(
            nn.Linear(width, w) if is_label else make_map(width, w, activation, hidden, activation)
            for w, is_label in zip(widths, categorical))

    def _units(self, present: Tensor) -> Tensor:
        """Per-modality bits (n, M) spread over each modality's units (n, D)."""
        sizes = torch.tensor(self.widths, device=present.device)
        return present.repeat_interleave(sizes, dim=1)

    def encode(self, h: Tensor, present: Tensor | None = None) -> Tensor:
        """f_L(m ⊙ h, m); ``present`` (n, M) is m, all ones when omitted."""
        if present is None:
            present = h.new_ones(h.shape[0], len(self.widths))
        present = present.to(h.dtype)
        return self.encoder(torch.cat([h * self._units(present), present], dim=1))

    def decode(self, code: Tensor) -> list[Tensor]:
        """Each modality's output: a reconstruction, or logits for a label."""
        return [decoder(code) for decoder in self.decoders]

    def values(self, outputs: list[Tensor]) -> Tensor:
        """The outputs as a point of code space (softmax for labels)."""
        return torch.cat([o.softmax(1) if is_label else o
                          for o, is_label in zip(outputs, self.categorical)], dim=1)

    def _error(self, values: Tensor, h: Tensor, known: Tensor) -> Tensor:
        """Σ over the modalities known for a row of ½‖ĥ − h‖² (continuous) or
        −log ĥ_y (labels, ĥ the softmax), each averaged over those rows;
        ``values`` is a reconstruction as :meth:`values` gives it."""
        total = h.new_zeros(())
        pairs = zip(values.split(self.widths, dim=1), h.split(self.widths, dim=1))
        for m, (out, part) in enumerate(pairs):
            rows = known[:, m]
            if not rows.any():
                continue
            if self.categorical[m]:
                total = total + F.nll_loss(out[rows].clamp_min(1e-12).log(), part[rows].argmax(1))
            else:
                total = total + half_squared_error(out[rows], part[rows])
        return total

    def reconstruct(self, code: Tensor) -> Tensor:
        return self.values(self.decode(code))

    def _modalities_to_hide(self, shape: torch.Size) -> Tensor:
        """Which modalities to hide: in a fraction ``hide`` of the rows, one
        modality drawn uniformly (so a row never loses all of them)."""
        rows, modalities = shape
        which = torch.randint(modalities, (rows,), device=self.sigma.device)
        chosen = torch.rand(rows, device=self.sigma.device) < self.hide
        return F.one_hot(which, modalities).bool() & chosen.unsqueeze(1)

    def _corrupt(self, code: Tensor) -> Tensor:
        return code + self.scale(code) * gaussian_like(code)

    def _loss(self, h: Tensor, known: Tensor) -> Tensor:
        present = known
        if len(self.widths) > 1 and self.hide:
            present = known & ~self._modalities_to_hide(known.shape)
        if self.criterion == "nearest-neighbour":  # the batch is the candidate pool
            return nearest_neighbour_reconstruction_loss(self.encode, self.reconstruct, h, None, self.scale)
        first = self.reconstruct(self._corrupt(self.encode(h, present)))
        loss = self._error(first, h, known)
        if self.walk_back > 1:  # walks 2..K start where the previous reconstruction ended
            loss = loss + walk_back_loss(
                h, lambda v: self.encode(v, known), self.reconstruct, self._corrupt, self.walk_back - 1,
                start=first.detach(), error=lambda out, target: self._error(out, target, known))
        return loss

    def target(self, h: Tensor, known: Tensor | None = None) -> Tensor:
        """The noise-free reconstruction g_L(f_L(m ⊙ h, m))."""
        return self.reconstruct(self.encode(h, known))

    def complete(self, h: Tensor, present: Tensor, steps: int, noise: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        """Algorithm 6: modalities with present = 0 start at 0 and are filled
        in by iterated noise-free reconstruction (the first told which are
        missing, later ones seeing every input as observed), the present
        ones clamped. ``noise`` > 0 is the MCMC variant: Gaussian noise of
        that many σ on the code, annealed linearly to 0 over the steps."""
        observed = self._units(present).bool()
        h = torch.where(observed, h, torch.zeros_like(h))
        if not noise:
            return map_complete(h, observed, self.target, steps,
                                first_reconstruct=lambda v: self.target(v, present))
        with torch.no_grad():
            for step in range(steps):
                code = self.encode(h, present if step == 0 else None)
                scale = noise * float(self.sigma) * (1 - step / steps)
                code = code + scale * self._randn(*code.shape, generator=generator)
                h = torch.where(observed, h, self.reconstruct(code))
        return h

    @torch.no_grad()
    def sample(self, n: int, start: Tensor | None = None, steps: int = 1,
               generator: torch.Generator | None = None) -> list[Tensor]:
        """Algorithm 3's chain h ← g_L(corrupt(f_L(h))), σ the running
        corruption of training; ``start``: recorded codes h_{L-1}."""
        if start is None:
            raise ValueError("a denoising top samples by a Markov chain: give start codes")
        sigma = float(self.sigma)
        corrupt = lambda c: c + sigma * self._randn(*c.shape, generator=generator)  # noqa: E731
        return top_chain(start[:n], self.encode, self.reconstruct, corrupt, steps)


class LinearTop(Top):
    """A linear denoising auto-encoder r(h̃) = A h̃ + b, h̃ = h + σξ (§7.1),
    read as the Gaussian prior it has learned, Σ = σ²(I − A)⁻¹A,
    μ = (I − A)⁻¹b, and sampled exactly."""

    def __init__(self, width: int, sigma: float = 0.0):
        super().__init__(sigma)
        self.linear = nn.Linear(width, width)

    def _loss(self, h, known):
        return half_squared_error(self.linear(h + self.scale(h) * gaussian_like(h)), h)

    def target(self, h, known=None):
        return self.linear(h)

    def gaussian(self) -> tuple[Tensor, Tensor]:
        weight, bias = self.linear.weight.detach().double(), self.linear.bias.detach().double()
        return gaussian_of_linear_dae(weight, bias, float(self.sigma))

    @torch.no_grad()
    def sample(self, n, start=None, steps=1, generator=None):
        mean, covariance = self.gaussian()
        return [sample_gaussian(mean, covariance, n, generator).to(self.sigma.dtype)]


class FactorialTop(Top):
    """A factorial Gaussian P(h) = Π_j N(h_j; m_j, s_j²) (§7.2), whose moments
    follow the codes as running averages; no auto-encoder is needed, the
    score (m − h)/s² is analytic and sampling is exact.

    The target is what the best denoising auto-encoder of this prior would
    reconstruct under corruption σ (§7.1's optimum, per unit),
    h + σ²/(s² + σ²) (m − h): h + σ² × score for σ ≪ s, and never past the
    mean where a unit's spread s is smaller than σ."""

    def __init__(self, width: int, sigma: float = 0.0):
        super().__init__(sigma)
        self.prior = FactorialGaussianPrior(width)

    def _loss(self, h, known):
        if self.training:
            self.scale(h)
            with torch.no_grad():
                self._track(self.prior.mean, h.mean(0))
                self._track(self.prior.std, h.std(0, unbiased=False).clamp_min(1e-4))
        return h.new_zeros(())

    def target(self, h, known=None):
        variance = self.sigma ** 2
        return torch.lerp(h, self.prior.mean, variance / (self.prior.std ** 2 + variance))

    def sample(self, n, start=None, steps=1, generator=None):
        return [self.prior.sample(n, generator)]


class ParzenTop(Top):
    """Parzen windows on stored top codes (§7.3, Eq. 21): the target moves h
    by σ² Σ_i w_i (μ_i − h)/σ², toward the nearest stored codes; sampling
    picks a stored code and adds N(0, σ² I). The store is a ring of the
    last ``capacity`` training codes, so μ_i are other examples' codes."""

    def __init__(self, width: int, sigma: float = 0.0, capacity: int = 10_000):
        super().__init__(sigma)
        self.register_buffer("bank", torch.zeros(capacity, width))
        self.register_buffer("stored", torch.tensor(0))

    def centres(self) -> Tensor:
        return self.bank[:min(int(self.stored), len(self.bank))]

    def _loss(self, h, known):
        if self.training:
            self.scale(h)
            with torch.no_grad():
                rows = (self.stored + torch.arange(len(h), device=h.device)) % len(self.bank)
                self.bank[rows] = h.detach()
                self.stored += len(h)
        return h.new_zeros(())

    def target(self, h, known=None):
        centres, sigma = self.centres(), float(self.sigma)
        if len(centres) == 0 or sigma == 0:
            return h
        return h + sigma ** 2 * parzen_score(h, centres, sigma)

    def sample(self, n, start=None, steps=1, generator=None):
        centres = self.centres()
        if len(centres) == 0:
            raise ValueError("the Parzen top has stored no codes yet: train first")
        pick = torch.randint(len(centres), (n,), generator=generator).to(centres.device)
        return [centres[pick] + float(self.sigma) * self._randn(n, centres.shape[1], generator=generator)]


class LearnedNoiseTop(Top):
    """A top auto-encoder with learned per-unit corruption σ_j (§7.4, Eq. 22):
    μ = f_L(h), h_L = μ + σ ⊙ ξ, ĥ = g_L(h_L), trained by

        −log P(h | h_L) − ½ Σ_j (log σ_j² + 1 − μ_j² − σ_j²),

    P(h | h_L) Gaussian with a learned variance per unit, so both terms are
    in nats. Samples are g_L(ξ), ξ ~ N(0, I), the prior of Eq. 22. The σ_j
    spectrum (``diagnostics``) is the dimensionality the model discovered."""

    def __init__(self, width: int, code_width: int, activation: str = "tanh", hidden: int = 0):
        super().__init__(0.0)
        self.encoder = make_map(width, code_width, "linear", hidden, activation)
        self.noise = LearnedTopNoise(code_width)
        self.decoder = make_map(code_width, width, activation, hidden, activation)
        self.log_variance = nn.Parameter(torch.full((width,), -4.0))

    def _loss(self, h, known):
        mean = self.encoder(h)
        reconstruction = self.decoder(self.noise(mean))
        return gaussian_nll(h, reconstruction, self.log_variance) + self.noise.penalty(mean)

    def target(self, h, known=None):
        return self.decoder(self.encoder(h))

    @torch.no_grad()
    def sample(self, n, start=None, steps=1, generator=None):
        return [self.decoder(self._randn(n, len(self.noise.log_sigma), generator=generator))]

    def diagnostics(self):
        sigma = self.noise.sigma.detach()
        return {"top_dimensions": int((sigma < 0.5).sum()), "top_sigma_min": float(sigma.min()),
                "top_sigma_median": float(sigma.median())}


TOPS = ("dae", "linear", "factorial", "parzen", "learned-noise")


def make_top(kind: str, widths: list[int], categorical: list[bool], code_width: int,
             activation: str = "tanh", hidden: int = 0, sigma: float = 0.0, hide: float = 0.67,
             walk_back: int = 1, criterion: str = "reconstruction") -> Top:
    """The top named ``kind`` over modality codes of ``widths``; every top but
    the denoising auto-encoder models a single continuous modality."""
    if kind not in TOPS:
        raise ValueError(f"unknown top_prior {kind!r}; choose one of: {', '.join(TOPS)}")
    if kind == "dae":
        return DenoisingTop(widths, categorical, code_width, activation, hidden, sigma, hide,
                            walk_back, criterion)
    if len(widths) > 1 or any(categorical):
        raise ValueError(f"top_prior {kind!r} models one continuous modality; multi-modal stacks "
                         "need top_prior=dae")
    (width,) = widths
    if kind == "linear":
        return LinearTop(width, sigma)
    if kind == "factorial":
        return FactorialTop(width, sigma)
    if kind == "parzen":
        return ParzenTop(width, sigma)
    return LearnedNoiseTop(width, code_width, activation, hidden)
