"""Properties of the bengio2014 pieces that the paper states (§3.1, §3.3, Fig. 3)."""
from __future__ import annotations

import pytest
import torch

from targetprop import InverseAffine, TPLayer, build_network, make_rule
from targetprop.core.targets import hybrid_target
from targetprop.rules.bengio2014 import Bengio2014
from targetprop.rules.bengio2014.conditional import ConditionalNetwork


def small(mode="strict", seed=0, hidden=0):
    torch.manual_seed(seed)
    rule = Bengio2014(credit_assignment=mode, top_hidden=hidden)
    net = build_network("mlp:12x3", 8, 4, rule, layer_hidden=hidden)
    return rule, net, torch.randn(16, 8), torch.randint(0, 4, (16,))


def test_alpha_end_points_give_the_joint_and_the_discriminant_target():
    joint, unsupervised, h = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5)
    step = joint - unsupervised                                                          # Eq. 18's s
    torch.testing.assert_close(hybrid_target(joint, step, h, 1.0), joint)                # Eq. 16
    torch.testing.assert_close(hybrid_target(joint, step, h, 0.0), joint - unsupervised + h)  # Eq. 18
    middle = hybrid_target(joint, step, h, 0.25)
    torch.testing.assert_close(middle - h, 0.25 * (joint - h) + 0.75 * (joint - unsupervised))


def test_gradient_discriminant_target_matches_the_closed_form():
    """discriminant="gradient", α = 0: ĥ_{L-1} = h + β ∂log P(y|h)/∂h with
    P(y|h) = softmax(V_y tanh(W_h h + b) + c_y) (Algorithm 4, m = 0), written
    out by hand in float64."""
    torch.manual_seed(0)
    rule = Bengio2014(discriminant="gradient", discriminant_step=0.7, alpha=0.0)
    net = build_network("mlp:12x3", 8, 4, rule).double()
    x, y = torch.randn(16, 8, dtype=torch.float64), torch.randint(0, 4, (16,))
    y[::4] = -1  # unlabelled rows keep the plain reconstruction target
    record = rule.record(net, x)
    top_target = rule.forward_loss(net, record, y).targets[-1]

    top, h = net.output, record.hs[-1]
    w_h = top.encoder[0].weight[:, :12]
    code = torch.tanh(h @ w_h.T + top.encoder[0].bias)          # y and m are zero
    probabilities = torch.softmax(code @ top.g_y.weight.T + top.g_y.bias, dim=1)
    error = torch.nn.functional.one_hot(y.clamp_min(0), 4) - probabilities
    ascent = ((error @ top.g_y.weight) * (1 - code ** 2)) @ w_h
    labelled = y >= 0
    with torch.no_grad():
        torch.testing.assert_close(top_target[labelled], (h + 0.7 * ascent)[labelled])
        reconstruction = top.g_h(top.encode(h, y, labelled))
        torch.testing.assert_close(top_target[~labelled], reconstruction[~labelled])


def test_defaults_are_the_working_recipe():
    rule = Bengio2014()
    assert (rule.propagation, rule.discriminant, rule.recirculation_weight, rule.alpha) == \
        ("difference", "reconstruction", 0.0, 0.0)
    with pytest.raises(ValueError, match="discriminant 'exact'"):
        Bengio2014(discriminant="exact")
    with pytest.raises(ValueError, match="recirculation_weight"):
        Bengio2014(recirculation_weight=-1.0)


@pytest.mark.parametrize("hidden", [0, 5])
def test_label_mask_really_hides_y(hidden):
    _, net, x, _ = small(hidden=hidden)
    top, h = net.output, torch.tanh(torch.randn(16, 12))
    missing = torch.zeros(16, dtype=torch.bool)
    codes = [top.encode(h, torch.full((16,), c), missing) for c in range(4)]
    for code in codes[1:]:
        assert torch.equal(code, codes[0])
    shown = torch.ones(16, dtype=torch.bool)
    assert not torch.equal(top.encode(h, torch.zeros(16, dtype=torch.long), shown),
                           top.encode(h, torch.ones(16, dtype=torch.long), shown))
    # Algorithm 4's prediction is the m = 0 path
    torch.testing.assert_close(top(h), top.g_y(codes[0]))


