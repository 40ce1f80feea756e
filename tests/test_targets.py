"""Target rules against closed forms and autograd references (float64)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from targetprop import InverseAffine, build_network, make_rule
from targetprop.core.targets import (difference_propagate, gated, linear_difference_propagate,
                                     linear_difference_through_time, propagate_targets,
                                     tp_propagate)


pytestmark = pytest.mark.usefixtures("float64")  # every test here runs in float64


def invertible_net(width=6, depth=3, activation="tanh", seed=0):
    """A square tanh chain whose feedback maps are the exact inverses f_l^{-1}."""
    torch.manual_seed(seed)
    net = build_network(f"mlp:{width}x{depth}", width, 4, activation=activation).double()
    with torch.no_grad():
        for layer in net.layers:  # well-conditioned weights keep the inverse tame
            layer.f[0].weight.copy_(torch.linalg.qr(torch.randn(width, width))[0] * 0.9)
    for layer in net.layers[1:]:
        layer.g = InverseAffine(layer)
    return net


def test_inverse_affine_is_exact():
    net = invertible_net()
    layer = net.layers[1]
    h = torch.tanh(torch.randn(5, 6))
    torch.testing.assert_close(layer.feedback(layer(h)), h, atol=1e-10, rtol=0)


def test_difference_target_is_identity_at_zero_step():
    """ĥ_l = h_l must give ĥ_{l-1} = h_{l-1} even for a poor inverse."""
    g = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    h_below, h = torch.randn(7, 4), torch.randn(7, 3)
    torch.testing.assert_close(difference_propagate(g, h_below, h, h), h_below)
    # vanilla TP has no such guarantee: it returns g(h), not h_{l-1}
    assert not torch.allclose(tp_propagate(g, h_below, h, h), h_below)


def test_difference_equals_closed_form():
    g = nn.Linear(3, 4)
    h_below, h, h_hat = torch.randn(7, 4), torch.randn(7, 3), torch.randn(7, 3)
    expected = h_below + (h_hat - h) @ g.weight.T  # affine g: the bias cancels
    torch.testing.assert_close(difference_propagate(g, h_below, h, h_hat), expected)


def chain_jacobian(net, h, lower, upper):
    """∂h_upper/∂h_lower for one example, by autograd."""
    def forward(v):
        for layer in net.layers[lower:upper]:
            v = layer(v)
        return v
    return torch.autograd.functional.jacobian(forward, h)


def cholesky_net():
    """An ``invertible:`` chain: square tanh layers W = L Lᵀ with exact inverses."""
    torch.manual_seed(0)
    return build_network("invertible:6x4", 6, 3).double()


def svd_net():
    """W = U D Vᵀ layers at their orthogonal start, where V D⁻¹ Uᵀ is exact."""
    torch.manual_seed(0)
    return build_network("invertible-svd:6x4", 6, 3).double()


@pytest.mark.parametrize("make_net", [lambda: invertible_net(activation="tanh"),
                                      lambda: invertible_net(activation="leaky-relu"), cholesky_net, svd_net],
                         ids=["tanh", "leaky-relu", "cholesky", "svd"])
def test_dtp_with_exact_inverses_gives_gauss_newton_target(make_net):
    """With g_l = f_l^{-1} and a small top step, ĥ_l − h_l = −η J⁻¹ ∂ℓ/∂h_L,
    J = ∂h_L/∂h_l: the Gauss-Newton target (Meulemans et al. 2020, Thm 1)."""
    net = make_net()
    rule = make_rule("dtp", target_step=1e-6, inverse_damping=0.0)
    x, y = torch.randn(1, 6), torch.tensor([2])
    record = rule.record(net, x)
    targets, _ = rule.targets(net, record, y)
    top = record.hs[-1].clone().requires_grad_()
    (grad_top,) = torch.autograd.grad(F.cross_entropy(net.output(top), y, reduction="sum"), top)
    L = len(net.layers)
    for l in range(1, L + 1):
        J = chain_jacobian(net, record.hs[l][0], l, L)
        gauss_newton = -1e-6 * torch.linalg.solve(J, grad_top[0])
        step = targets[l - 1][0] - record.hs[l][0]
        torch.testing.assert_close(step, gauss_newton, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_exact_targets_lower_the_output_loss(damping):
    """Each propagated target, pushed forward through the layers above, lowers
    the output loss: the targets carry credit in the right direction, damped
    or not."""
    net = invertible_net(depth=4)
    rule = make_rule("dtp", target_step=0.05, inverse_damping=damping)
    x, y = torch.randn(16, 6), torch.randint(0, 4, (16,))
    record = rule.record(net, x)
    targets, loss = rule.targets(net, record, y)
    for l, target in enumerate(targets, start=1):
        h = target
        for layer in net.layers[l:]:
            h = layer(h)
        assert F.cross_entropy(net.output(h), y) < loss


@pytest.mark.parametrize("damping", [1e-12, 0.3])
def test_damped_inverse_difference_matches_its_closed_form(damping):
    """W⁻¹ D (D² + λI)⁻¹ v with D the activation's Jacobian from autograd and
    W⁻¹ from torch.linalg.solve (float64); as λ → 0 it is the Jacobian
    inverse J_f⁻¹ v, J_f from autograd: the one-layer Gauss–Newton step."""
    net = cholesky_net()
    layer = net.layers[1]
    h_below = 0.5 * torch.randn(3, 6, dtype=torch.float64)
    h = layer(h_below)
    v = 1e-3 * torch.randn(3, 6, dtype=torch.float64)
    step = layer.g.damped_difference(h, h + v, damping)
    linear, act = layer.f[0], layer.f[1]
    for n in range(3):
        pre = linear(h_below[n]).detach()
        D = torch.autograd.functional.jacobian(act, pre)
        eye = torch.eye(6, dtype=torch.float64)
        reference = torch.linalg.solve(linear.weight, torch.linalg.solve(D @ D + damping * eye, D @ v[n]))
        torch.testing.assert_close(step[n], reference.detach(), rtol=1e-8, atol=1e-14)
        if damping < 1e-6:
            J = torch.autograd.functional.jacobian(layer.f, h_below[n])
            torch.testing.assert_close(step[n], torch.linalg.solve(J, v[n]), rtol=1e-6, atol=1e-14)


def test_linear_chain_with_transpose_feedback_reproduces_backprop():
    """With linear layers and g_l(h) = W_lᵀ h, difference targets are exactly
    the back-propagated errors: every hidden-layer update equals η times the
    back-prop gradient of the mean cross-entropy (Ernoult et al. 2022, §3)."""
    torch.manual_seed(1)
    net = build_network("mlp:5-4-6", 3, 3, activation="linear")
    with torch.no_grad():
        for layer in net.layers[1:]:
            layer.g[0].weight.copy_(layer.f[0].weight.T)
    eta = 0.3
    rule = make_rule("ldrl", target_step=eta)
    x, y = torch.randn(9, 3), torch.randint(0, 3, (9,))
    weights = [layer.f[0].weight for layer in net.layers]
    bp = torch.autograd.grad(F.cross_entropy(net(x), y), weights)
    rule_grads = torch.autograd.grad(rule.forward_loss(net, rule.record(net, x), y).loss, weights)
    for got, want in zip(rule_grads, bp):
        torch.testing.assert_close(got, eta * want)


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky-relu"])
def test_gated_differences_through_transposed_maps_reproduce_backprop(activation):
    """Nonlinear layers, g_l(h) = W_lᵀ h and ``target_gating=all`` (L-DRL's
    default for ReLU-like layers): ĥ_{l-1} − h_{l-1} = W_lᵀ (act′_l ⊙ (ĥ_l − h_l)) is back-prop's
    chain rule, so every update equals η times the autograd gradient of the
    mean cross-entropy (float64); without the gating those of a net with
    (non-linear) act′ do not."""
    torch.manual_seed(2)
    net = build_network("mlp:7-6-5", 4, 3, make_rule("ldrl"), activation=activation).double()  # linear g_l
    with torch.no_grad():
        for layer in net.layers[1:]:
            layer.g[0].weight.copy_(layer.f[0].weight.T)
    eta = 0.3
    x, y = torch.randn(11, 4, dtype=torch.float64), torch.randint(0, 3, (11,))
    weights = [layer.f[0].weight for layer in net.layers]
    bp = torch.autograd.grad(F.cross_entropy(net(x), y), weights)
    for gating in ("all", "none"):
        rule = make_rule("ldrl", target_step=eta, target_gating=gating)
        grads = torch.autograd.grad(rule.forward_loss(net, rule.record(net, x), y).loss, weights)
        close = all(torch.allclose(got, eta * want, rtol=1e-10, atol=1e-12) for got, want in zip(grads, bp))
        assert close == (gating == "all")


def test_propagate_targets_order_and_length():
    net = invertible_net(depth=4)
    record = make_rule("tp").record(net, torch.randn(3, 6))
    feedbacks = [None] + [layer.feedback if layer.g is not None else None for layer in net.layers]
    targets = propagate_targets(feedbacks, record.hs, record.hs[-1], tp_propagate)
    assert len(targets) == 4
    # exact inverses and ĥ_L = h_L: vanilla TP reproduces every h_l
    for target, h in zip(targets, record.hs[1:]):
        torch.testing.assert_close(target, h, atol=1e-9, rtol=0)


def test_linear_difference_propagation_is_the_difference_through_an_affine_map():
    torch.manual_seed(0)
    g = torch.nn.Linear(5, 4).double()
    h_below, h, h_hat = (torch.randn(3, n, dtype=torch.float64) for n in (4, 5, 5))
    expected = difference_propagate(g, h_below, h, h_hat)
    got = linear_difference_propagate(lambda d: d @ g.weight.T, h_below, h, h_hat)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("every_state", [False, True])
@pytest.mark.parametrize("gate", [True, False])
def test_targets_through_time_are_the_chains_difference_targets(gate, every_state):
    """One g(s) = V s + c for every step: the stacked recursion
    Δ_{t−1} = V (D_t ⊙ Δ_t) gives the targets that the chain's loop of
    ``difference_propagate`` through g (``gated`` by tanh′) gives, step by
    step; with a top target for every state, each step's own step added
    on the way down."""
    torch.manual_seed(1)
    steps, batch, width = 6, 3, 4
    g = torch.nn.Linear(width, width).double()
    states = torch.randn(steps, batch, width, dtype=torch.float64).tanh()
    top = states[-1] + 0.1 * torch.randn(batch, width, dtype=torch.float64)
    own = None
    if every_state:
        top = states + 0.1 * torch.randn(steps, batch, width, dtype=torch.float64)
        own = [None, *(top - states)]
    rule = gated(difference_propagate, lambda s: 1 - s * s) if gate else difference_propagate
    expected = propagate_targets([None, None, *[g] * (steps - 1)], [None, *states],
                                 top[-1] if every_state else top, rule, own_steps=own)
    got = linear_difference_through_time(g.weight, states, top, (1 - states * states) if gate else None)
    torch.testing.assert_close(got, torch.stack(expected))


def test_a_layer_gives_gs_linear_part_only_where_g_is_affine():
    """feedback_linear(ĥ − h) = g(ĥ) − g(h) for linear feedback maps; none for
    act(V h + c) maps or maps with a hidden layer (no one linear part)."""
    torch.manual_seed(0)
    net = build_network("mlp:6x3", 5, 3, make_rule("dtp")).double()
    h, h_hat = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    for layer in net.layers[1:]:
        torch.testing.assert_close(layer.feedback_linear(h_hat - h), layer.feedback(h_hat) - layer.feedback(h))
    for rule, hidden in (make_rule("dtp", feedback_map="activation"), 0), (make_rule("dtp"), 4):
        other = build_network("mlp:6x3", 5, 3, rule, layer_hidden=hidden)
        assert all(layer.feedback_linear is None for layer in other.layers[1:])
