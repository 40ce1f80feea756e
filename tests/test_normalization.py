"""Batch norms inside target-propagation layers: only the real batch's
forward pass moves the running statistics (once per step), every other
evaluation of f_l is the map f_l was on that batch, a feedback map never
normalises targets and states together; DTP on a batch-norm net equals its
equations written out in float64."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from targetprop import Layer, Learner, make_rule, wrap
from targetprop.core.networks import Chain
from targetprop.core.normalization import running_statistics_frozen
from targetprop.core.targets import difference_propagate

from user_models import norm_conv


def buffers(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in net.named_buffers()}


def learner_for(net, rule_name: str) -> Learner:
    rule = make_rule(rule_name)
    feedback = torch.optim.Adam(net.feedback_parameters(), 1e-2) if rule.uses_feedback else None
    return Learner(net, rule, torch.optim.Adam(net.forward_parameters(), 1e-2), feedback)


def problem(seed: int = 0):
    torch.manual_seed(seed)
    net = wrap(norm_conv((1, 8, 8), 3), (1, 8, 8), 3)
    return net, torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))


@pytest.mark.parametrize("rule_name", ["dtp", "drl", "ldrl"])
def test_a_feedback_only_step_leaves_every_running_statistic_bit_identical(rule_name):
    net, x, _ = problem()
    learner = learner_for(net, rule_name)
    before, feedback = buffers(net), [p.clone() for p in net.feedback_parameters()]
    learner.feedback_step(x)
    assert all(torch.equal(before[k], b) for k, b in net.named_buffers())
    assert any(not torch.equal(a, b) for a, b in zip(feedback, net.feedback_parameters()))  # it did train g


@pytest.mark.parametrize("rule_name", ["bp", "dtp", "drl", "ldrl"])
def test_a_training_step_moves_them_once_as_the_forward_pass_of_the_batch_does(rule_name):
    net, x, y = problem()
    reference = copy.deepcopy(net).train()
    with torch.no_grad():
        reference(x)  # one forward pass of the batch in training mode
    learner_for(net, rule_name).train_step(x, y)
    for name, b in net.named_buffers():
        torch.testing.assert_close(b, dict(reference.named_buffers())[name], rtol=1e-6, atol=1e-7)
    net.eval()
    torch.testing.assert_close(net(x), torch.nn.Sequential(*[l for l in net.layers], net.output)(x))


def test_running_statistics_frozen_uses_each_batch_alone():
    norm = nn.BatchNorm1d(3)
    layer = Layer(nn.Sequential(nn.Linear(2, 3), norm), activation=None)
    h = torch.randn(8, 2)
    with running_statistics_frozen():
        out = layer(h)
    assert torch.equal(norm.running_mean, torch.zeros(3)) and int(norm.num_batches_tracked) == 0
    torch.testing.assert_close(out, F.batch_norm(layer.f[0](h), None, None, norm.weight, norm.bias, True))


def test_fixed_forward_is_the_map_of_the_recorded_batch(float64):
    """After the record, f_l(h + d) normalises by the recorded batch's μ_B, σ²_B:
    γ (W(h + d) + b − μ_B)/√(σ²_B + ε) + β, then the activation."""
    torch.manual_seed(0)
    linear, norm = nn.Linear(4, 5), nn.BatchNorm1d(5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    layer = Layer(nn.Sequential(linear, norm, nn.Tanh()), activation=None)
    h, d = torch.randn(12, 4), 0.3 * torch.randn(12, 4)
    recorded = layer(h)
    a = linear(h)
    mean, variance = a.mean(0), a.var(0, unbiased=False)
    written = torch.tanh(norm.weight * (linear(h + d) - mean) / torch.sqrt(variance + norm.eps) + norm.bias)
    torch.testing.assert_close(layer.fixed_forward(h + d), written)
    torch.testing.assert_close(layer.fixed_forward(h), recorded)
    assert int(norm.num_batches_tracked) == 1  # the recorded pass alone


def test_a_feedback_map_with_a_batch_norm_normalises_targets_and_states_apart():
    """ĥ_1 = h_1 + g(ĥ_2) − g(h_2) with g's norm on each batch's own
    statistics; stacked into one call, the shifted targets would move the
    states' normalisation."""
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4))
    top = Layer(nn.Sequential(nn.Linear(4, 5), nn.ReLU()), g, activation=None)
    net = Chain([Layer(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), activation=nn.ReLU()), top], nn.Linear(5, 2))
    assert not top.feedback_stacks
    rule = make_rule("dtp", target_step=5.0)  # a large step: targets far from the states
    record = rule.record(net, torch.randn(10, 3))
    targets, _ = rule.targets(net, record, torch.randint(0, 2, (10,)))
    h1, h2, h2_hat = record.hs[1], record.hs[2], targets[1]

    def normalised(h):
        return F.batch_norm(g[0](h), None, None, g[1].weight, g[1].bias, True)

    assert torch.equal(g[1].running_mean, torch.zeros(4)) and int(g[1].num_batches_tracked) == 0
    with torch.no_grad():
        torch.testing.assert_close(targets[0], h1 + normalised(h2_hat) - normalised(h2))
        assert not torch.allclose(difference_propagate(g, h1, h2, h2_hat), targets[0], atol=1e-3)


