"""Back-prop and the difference-target-propagation family: references and
properties beyond the contract every rule passes (test_contract.py)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from targetprop import RULES, Learner, build_network, make_rule
from targetprop.core import targets as targets_lib
from targetprop.rules.dtp import TargetPropagation
from targetprop.core.diagnostics import angle_degrees, layer_diagnostics
from targetprop.running.optim import make_optimizer

FAMILY = [r for r in RULES if isinstance(make_rule(r), TargetPropagation)]  # the DTP family


def small_problem(seed=0, dtype=torch.float32, rule="dtp", hidden=0):
    torch.manual_seed(seed)
    net = build_network("mlp:12x3", 8, 3, make_rule(rule), layer_hidden=hidden).to(dtype)
    x = torch.randn(32, 8, dtype=dtype)
    y = torch.randint(0, 3, (32,))
    return net, x, y


def make_learner(net, rule_name, lr=1e-2):
    rule = make_rule(rule_name)
    feedback = make_optimizer("adam", net.feedback_parameters(), lr) if rule.uses_feedback else None
    return Learner(net, rule, make_optimizer("adam", net.forward_parameters(), lr), feedback)


def test_unknown_rule_lists_valid_names():
    with pytest.raises(ValueError, match="unknown rule 'nope'.*bp.*dtp.*ldrl"):
        make_rule("nope")


def test_bp_matches_an_independent_float64_reference():
    net, x, y = small_problem(dtype=torch.float64)
    rule = make_rule("bp")
    params = net.forward_parameters()
    got = torch.autograd.grad(rule.forward_loss(net, rule.record(net, x), y).loss, params)

    # the same network written out by hand with functional ops
    weights = [p.detach().clone().requires_grad_() for p in params]
    h = x
    for i in range(0, len(weights) - 2, 2):
        h = torch.tanh(h @ weights[i].T + weights[i + 1])
    logits = h @ weights[-2].T + weights[-1]
    log_probs = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    loss = -log_probs[torch.arange(len(y)), y].mean()
    want = torch.autograd.grad(loss, weights)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_bp_step_lowers_the_loss():
    net, x, y = small_problem()
    before = F.cross_entropy(net(x), y).item()
    learner = make_learner(net, "bp", lr=1e-2)
    learner.train_step(x, y)
    assert F.cross_entropy(net(x), y).item() < before


@pytest.mark.parametrize("hidden", [0, 5])
@pytest.mark.parametrize("rule_name", FAMILY)
def test_updates_are_layer_local(rule_name, hidden):
    """The gradient that layer l receives equals the gradient of its own term
    ½‖f_l(h_{l-1}) − ĥ_l‖² alone: no credit leaks between layers (an MLP
    encoder learns by back-prop inside its layer only)."""
    net, x, y = small_problem(hidden=hidden, rule=rule_name)
    rule = make_rule(rule_name)
    record = rule.record(net, x)
    result = rule.forward_loss(net, record, y)
    params = [list(layer.f.parameters()) for layer in net.layers]
    total = torch.autograd.grad(result.loss, sum(params, []), retain_graph=True)
    for l, (layer, target) in enumerate(zip(net.layers, result.targets)):
        own = 0.5 * (layer(record.hs[l]) - target).pow(2).sum() / len(x)
        alone = torch.autograd.grad(own, params[l])
        mine = total[sum(map(len, params[:l])):][:len(params[l])]
        for got, want in zip(mine, alone):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("rule_name", [r for r in FAMILY if make_rule(r).uses_feedback])
def test_feedback_step_moves_only_feedback_weights(rule_name):
    net, x, y = small_problem(rule=rule_name)
    learner = make_learner(net, rule_name)
    before = copy.deepcopy(net.state_dict())
    learner.feedback_step(x)
    after = net.state_dict()
    for key in before:  # every g's weight moves and nothing else; DRL's and L-DRL's objectives
        changed = not torch.equal(before[key], after[key])  # read differences of an affine g, where its bias cancels
        assert changed == (".g." in key) or (key.endswith("g.0.bias") and rule_name in ("drl", "ldrl")), key


def test_bp_angles_are_zero_and_dtp_angles_are_reported():
    net, x, y = small_problem()
    bp = layer_diagnostics(net, make_rule("bp"), x, y)
    assert all(bp[f"angle_{l}"] < 1e-3 for l in (1, 2, 3))
    dtp = layer_diagnostics(net, make_rule("dtp"), x, y)
    assert {"angle_1", "recon_2", "target_3"} <= set(dtp)
    assert 0 <= dtp["angle_3"] < 1e-3  # the top hidden layer gets η × the BP gradient
    assert dtp["angle_1"] > 1          # lower layers do not, with untrained inverses


def test_angle_degrees():
    a = torch.tensor([1.0, 0.0])
    assert angle_degrees(a, torch.tensor([0.0, 2.0])) == pytest.approx(90)
    assert angle_degrees(a, -a) == pytest.approx(180)
    assert angle_degrees(a, torch.zeros(2)) != angle_degrees(a, torch.zeros(2))  # nan


@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_feedback_iterations_per_step(iterations):
    net, x, y = small_problem()
    rule = make_rule("dtp")
    feedback = make_optimizer("adam", net.feedback_parameters(), 1e-3)
    forward = make_optimizer("adam", net.forward_parameters(), 1e-3)
    learner = Learner(net, rule, forward, feedback, feedback_iterations=iterations)
    result = learner.train_step(x, y)
    steps = [int(s["step"]) for s in feedback.state.values()]
    assert steps == ([iterations] * len(net.feedback_parameters()) if iterations else [])
    assert all(int(s["step"]) == 1 for s in forward.state.values())
    assert (result.feedback_loss is None) == (iterations == 0)


def test_targets_come_from_the_feedback_maps_before_their_update():
    """Lee et al. (2015), Alg. 1: targets first, then the feedback update, then
    the forward update toward those targets."""
    net, x, y = small_problem()
    rule = make_rule("dtp")
    reference = copy.deepcopy(net)
    expected = rule.forward_loss(reference, rule.record(reference, x), y).loss
    (want,) = torch.autograd.grad(expected, reference.layers[0].f[0].weight)
    # forward lr 0 keeps f (its gradient stays readable); a large feedback step
    # changes g, so targets taken after the feedback update would differ
    learner = Learner(net, rule, make_optimizer("sgd", net.forward_parameters(), 0.0),
                      make_optimizer("adam", net.feedback_parameters(), 0.5))
    learner.train_step(x, y)
    assert not torch.equal(net.layers[1].g[0].weight, reference.layers[1].g[0].weight)
    torch.testing.assert_close(net.layers[0].f[0].weight.grad, want)


def test_feedback_objectives_see_the_deterministic_forward_map_under_dropout():
    torch.manual_seed(0)
    net = build_network("mlp:16x3", 8, 3, dropout=0.5)
    seen = []
    rule = make_rule("ldrl")
    rule.feedback_objective = lambda layer, h_below, h, *args: seen.append((layer, h_below, h)) or h.sum()
    record = rule.record(net, torch.randn(32, 8))
    rule.feedback_loss(net, record)
    assert len(seen) == 2
    for layer, h_below, h in seen:
        torch.testing.assert_close(h, layer.f(h_below))


@pytest.mark.parametrize("rule_name", FAMILY)
def test_linear_feedback_maps_carry_differences_by_their_matrix(rule_name):
    """Default ``feedback_map=linear``: g_l(h) = V_l h + c_l, so a difference
    target steps by ĥ_{l-1} − h_{l-1} = V_l (ĥ_l − h_l) exactly (closed form),
    for ReLU layers too; ``feedback_map=activation`` ends every g_l with the
    layer's activation."""
    torch.manual_seed(0)
    net = build_network("mlp:12x3", 8, 3, make_rule(rule_name), activation="relu").double()
    for layer in net.layers[1:]:
        assert isinstance(layer.g[-1], torch.nn.Identity)
    record = make_rule(rule_name).record(net, torch.randn(16, 8, dtype=torch.float64))
    h_hat = record.hs[-1] + 0.1 * torch.randn_like(record.hs[-1])
    expected = (h_hat - record.hs[-1]) @ net.layers[-1].g[0].weight.T
    below = targets_lib.difference_propagate(net.layers[-1].feedback, record.hs[-2], record.hs[-1], h_hat)
    torch.testing.assert_close(below - record.hs[-2], expected, rtol=1e-10, atol=1e-12)
    shaped = build_network("mlp:12x3", 8, 3, make_rule(rule_name, feedback_map="activation"), activation="relu")
    assert all(isinstance(layer.g[-1], torch.nn.ReLU) for layer in shaped.layers[1:])
    assert shaped.layers[0].g is None  # a classifier never needs a target for x
