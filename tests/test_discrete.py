"""Discrete and stochastic transmission between layers (core/discrete.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import gradient_into_layer_inputs
from targetprop import Learner, build_network, make_rule
from targetprop.core.discrete import transmit


def test_transmit_values_and_the_straight_through_gradient():
    h = torch.tensor([-0.7, -0.0, 0.0, 0.3, 0.6], dtype=torch.float64, requires_grad=True)
    assert transmit(h, "sign").tolist() == [-1.0, 1.0, 1.0, 1.0, 1.0]
    assert transmit(h, "step").tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    (grad,) = torch.autograd.grad((transmit(h, "sign") * torch.arange(5.0, dtype=h.dtype)).sum(), h)
    assert grad.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # the identity backward
    with pytest.raises(ValueError, match="sign, step, bernoulli"):
        transmit(h, "round")


def test_bernoulli_transmission_samples_with_the_unit_probability():
    torch.manual_seed(0)
    p = torch.tensor([0.1, 0.5, 0.9]).expand(20000, 3)
    sample = transmit(p, "bernoulli")
    assert set(sample.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(sample.mean(0), torch.tensor([0.1, 0.5, 0.9]), atol=0.015, rtol=0)


@pytest.mark.parametrize("activation", ["sign", "step", "bernoulli"])
def test_layers_read_the_discrete_message_and_target_propagation_stays_local(activation):
    torch.manual_seed(0)
    net = build_network("mlp:16x3", 8, 3, activation=activation)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    h1 = net.layers[0](x)
    torch.manual_seed(1)
    h2 = net.layers[1](h1)
    torch.manual_seed(1)
    message = transmit(h1, activation)  # the activation names its transmission
    torch.testing.assert_close(h2, net.layers[1].f[1:](message))
    assert gradient_into_layer_inputs(net, make_rule("dtp"), x, y) == 0


def test_back_prop_crosses_the_discrete_maps_by_the_straight_through_estimator():
    torch.manual_seed(0)
    net = build_network("mlp:16x3", 8, 3, activation="sign")
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    (grad,) = torch.autograd.grad(F.cross_entropy(net(x), y), net.layers[0].f[0].weight)
    assert grad.abs().sum() > 0  # a true sign would pass no gradient to the first layer


@pytest.mark.parametrize("rule_name", ["dtp", "ldrl"])
def test_a_sign_network_learns_by_target_propagation(rule_name):
    torch.manual_seed(0)
    net = build_network("mlp:32x2", 8, 3, activation="sign")
    rule = make_rule(rule_name)
    learner = Learner(net, rule, torch.optim.Adam(net.forward_parameters(), 1e-2),
                      torch.optim.Adam(net.feedback_parameters(), 1e-2))
    x = torch.randn(256, 8)
    y = x[:, :3].argmax(1)
    for _ in range(150):
        learner.train_step(x, y)
    assert (net(x).argmax(1) == y).float().mean() > 0.85  # chance is 1/3


@pytest.mark.parametrize("rule_name", ["bengio2014", "generative"])
def test_auto_encoder_rules_refuse_discrete_units(rule_name):
    with pytest.raises(ValueError, match="need continuous units.*chain rules"):
        build_network("mlp:16x3", 8, 3, make_rule(rule_name), activation="sign")