def test_dtp_on_a_batch_norm_net_equals_the_written_out_equations(float64):
    """x → h_1 = relu(BN(W_1 x + b_1)) → h_2 = relu(BN(W_2 h_1 + b_2)) → R h_2 + c,
    g_2(h) = V h + d; one DTP step's gradients of every parameter (forward and
    feedback losses) against the equations evaluated by hand."""
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU()),
              nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU())]
    for block in blocks:
        with torch.no_grad():
            block[1].weight.uniform_(0.5, 1.5)
            block[1].bias.normal_(0, 0.3)
    readout, g = nn.Linear(4, 3), nn.Linear(4, 6)
    net = Chain([Layer(blocks[0], activation=blocks[0][2]), Layer(blocks[1], g, activation=blocks[1][2])], readout)
    rule = make_rule("dtp", target_step=0.2, feedback_noise=0.15)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    params = list(net.parameters())

    record = rule.record(net, x)
    result = rule.forward_loss(net, record, y)
    torch.manual_seed(7)
    loss = result.loss + rule.feedback_loss(net, record, result.targets)
    ours = torch.autograd.grad(loss, params)

    def bn(a, norm, stats=None):
        mean, var = (a.mean(0), a.var(0, unbiased=False)) if stats is None else stats
        return norm.weight * (a - mean) / torch.sqrt(var + norm.eps) + norm.bias

    (w1, b1), (w2, b2) = [(blk[0].weight, blk[0].bias) for blk in blocks]
    n = len(x)
    h1 = torch.relu(bn(x @ w1.T + b1, blocks[0][1]))
    a2_local = h1.detach() @ w2.T + b2
    h2 = torch.relu(bn(a2_local, blocks[1][1]))
    h1v, h2v = h1.detach(), h2.detach()
    p = torch.softmax(h2v @ readout.weight.T + readout.bias, 1)
    grad_h2 = (p - F.one_hot(y, 3).double()) @ readout.weight  # ∂ Σ_i CE_i / ∂h_2
    t2 = h2v - 0.2 * grad_h2
    t2_gated = h2v + (h2v > 0).double() * (t2 - h2v)
    t1 = h1v + (t2_gated - h2v) @ g.weight.T
    t1, t2 = t1.detach(), t2.detach()  # targets are constants
    forward = (F.cross_entropy(h2v @ readout.weight.T + readout.bias, y)
               + 0.5 * ((h1 - t1) ** 2).sum() / n + 0.5 * ((h2 - t2) ** 2).sum() / n)
    torch.manual_seed(7)
    eps = torch.randn(n, 6, dtype=torch.float32).double()
    noisy = h1v + 0.15 * eps
    a2 = h1v @ w2.T + b2
    stats = (a2.mean(0).detach(), a2.var(0, unbiased=False).detach())
    up = torch.relu(bn(noisy @ w2.T + b2, blocks[1][1], stats)).detach()
    feedback = 0.5 * ((up @ g.weight.T + g.bias - noisy) ** 2).sum() / n
    written = torch.autograd.grad(forward + feedback, params)
    for a, b in zip(ours, written):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(blocks[1][1].running_mean, 0.1 * a2.mean(0).detach())  # moved once


def test_compiling_a_net_with_batch_norms_is_refused_with_the_reason():
    net, _, _ = problem()
    rule = make_rule("dtp")
    with pytest.raises(ValueError, match="compile.*batch norms"):
        Learner(net, rule, torch.optim.Adam(net.forward_parameters()), torch.optim.Adam(net.feedback_parameters()),
                compile=True)


@pytest.mark.parametrize("rule_name", ["bp", "dtp", "ldrl"])
def test_a_bf16_step_on_a_net_with_batch_norms_keeps_their_statistics_in_float32(rule_name):
    net, x, y = problem()
    rule = make_rule(rule_name)
    feedback = torch.optim.Adam(net.feedback_parameters()) if rule.uses_feedback else None
    learner = Learner(net, rule, torch.optim.Adam(net.forward_parameters()), feedback, precision=torch.bfloat16)
    result = learner.train_step(x, y)
    assert torch.isfinite(result.output_loss)
    assert all(b.dtype in (torch.float32, torch.int64) for b in net.buffers())