def test_conditional_network_parameter_groups():
    _, net, x, _ = small()
    assert isinstance(net, ConditionalNetwork) and len(net.layers) == 2
    assert net.layers[0].g is not None  # g_1 decodes back to x
    forward = {id(p) for p in net.forward_parameters()}
    feedback = {id(p) for p in net.feedback_parameters()}
    assert not forward & feedback
    assert forward | feedback == {id(p) for p in net.parameters()}
    assert net(x).shape == (16, 4)


@pytest.mark.parametrize("hidden", [0, 5])
@pytest.mark.parametrize("mode", ["strict", "hybrid"])
def test_strict_mode_keeps_each_target_inside_its_layer(mode, hidden):
    rule, net, x, _ = small(mode, hidden=hidden)
    record = rule.record(net, x)
    for l, out in enumerate(record.outputs):
        for k, layer in enumerate(net.layers):
            grads = torch.autograd.grad(out.sum(), list(layer.f.parameters()), retain_graph=True,
                                        allow_unused=True)
            reaches = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert reaches == (k == l or (mode == "hybrid" and k < l)), (l, k)


def test_perfect_auto_encoder_makes_the_propagated_target_reachable():
    """Figure 3: with g_l = f_l^{-1}, ĥ_{l-1} = g_l(ĥ_l) gives f_l(ĥ_{l-1}) = ĥ_l."""
    torch.manual_seed(0)
    layer = TPLayer(6, 6, "tanh").double()
    layer.g = InverseAffine(layer)
    h_hat = torch.tanh(torch.randn(5, 6, dtype=torch.float64)) * 0.8
    torch.testing.assert_close(layer(layer.feedback(h_hat)), h_hat, atol=1e-10, rtol=0)


