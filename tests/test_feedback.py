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


def _drl_chain(path: str, reg: float = 0.4):
    """A float64 tanh chain 5 → 4 → 4 → 3 (→ 2 classes) with linear g_l, its
    drl rule and its record on a batch."""
    from targetprop.registry import build_network, make_rule

    torch.manual_seed(0)
    rule = make_rule("drl", drl_path=path, feedback_reg=reg, shared_noise=False)
    net = build_network("mlp:4-4-3", 5, 2, rule, activation="tanh").double()
    record = rule.record(net, torch.randn(7, 5, dtype=torch.float64))
    return rule, net, record


def test_whole_path_drl_equals_its_written_out_equations():
    """drl_path=whole for g_2 (into h_1) of a three-layer chain, ε and η
    given: u_2 = f_2(h_1 + σε), u_3 = f_3(u_2), r_2 = h_2 + V_3(u_3 − h_3);
    L = 1/(Bσ²) (‖V_2(r_2 − h_2) − σε‖² + λ‖V_2 V_3 ση‖²) with g_l = V_l u + c_l."""
    sigma, reg = 0.2, 0.4
    rule, net, record = _drl_chain("whole", reg)
    h0, h1, h2, h3 = record.hs
    (W2, b2), (W3, b3) = [(layer.f[0].weight, layer.f[0].bias) for layer in net.layers[1:]]
    V2, V3 = net.layers[1].g[0].weight, net.layers[2].g[0].weight
    eps, eta = torch.randn_like(h1), torch.randn_like(h3)
    draws = iter([eps, eta])
    paths = rule.feedback_paths(record)
    got = fb.difference_reconstruction_loss(net.layers[1], h1, h2, sigma, reg, noise=lambda like: next(draws),
                                            path=paths[1])
    u3 = torch.tanh(torch.tanh((h1 + sigma * eps) @ W2.T + b2) @ W3.T + b3)
    r2 = h2 + (u3 - h3) @ V3.T
    expected = (((r2 - h2) @ V2.T - sigma * eps).pow(2).sum()
                + reg * (sigma * eta @ V3.T @ V2.T).pow(2).sum()) / (7 * sigma ** 2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    grads = torch.autograd.grad(got, list(net.parameters()), allow_unused=True)
    moved = {name for (name, _), grad in zip(net.named_parameters(), grads) if grad is not None and grad.abs().sum() > 0}
    assert moved == {"layers.1.g.0.weight"}  # g_2's matrix only (its bias cancels in every difference)


def test_whole_path_drl_of_the_top_layer_and_the_layer_form_are_the_layer_wise_drl():
    """Nothing lies above the top layer: there the whole path is the layer
    form; and drl_path=layer gives the layer-wise loss of every layer."""
    for path in ("whole", "layer"):
        rule, net, record = _drl_chain(path)
        paths = rule.feedback_paths(record)
        assert (paths is None) == (path == "layer")
        hs = record.hs
        for l in ([2] if path == "whole" else [1, 2]):
            values = []
            for given in ([paths[l]] if paths else [None]) + [None]:
                torch.manual_seed(3)
                kwargs = {} if given is None else {"path": given}
                values.append(fb.difference_reconstruction_loss(net.layers[l], hs[l], hs[l + 1], 0.2, 0.4, **kwargs))
            torch.testing.assert_close(values[0], values[1], rtol=0, atol=0)
        torch.manual_seed(4)
        total = rule.feedback_loss(net, record)
        torch.manual_seed(4)
        draws = [fb.difference_reconstruction_loss(net.layers[l], hs[l], hs[l + 1], 0.1, 0.4,
                                                   **({} if paths is None else {"path": paths[l]})) for l in (1, 2)]
        torch.testing.assert_close(total, draws[0] + draws[1], rtol=1e-12, atol=0)


def test_whole_path_drl_makes_the_feedback_path_the_damped_pseudo_inverse_of_the_forward_path():
    """Linear chain h_1 → h_2 → h_3 (A = W_3 W_2), the path above fixed
    (G = V_3): the expected gradient of g_2's loss is
    2(V_2 G A − I)(G A)ᵀ + 2λ V_2 G Gᵀ, zero where V_2 G = Aᵀ(AAᵀ + λI)⁻¹."""
    from targetprop.registry import build_network, make_rule

    reg, sigma, n = 0.3, 0.05, 40000
    torch.manual_seed(2)
    rule = make_rule("drl", drl_path="whole", feedback_reg=reg, shared_noise=False)
    net = build_network("mlp:4x3", 4, 2, rule, activation="linear").double()
    record = rule.record(net, torch.randn(n, 4, dtype=torch.float64))
    hs = record.hs
    loss = fb.difference_reconstruction_loss(net.layers[1], hs[1], hs[2], sigma, reg, path=rule.feedback_paths(record)[1])
    (grad,) = torch.autograd.grad(loss, net.layers[1].g[0].weight)
    A = net.layers[2].f[0].weight @ net.layers[1].f[0].weight
    G, V2 = net.layers[2].g[0].weight, net.layers[1].g[0].weight
    eye = torch.eye(4, dtype=torch.float64)
    expected = (2 * (V2 @ G @ A - eye) @ (G @ A).T + 2 * reg * V2 @ G @ G.T).detach()
    torch.testing.assert_close(grad, expected, atol=0.05 * expected.abs().max().item(), rtol=0)
    path_star = A.T @ torch.linalg.inv(A @ A.T + reg * eye)  # the minimiser, as V_2 G
    V2_star = path_star @ torch.linalg.inv(G)
    residual = (V2_star @ G @ A - eye) @ (G @ A).T + reg * V2_star @ G @ G.T
    assert residual.abs().max() < 1e-10
