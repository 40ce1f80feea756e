"""The delta rule (core/delta.py) against autograd, in float64."""
from __future__ import annotations

import pytest
import torch

from targetprop import Learner, TPLayer, build_network, make_rule


@pytest.mark.parametrize("activation, transmit", [
    ("tanh", None), ("sigmoid", None), ("relu", None), ("leaky-relu", None), ("elu", None),
    ("linear", None), ("tanh", "sign"), ("sigmoid", "step"),
])
def test_delta_rule_equals_the_gradient_of_the_local_loss(float64, activation, transmit):
    from targetprop.core.delta import delta_rule_gradients

    torch.manual_seed(0)
    layer = TPLayer(7, 5, activation, transmit=transmit)
    h, target = torch.randn(16, 7), torch.randn(16, 5)
    linear = layer.f[-2]
    loss = 0.5 * (layer(h) - target).pow(2).sum() / len(h)
    want = torch.autograd.grad(loss, [linear.weight, linear.bias])
    got = delta_rule_gradients(layer, h, target)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation, matching_loss", [
    ("sigmoid", lambda a, t: torch.nn.functional.binary_cross_entropy_with_logits(a, t, reduction="sum")),
    ("tanh", lambda a, t: (torch.log(torch.cosh(a)) - t * a).sum()),
    ("linear", lambda a, t: 0.5 * (a - t).pow(2).sum()),
])
def test_the_moving_average_form_is_the_gradient_of_the_matching_loss(float64, activation, matching_loss):
    """(t − p) xᵀ without act′: the gradient of Σ ∫(act(a) − t) da in closed
    form (cross-entropy for sigmoid units, log cosh(a) − t a for tanh), with
    targets outside the unit's range projected into it."""
    from targetprop.core.delta import delta_rule_gradients

    torch.manual_seed(0)
    layer = TPLayer(7, 5, activation)
    h = torch.randn(16, 7)
    target = layer(h).detach() + 0.5 * torch.randn(16, 5)
    in_range = {"sigmoid": target.clamp(0, 1), "tanh": target.clamp(-1, 1), "linear": target}[activation]
    assert activation == "linear" or not torch.equal(in_range, target)  # some targets leave the range
    linear = layer.f[0]
    loss = matching_loss(linear(h), in_range) / len(h)
    want = torch.autograd.grad(loss, [linear.weight, linear.bias])
    got = delta_rule_gradients(layer, h, target, derivative=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_a_dtp_step_with_the_delta_rule_equals_the_autograd_step(float64):
    nets = {}
    for update in ("autograd", "delta"):
        torch.manual_seed(0)
        net = build_network("mlp:12x3", 8, 3)
        rule = make_rule("dtp", local_update=update)
        learner = Learner(net, rule, torch.optim.SGD(net.forward_parameters(), 0.1),
                          torch.optim.SGD(net.feedback_parameters(), 0.1))
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        for _ in range(3):
            learner.train_step(x, y)
        nets[update] = net
    for a, b in zip(nets["autograd"].parameters(), nets["delta"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("build, message", [
    (dict(layer_hidden=4), "one-layer forward maps"),
    (dict(dropout=0.2), "dropout=0"),
    (dict(activation="bernoulli"), "deterministic message"),
])
def test_the_delta_rule_says_what_it_cannot_do(build, message):
    torch.manual_seed(0)
    net = build_network("mlp:12x3", 8, 3, **build)
    rule = make_rule("dtp", local_update="delta")
    with pytest.raises(ValueError, match=message):
        rule.forward_loss(net, rule.record(net.train(), torch.randn(8, 8)), torch.randint(0, 3, (8,)))


def test_a_run_that_the_delta_rule_cannot_update_stops_before_any_work():
    from targetprop.running.config import Config, ConfigError
    from targetprop.running.setup import validate_config

    config = Config(data="digits").with_overrides(["local_update=delta", "layer_hidden=8"])
    with pytest.raises(ConfigError, match="one-layer forward maps"):
        validate_config(config)
