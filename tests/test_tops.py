"""Top levels of generative stacks (Bengio 2014 §7), each against an
independent reference: closed forms, autograd, torch.distributions."""
from __future__ import annotations

import pytest
import torch

from targetprop.autoencoders.corruption import nearest_neighbour_sigma
from targetprop.autoencoders.parzen import parzen_log_density
from targetprop.autoencoders.priors import linear_dae_optimum
from targetprop.rules.generative.tops import (DenoisingTop, FactorialTop, LearnedNoiseTop, LinearTop, ParzenTop,
                             make_top)


pytestmark = pytest.mark.usefixtures("float64")  # every test here runs in float64


def multimodal_top(**kwargs) -> DenoisingTop:
    torch.manual_seed(0)
    return DenoisingTop([5, 4, 3], [False, False, True], width=8, **kwargs)


def test_map_completion_keeps_every_observed_unit_fixed():
    top = multimodal_top().eval()
    h = torch.randn(6, 12)
    present = torch.tensor([[True, False, True]] * 3 + [[False, True, False]] * 3)
    completed = top.complete(h, present, steps=5)
    observed = top._units(present).bool()
    assert torch.equal(completed[observed], h[observed])
    assert not torch.allclose(completed[~observed], h[~observed])
    # the MCMC variant clamps them too
    noisy = top.complete(h, present, steps=5, noise=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noisy[observed], h[observed])


def test_map_completion_is_the_iterated_reconstruction():
    """Algorithm 6 by hand: the missing block starts at 0, the first
    reconstruction sees the missingness bits, later ones see all as present."""
    top = multimodal_top().eval()
    h = torch.randn(4, 12)
    present = torch.tensor([[True, False, True]] * 4)
    missing = slice(5, 9)
    expected = h.clone()
    expected[:, missing] = 0
    expected[:, missing] = top.target(expected, present)[:, missing]
    for _ in range(2):
        expected[:, missing] = top.target(expected)[:, missing]
    assert torch.allclose(top.complete(h, present, steps=3), expected)


def test_hidden_modalities_stay_targets_and_hiding_can_be_off():
    """With hide = 0 the loss is the plain denoising criterion: squared error
    on continuous codes and cross-entropy on the label, noise seeded."""
    top = multimodal_top(hide=0.0)
    h = torch.cat([torch.randn(7, 9), torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2, 0])]], 1)
    known = torch.ones(7, 3, dtype=torch.bool)
    torch.manual_seed(3)
    loss = top.loss(h, known)
    torch.manual_seed(3)
    code = top.encode(h, known)
    sigma = top.scale(code)
    corrupted = code + sigma * torch.randn(code.shape, dtype=torch.float32).to(code)
    out = top.decode(corrupted)
    expected = (0.5 * (out[0] - h[:, :5]).pow(2).sum(1).mean() + 0.5 * (out[1] - h[:, 5:9]).pow(2).sum(1).mean()
                + torch.nn.functional.cross_entropy(out[2], h[:, 9:].argmax(1)))
    assert torch.allclose(loss, expected)


def test_walk_back_adds_steps_that_start_where_the_last_ended():
    torch.manual_seed(0)
    top = DenoisingTop([6], [False], width=5, walk_back=3)
    h = torch.randn(10, 6)
    known = torch.ones(10, 1, dtype=torch.bool)
    torch.manual_seed(4)
    loss = top.loss(h, known)
    torch.manual_seed(4)
    expected, start = 0.0, h
    for _ in range(3):
        code = top.encode(start)
        recon = top.reconstruct(code + top.scale(code) * torch.randn(code.shape, dtype=torch.float32).to(code))
        expected = expected + 0.5 * (recon - h).pow(2).sum(1).mean()
        start = recon.detach()
    assert torch.allclose(loss, expected)


def test_linear_top_reads_off_the_gaussian_it_was_trained_on():
    """§7.1: a linear DAE trained by its own loss on N(μ, Σ) data maps back
    to μ and Σ."""
    torch.manual_seed(0)
    mean = torch.tensor([0.5, -1.0, 0.2])
    factor = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.5, 0.0], [-0.3, 0.2, 0.4]])
    covariance = factor @ factor.T
    data = mean + torch.randn(20000, 3) @ factor.T
    top = LinearTop(3, sigma=0.3)
    optimizer = torch.optim.Adam(top.parameters(), lr=0.02)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 500, 0.3)
    known = torch.ones(1000, 1, dtype=torch.bool)
    for step in range(2000):
        batch = data[torch.randint(len(data), (1000,))]
        optimizer.zero_grad()
        top.loss(batch, known).backward()
        optimizer.step()
        scheduler.step()
    fitted_mean, fitted_covariance = top.gaussian()
    assert torch.allclose(fitted_mean, mean, atol=0.05)
    assert torch.allclose(fitted_covariance, covariance, atol=0.05)
    samples = top.sample(50000, generator=torch.Generator().manual_seed(0))[0]
    assert torch.allclose(samples.mean(0), mean, atol=0.05)