def test_training_step_updates_encoders_and_decoders():
    from targetprop.core.learner import Learner
    from targetprop.running.optim import make_optimizer
    rule, net, x, y = small()
    y[::2] = -1  # half the batch unlabelled
    before = {k: v.clone() for k, v in net.state_dict().items()}
    learner = Learner(net, rule, make_optimizer("adam", net.forward_parameters(), 1e-2),
                      make_optimizer("adam", net.feedback_parameters(), 1e-2))
    result = learner.train_step(x, y)
    assert torch.isfinite(result.output_loss)
    assert all(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_per_layer_sigma_reaches_each_representation():
    rule = make_rule("bengio2014", corruption_sigma="0.1,0.2,0.3,0.4")  # x, h_1, h_2, top code
    net = build_network("mlp:12x3", 8, 4, rule)
    record = rule.record(net, torch.randn(16, 8))
    assert record.sigmas == [0.2, 0.3]
    assert make_rule("bengio2014", corruption_sigma="0.25").corruption.sigma == 0.25
    with pytest.raises(ValueError, match="needs 4 values"):
        build_network("mlp:12x3", 8, 4, make_rule("bengio2014", corruption_sigma="0.1,0.2"))
    with pytest.raises(ValueError, match="comma-separated"):
        make_rule("bengio2014", corruption_sigma="big")


def test_bad_settings():
    with pytest.raises(ValueError, match="credit_assignment 'loose'.*strict, hybrid"):
        Bengio2014(credit_assignment="loose")
    with pytest.raises(ValueError, match="alpha"):
        Bengio2014(alpha=1.5)
    with pytest.raises(ValueError, match="two layers"):
        build_network("mlp:8x1", 4, 2, Bengio2014())


@pytest.mark.parametrize("propagation", ["tp", "difference"])
def test_label_blind_top_gives_no_discriminant_signal(propagation):
    """If the top encoder ignores y, ĥ = h̃, so the discriminant target (α = 0) is
    h_{L-1} itself; difference propagation then leaves every layer in place,
    while the paper's ĥ_{l-1} = g_l(ĥ_l) pulls it toward its reconstruction."""
    torch.manual_seed(0)
    rule = Bengio2014(propagation=propagation, alpha=0.0, label_hide=0.0)
    net = build_network("mlp:12x4", 8, 4, rule)
    with torch.no_grad():
        net.output.encoder[0].weight[:, 12:] = 0  # the y and m columns
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    torch.testing.assert_close(targets[-1], record.hs[-1])
    moved = [not torch.allclose(t, h, atol=1e-6) for t, h in zip(targets[:-1], record.hs[1:-1])]
    assert moved == [propagation == "tp"] * len(moved)


def test_diagnostics_of_the_rule():
    from targetprop.core.diagnostics import layer_diagnostics
    rule, net, x, y = small()
    out = layer_diagnostics(net, rule, x, y)
    assert {"angle_1", "recon_1", "target_2", "discriminant_norm", "discriminant_angle",
            "long_recon_1", "long_recon_2"} <= set(out)
    assert 0 <= out["discriminant_angle"] <= 180
    assert out["discriminant_norm"] > 0
    with torch.no_grad():
        net.output.encoder[0].weight[:, 12:] = 0  # blind to y and m: Eq. 18's step vanishes
    assert layer_diagnostics(net, rule, x, y)["discriminant_norm"] == pytest.approx(0, abs=1e-7)


@pytest.mark.parametrize("step", [0.0, 0.3, 1.0])
def test_unlabelled_examples_are_pulled_toward_their_reconstruction(step):
    """An unlabelled row's top target is h + u (ĥ − h), ĥ its reconstruction
    with m = 0 (Algorithm 5 has u = 1); labelled rows are unaffected by u."""
    torch.manual_seed(0)
    rule = Bengio2014(unlabelled_step=step)
    net = build_network("mlp:12x3", 8, 4, rule)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    y[::2] = -1
    record = rule.record(net, x)
    target = rule.forward_loss(net, record, y).targets[-1]
    h, missing = record.hs[-1], torch.zeros(16, dtype=torch.bool)
    with torch.no_grad():
        reconstruction = net.output.g_h(net.output.encode(h, y, missing))
    torch.testing.assert_close(target[::2], (h + step * (reconstruction - h))[::2])
    reference = Bengio2014().forward_loss(net, record, y).targets[-1]
    torch.testing.assert_close(target[1::2], reference[1::2])


def test_feedback_loss_given_targets_trains_the_long_loop_decoders():
    """Without corruption noise the long loop adds Σ_l ½‖g_l(ĥ_l) − h_{l-1}‖²."""
    from targetprop.autoencoders.corruption import Corruption
    torch.manual_seed(0)
    rule = Bengio2014(corruption_sigma=0.0)
    net = build_network("mlp:12x3", 8, 4, rule)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    long = sum(0.5 * (layer.feedback(t) - h).pow(2).sum() / 16
               for layer, t, h in zip(net.layers, targets, record.hs))
    torch.testing.assert_close(rule.feedback_loss(net, record, targets),
                               rule.feedback_loss(net, record) + long)


@pytest.mark.parametrize("layer_backprop", [False, True])
def test_layer_backprop_lets_each_layers_reconstruction_train_its_encoder(layer_backprop):
    """The feedback loss reaches f_l only with ``layer_backprop``, and then as
    autograd of Σ_l ½‖g_l(f_l(h_{l-1})) − h_{l-1}‖² (no corruption, no
    recirculation: nothing else depends on f_l)."""
    from targetprop.autoencoders.corruption import Corruption
    torch.manual_seed(0)
    rule = Bengio2014(corruption_sigma=0.0, layer_backprop=layer_backprop)
    net = build_network("mlp:12x3", 8, 4, rule).double()
    x = torch.randn(16, 8, dtype=torch.float64)
    record = rule.record(net, x)
    weight = net.layers[1].f[0].weight
    (got,) = torch.autograd.grad(rule.feedback_loss(net, record), weight, allow_unused=True)
    if not layer_backprop:
        assert got is None
        return
    h_below = record.hs[1]
    want = torch.autograd.grad(0.5 * (net.layers[1].g(net.layers[1].f(h_below)) - h_below).pow(2).sum() / 16,
                               weight)[0]
    torch.testing.assert_close(got, want)
