"""ddtp (direct linear feedback from the output) and fwdtp (fixed random
feedback) against their written-out equations in float64."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from targetprop import Learner, build_network, make_rule
from targetprop.core.direct import direct_difference_reconstruction_loss
from targetprop.running.optim import make_optimizer


def _problem(rule_name: str, arch: str = "mlp:4-4-3", activation: str = "tanh", **settings):
    torch.manual_seed(0)
    rule = make_rule(rule_name, **settings)
    net = build_network(arch, 5, 3, rule, activation=activation).double()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    return rule, net, x, y


def _affine(module):
    linear = module if isinstance(module, torch.nn.Linear) else module[0]
    return linear.weight, linear.bias


def test_ddtp_targets_are_h_plus_q_of_the_output_step():
    """ĥ_l = h_l + Q_l(τ − a), τ − a = −η ∂ℓ/∂a = −η (softmax(a) − Y) per example."""
    rule, net, x, y = _problem("ddtp", target_step=0.3)
    record = rule.record(net, x)
    result = rule.forward_loss(net, record, y)
    step = -0.3 * (torch.softmax(record.logits.detach(), 1) - F.one_hot(y, 3))
    for target, h, q in zip(result.targets, record.hs[1:], net.direct):
        torch.testing.assert_close(target, h + step @ q.weight.T, rtol=1e-12, atol=0)
    assert all(layer.g is None for layer in net.layers) and len(net.feedback_parameters()) == 3


def test_ddtp_direct_loss_equals_its_written_out_equation_and_trains_q_only():
    """L_1 = 1/(Bσ²) (‖Q_1(F(h_1 + σε) − F(h_1)) − σε‖² + λ‖Q_1 ση‖²), F(h) =
    W_o tanh(W_3 tanh(W_2 h + b_2) + b_3) + b_o: h_1 up every layer above."""
    rule, net, x, y = _problem("ddtp")
    record = rule.record(net, x)
    h1 = record.hs[1]
    (W2, b2), (W3, b3) = (_affine(layer.f) for layer in net.layers[1:])
    Wo, bo = net.output.weight, net.output.bias
    eps, eta = torch.randn_like(h1), torch.randn(6, 3, dtype=torch.float64)
    draws = iter([eps, eta])
    sigma, reg = 0.2, 0.5
    got = direct_difference_reconstruction_loss(net.direct[0], h1, lambda h: net.above(1, h), sigma, reg,
                                                noise=lambda like: next(draws))

    def up(h):
        return torch.tanh(torch.tanh(h @ W2.T + b2) @ W3.T + b3) @ Wo.T + bo

    Q = net.direct[0].weight
    expected = (((up(h1 + sigma * eps) - up(h1)) @ Q.T - sigma * eps).pow(2).sum()
                + reg * (sigma * eta @ Q.T).pow(2).sum()) / (6 * sigma ** 2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    grads = torch.autograd.grad(got, list(net.parameters()), allow_unused=True)
    moved = {n for (n, _), g in zip(net.named_parameters(), grads) if g is not None and g.abs().sum() > 0}
    assert moved == {"direct.0.weight"}


def test_ddtp_direct_loss_makes_q_the_damped_pseudo_inverse_of_the_path_above():
    """A linear net, J = ∂a/∂h_1 = W_o W_3 W_2: the expected gradient of the
    loss is 2(Q J − I)Jᵀ + 2λQ, zero at Q = Jᵀ(JJᵀ + λI)⁻¹."""
    rule, net, _, _ = _problem("ddtp", activation="linear")
    torch.manual_seed(1)
    h1 = torch.randn(40000, 4, dtype=torch.float64)
    reg = 0.3
    rule.record(net, torch.randn(8, 5, dtype=torch.float64))
    loss = direct_difference_reconstruction_loss(net.direct[0], h1, lambda h: net.above(1, h), 0.05, reg)
    (grad,) = torch.autograd.grad(loss, net.direct[0].weight)
    J = (net.output.weight @ _affine(net.layers[2].f)[0] @ _affine(net.layers[1].f)[0]).detach()
    Q = net.direct[0].weight.detach()
    expected = 2 * (Q @ J - torch.eye(4, dtype=J.dtype)) @ J.T + 2 * reg * Q
    torch.testing.assert_close(grad, expected, atol=0.05 * expected.abs().max().item(), rtol=0)
    Q_star = J.T @ torch.linalg.inv(J @ J.T + reg * torch.eye(3, dtype=J.dtype))
    assert ((Q_star @ J - torch.eye(4, dtype=J.dtype)) @ J.T + reg * Q_star).abs().max() < 1e-10


@pytest.mark.parametrize("feedback_map", ["linear", "activation"])
def test_fwdtp_targets_come_down_fixed_random_maps_from_the_output(feedback_map):
    """ĥ_L = h_L + g_out(a − η ∂ℓ/∂a) − g_out(a), ĥ_{l-1} = h_{l-1} + g_l(ĥ_l) − g_l(h_l),
    g(u) = B u or tanh(B u), every B fixed."""
    rule, net, x, y = _problem("fwdtp", target_step=0.3, feedback_map=feedback_map)
    act = torch.tanh if feedback_map == "activation" else (lambda t: t)
    record = rule.record(net, x)
    a = record.logits.detach()
    moved = a - 0.3 * (torch.softmax(a, 1) - F.one_hot(y, 3))
    B_out = net.output_feedback[0].weight
    hs = record.hs
    expected = [hs[3] + act(moved @ B_out.T) - act(a @ B_out.T)]
    for l in (3, 2):
        B = _affine(net.layers[l - 1].g)[0]
        expected.insert(0, hs[l - 1] + act(expected[0] @ B.T) - act(hs[l] @ B.T))
    targets = rule.forward_loss(net, record, y).targets
    for ours, written in zip(targets, expected):
        torch.testing.assert_close(ours, written, rtol=1e-12, atol=0)


def test_fwdtp_feedback_is_fixed_random_and_kept_in_the_state_dict():
    rule, net, x, y = _problem("fwdtp", feedback_scale=0.5)
    assert net.feedback_parameters() == []
    fixed = {name: tensor.clone() for name, tensor in net.state_dict().items() if ".g." in name or "output_feedback" in name}
    assert fixed and all(name.endswith("weight") or tensor.abs().max() == 0 for name, tensor in fixed.items())
    for name, tensor in fixed.items():  # U(±s·√(3/fan_in)), fan_in the width it reads
        if tensor.dim() > 1:
            assert tensor.abs().max() <= 0.5 * (3 / tensor.shape[1]) ** 0.5
    learner = Learner(net, rule, make_optimizer("adam", net.forward_parameters(), 1e-2), None)
    for _ in range(3):
        learner.train_step(x, y)
    state = net.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in fixed.items())
    other = build_network("mlp:4-4-3", 5, 3, make_rule("fwdtp")).double()
    other.load_state_dict(state)
    assert all(torch.equal(other.state_dict()[name], tensor) for name, tensor in fixed.items())