def test_factorial_top_tracks_the_moments_and_steps_along_its_score():
    torch.manual_seed(0)
    top = FactorialTop(4)
    data = torch.tensor([1.0, -2.0, 0.0, 3.0]) + torch.tensor([0.5, 1.0, 2.0, 0.1]) * torch.randn(4000, 4)
    for batch in data.split(200):
        top.loss(batch, None)
    assert torch.allclose(top.prior.mean, torch.tensor([1.0, -2.0, 0.0, 3.0]), atol=0.15)
    assert torch.allclose(top.prior.std, torch.tensor([0.5, 1.0, 2.0, 0.1]), rtol=0.15)
    # the target is the best linear denoiser of this Gaussian (priors.linear_dae_optimum)
    h = torch.randn(5, 4)
    sigma = float(top.sigma)
    weight, bias = linear_dae_optimum(top.prior.mean, torch.diag(top.prior.std ** 2), sigma)
    assert torch.allclose(top.target(h), h @ weight.T + bias)
    # which, for a small σ, is a step of σ² along the score
    top.sigma.fill_(1e-3)
    log_p = torch.distributions.Normal(top.prior.mean, top.prior.std).log_prob
    score = torch.func.vmap(torch.func.grad(lambda v: log_p(v).sum()))(h)
    assert torch.allclose(top.target(h), h + 1e-6 * score, rtol=1e-5, atol=1e-9)


def test_parzen_top_target_is_a_step_along_the_autograd_score():
    torch.manual_seed(0)
    top = ParzenTop(3, capacity=50)
    for batch in torch.randn(80, 3).split(20):  # wraps around the ring
        top.loss(batch, None)
    assert int(top.stored) == 80 and len(top.centres()) == 50
    h = torch.randn(4, 3, requires_grad=True)
    sigma = float(top.sigma)
    (score,) = torch.autograd.grad(parzen_log_density(h, top.centres(), sigma).sum(), h)
    assert torch.allclose(top.target(h.detach()), h.detach() + sigma ** 2 * score)
    sample = top.sample(7, generator=torch.Generator().manual_seed(0))[0]
    assert sample.shape == (7, 3)


def test_learned_noise_top_loss_is_eq_22():
    torch.manual_seed(0)
    top = LearnedNoiseTop(6, code_width=3)
    h = torch.randn(9, 6)
    torch.manual_seed(5)
    loss = top.loss(h, None)
    torch.manual_seed(5)
    mean = top.encoder(h)
    sigma = top.noise.sigma
    code = mean + sigma * torch.randn(mean.shape, dtype=torch.float32).to(mean)
    reconstruction = top.decoder(code)
    likelihood = torch.distributions.Normal(reconstruction, (0.5 * top.log_variance).exp())
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, sigma),
                                           torch.distributions.Normal(0.0, 1.0))
    expected = -likelihood.log_prob(h).sum(1).mean() + kl.sum(1).mean()
    assert torch.allclose(loss, expected)
    assert set(top.diagnostics()) >= {"top_dimensions", "top_sigma_min"}


def test_sampling_is_seeded_and_follows_the_dtype():
    for top in (LinearTop(4, sigma=0.1), FactorialTop(4), LearnedNoiseTop(4, 2)):
        top = top.float()
        first = top.sample(5, generator=torch.Generator().manual_seed(3))[-1]
        again = top.sample(5, generator=torch.Generator().manual_seed(3))[-1]
        assert first.shape == (5, 4) and first.dtype == torch.float32
        assert torch.equal(first, again)
    dae = DenoisingTop([4], [False], width=3).float()
    chain = dae.sample(5, start=torch.randn(5, 4, dtype=torch.float32), steps=3,
                       generator=torch.Generator().manual_seed(0))
    assert len(chain) == 3 and chain[-1].dtype == torch.float32
    with pytest.raises(ValueError, match="start codes"):
        dae.sample(5)


@pytest.mark.parametrize("kind", ["linear", "factorial", "parzen", "learned-noise"])
def test_analytic_tops_model_one_continuous_modality(kind):
    with pytest.raises(ValueError, match="top_prior=dae"):
        make_top(kind, [4, 4], [False, False], 8)


def test_bad_top_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown top_prior"):
        make_top("gan", [4], [False], 8)
    with pytest.raises(ValueError, match="single continuous modality"):
        DenoisingTop([4, 3], [False, True], 8, criterion="nearest-neighbour")
    with pytest.raises(ValueError, match="walk_back"):
        DenoisingTop([4], [False], 8, walk_back=0)


def test_the_running_sigma_starts_at_the_first_batch_and_then_averages():
    torch.manual_seed(0)
    top = DenoisingTop([6], [False], width=5)
    known = torch.ones(20, 1, dtype=torch.bool)
    first, second = torch.randn(20, 6), 3 * torch.randn(20, 6)
    top.loss(first, known)
    sigma_first = nearest_neighbour_sigma(top.encode(first).detach())
    assert torch.allclose(top.sigma, sigma_first)
    top.loss(second, known)
    sigma_second = nearest_neighbour_sigma(top.encode(second).detach())
    assert torch.allclose(top.sigma, 0.95 * sigma_first + 0.05 * sigma_second)
    top.eval()
    top.loss(second, known)  # evaluation leaves it alone
    assert torch.allclose(top.sigma, 0.95 * sigma_first + 0.05 * sigma_second)


def test_training_hides_one_modality_in_a_fraction_of_the_rows():
    torch.manual_seed(0)
    top = DenoisingTop([4, 3, 2], [False, False, False], width=5, hide=0.6)
    hidden = top._modalities_to_hide(torch.Size([6000, 3]))
    assert hidden.sum(1).max() == 1  # never more than one per row
    assert hidden.any(1).float().mean().item() == pytest.approx(0.6, abs=0.03)
    assert torch.allclose(hidden.double().mean(0), torch.full((3,), 0.2), atol=0.03)
