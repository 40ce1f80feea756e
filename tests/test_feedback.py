"""Feedback objectives against closed forms."""
from __future__ import annotations

import pytest
import torch

from targetprop import TPLayer
from targetprop.core import feedback as fb
from targetprop.core.feedback import FEEDBACK_OBJECTIVES


def linear_layer(n_in=4, n_out=3, seed=0):
    torch.manual_seed(seed)
    return TPLayer(n_in, n_out, activation="linear", feedback_activation="linear").double()


@pytest.mark.parametrize("name", sorted(FEEDBACK_OBJECTIVES))
def test_gradient_reaches_only_the_feedback_map(name):
    torch.manual_seed(0)
    layer = TPLayer(5, 4, "tanh", feedback_activation="tanh")
    h_below = torch.tanh(torch.randn(8, 5))
    loss = FEEDBACK_OBJECTIVES[name](layer, h_below, layer(h_below).detach(), 0.1, 0.1)
    loss.backward()
    assert all(p.grad is None for p in layer.f.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.g.parameters())


def test_noisy_reconstruction_closed_form():
    layer = linear_layer()
    h_below = torch.randn(6, 4, dtype=torch.float64)
    eps = torch.randn(6, 4, dtype=torch.float64)
    sigma = 0.3
    noisy = h_below + sigma * eps
    A, a = layer.f[0].weight, layer.f[0].bias
    V, c = layer.g[0].weight, layer.g[0].bias
    expected = 0.5 * ((noisy @ A.T + a) @ V.T + c - noisy).pow(2).sum() / 6
    got = fb.noisy_reconstruction_loss(layer, h_below, layer(h_below).detach(), sigma,
                                       noise=lambda like: eps)
    torch.testing.assert_close(got, expected)


def _mc_gradient(objective, layer, reg, n=40000, sigma=0.05):
    torch.manual_seed(1)
    h_below = torch.randn(n, layer.in_features, dtype=torch.float64)
    loss = objective(layer, h_below, layer(h_below).detach(), sigma, reg)
    (grad,) = torch.autograd.grad(loss, layer.g[0].weight)
    return grad


def test_drl_expected_gradient_matches_closed_form():
    """Linear f(h) = Ah, g(u) = Vu: E[DRL] = ‖VA − I‖²_F + λ‖V‖²_F, whose
    gradient is 2(VA − I)Aᵀ + 2λV; the minimiser is Aᵀ(AAᵀ + λI)⁻¹."""
    layer, reg = linear_layer(), 0.2
    A, V = layer.f[0].weight.detach(), layer.g[0].weight.detach()
    expected = 2 * (V @ A - torch.eye(4, dtype=A.dtype)) @ A.T + 2 * reg * V
    got = _mc_gradient(fb.difference_reconstruction_loss, layer, reg)
    torch.testing.assert_close(got, expected, atol=0.05 * expected.abs().max().item(), rtol=0)
    # and the closed-form minimiser zeroes that gradient
    V_star = A.T @ torch.linalg.inv(A @ A.T + reg * torch.eye(3, dtype=A.dtype))
    residual = (V_star @ A - torch.eye(4, dtype=A.dtype)) @ A.T + reg * V_star
    assert residual.abs().max() < 1e-10


def test_ldrl_expected_gradient_matches_closed_form():
    """Linear f, g: E[L-DRL] = −tr(VA) + ½‖V‖²_F, gradient V − Aᵀ, minimiser
    V = Aᵀ (the Jacobian matching condition)."""
    layer = linear_layer()
    A, V = layer.f[0].weight.detach(), layer.g[0].weight.detach()
    got = _mc_gradient(fb.local_difference_reconstruction_loss, layer, 0.0)
    expected = V - A.T
    torch.testing.assert_close(got, expected, atol=0.05 * expected.abs().max().item(), rtol=0)


def test_ldrl_training_converges_to_transpose():
    layer = linear_layer(seed=3)
    optimizer = torch.optim.SGD(layer.g.parameters(), lr=0.1)
    h_below = torch.randn(256, 4, dtype=torch.float64)
    for _ in range(400):
        optimizer.zero_grad()
        fb.local_difference_reconstruction_loss(layer, h_below, layer(h_below).detach(), 0.05).backward()
        optimizer.step()
    torch.testing.assert_close(layer.g[0].weight, layer.f[0].weight.T, atol=0.05, rtol=0)


@pytest.mark.parametrize("name", ["drl", "ldrl"])
def test_differences_through_gs_linear_part_are_those_of_g(name):
    """With an affine g, DRL and L-DRL read g(h + d) − g(h) as V d: the loss
    and V's gradient are those of g evaluated at both points (float64)."""
    layer = linear_layer(seed=2)
    generic = type("Generic", (), {"f": layer.f, "fixed_forward": layer.f, "feedback": layer.feedback,
                                   "feedback_linear": None})()
    h_below = torch.randn(6, 4, dtype=torch.float64)
    h = layer(h_below).detach()
    values = []
    for view in (layer, generic):
        torch.manual_seed(5)
        loss = FEEDBACK_OBJECTIVES[name](view, h_below, h, 0.3, 0.7)
        values.append((loss, *torch.autograd.grad(loss, layer.g[0].weight)))
    for ours, theirs in zip(*values):
        torch.testing.assert_close(ours, theirs)
