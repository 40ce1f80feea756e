"""Network construction, specs and exact inverses."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from targetprop import InverseAffine, TPLayer, build_network, make_rule
from targetprop.core.architectures import parse_architecture


@pytest.mark.parametrize("spec, widths", [
    ("mlp:256x5", [256] * 5), ("mlp:7x1", [7]), ("mlp:512-256-128", [512, 256, 128]), ("mlp:3", [3]),
])
def test_parse_arch(spec, widths):
    assert parse_architecture(spec).arguments == {"widths": widths}


@pytest.mark.parametrize("spec", ["resnet:3", "mlp:", "mlp:0x3", "mlp:256x", "256x5", "mlp:4-0", "resnet21"])
def test_bad_arch_names_the_valid_forms(spec):
    with pytest.raises(ValueError, match=r"mlp:WIDTHxDEPTH|WIDTHxDEPTH or W1-W2|positive width|6n \+ 2"):
        parse_architecture(spec)


def test_unknown_activation_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*tanh.*leaky-relu"):
        build_network("mlp:4x2", 3, 2, activation="swish")


def test_network_shapes_and_feedback_maps():
    net = build_network("mlp:6-5-4", 8, 3)
    assert net(torch.randn(2, 8)).shape == (2, 3)
    assert net.layers[0].g is None  # nothing below h_1 needs a target in a classifier
    for layer in net.layers[1:]:
        h = torch.randn(2, layer.out_features)
        assert layer.feedback(h).shape == (2, layer.in_features)
    n_forward = sum(p.numel() for p in net.forward_parameters())
    assert n_forward == (8 * 6 + 6) + (6 * 5 + 5) + (5 * 4 + 4) + (4 * 3 + 3)
    assert len(net.feedback_parameters()) == 4


def test_float64_and_state_dict_round_trip():
    net = build_network("mlp:5x3", 4, 2).double()
    clone = build_network("mlp:5x3", 4, 2).double()
    clone.load_state_dict(net.state_dict())
    x = torch.randn(3, 4, dtype=torch.float64)
    assert torch.equal(net(x), clone(x))


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    net = build_network("mlp:64x2", 4, 2, dropout=0.5)
    x = torch.randn(8, 4)
    h = torch.tanh(torch.randn(8, 64))
    assert not torch.equal(net.layers[1](h), net.layers[1].f(h))  # its input units are dropped
    assert torch.equal(net.layers[0](x), net.layers[0].f(x))      # input pixels never are
    net.eval()
    assert torch.equal(net(x), net(x))
    torch.testing.assert_close(net.layers[1](h), net.layers[1].f(h))
    with pytest.raises(ValueError, match="dropout"):
        build_network("mlp:4x2", 3, 2, dropout=1.0)


@pytest.mark.parametrize("activation", ["tanh", "leaky-relu", "sigmoid", "linear"])
def test_inverse_affine_inverts_in_float64(activation):
    torch.manual_seed(0)
    layer = TPLayer(5, 5, activation).double()
    inverse = InverseAffine(layer)
    h = torch.rand(7, 5, dtype=torch.float64) * 0.5
    torch.testing.assert_close(inverse(layer(h)), h, atol=1e-9, rtol=0)


def test_inverse_affine_needs_square_invertible_layer():
    with pytest.raises(ValueError, match="square"):
        InverseAffine(TPLayer(5, 4, "tanh"))
    with pytest.raises(ValueError, match="no inverse"):
        InverseAffine(TPLayer(4, 4, "relu"))
    with pytest.raises(ValueError, match="one-layer encoder"):
        InverseAffine(TPLayer(4, 4, "tanh", hidden=3))


def test_mlp_encoder_and_decoder():
    """hidden > 0: f = act(W₂ tanh(W₁ h + b₁) + b₂), and g likewise (Bengio 2014 §6)."""
    torch.manual_seed(0)
    layer = TPLayer(5, 4, "tanh", feedback_activation="linear", hidden=7)
    h = torch.randn(3, 5)
    first, second = layer.f[0], layer.f[2]
    torch.testing.assert_close(layer(h), torch.tanh(second(torch.tanh(first(h)))))
    assert layer.weights() == [first.weight, second.weight]  # what the angle diagnostics compare
    assert [m.weight.shape for m in layer.g if hasattr(m, "weight")] == [(7, 4), (5, 7)]
    assert layer.feedback(layer(h)).shape == h.shape
    net = build_network("mlp:6x2", 5, 3, layer_hidden=7)
    assert net(h).shape == (3, 3) and all(len(l.f) == 4 for l in net.layers)
    with pytest.raises(ValueError, match=">= 0"):
        TPLayer(5, 4, hidden=-1)


@pytest.mark.parametrize("rule_name", ["bp", "dtp", "drl", "ldrl"])
def test_a_new_layer_kind_is_a_pair_of_modules(rule_name):
    """A layer whose f and g are arbitrary modules (here with layer
    normalisation inside f) trains under the chain rules through the same
    code. (Vanilla ``tp`` runs too but is left out of the bar: its targets
    g_l(ĥ_l) carry every inverse's reconstruction error, and it trains poorly
    on any layer kind.)"""
    from targetprop import Chain, Layer, Learner, make_rule

    def kind(n_in, n_out, feedback=True):
        f = nn.Sequential(nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.Tanh())
        g = nn.Sequential(nn.Linear(n_out, n_in), nn.Tanh()) if feedback else None
        return Layer(f, g, activation=f[-1])

    torch.manual_seed(0)
    net = Chain([kind(8, 16, feedback=False), kind(16, 16), kind(16, 16)], nn.Linear(16, 3))
    rule = make_rule(rule_name)
    feedback = torch.optim.Adam(net.feedback_parameters(), 1e-2) if rule.uses_feedback else None
    learner = Learner(net, rule, torch.optim.Adam(net.forward_parameters(), 1e-2), feedback)
    x = torch.randn(128, 8)
    y = x[:, :3].argmax(1)  # a learnable labelling
    first = F.cross_entropy(net(x), y).item()
    for _ in range(150):
        learner.train_step(x, y)
    assert F.cross_entropy(net(x), y).item() < 0.6 * first
    assert [len(w) for w in (layer.weights() for layer in net.layers)] == [1, 1, 1]  # LayerNorm's are 1-d


def test_he_init_gives_every_forward_map_variance_two_over_fan_in():
    from targetprop.core.networks import he_init

    torch.manual_seed(0)
    net = build_network("mlp:512x2", 256, 10, activation="relu")
    feedback = [p.clone() for p in net.feedback_parameters()]
    he_init(net)
    for layer in net.layers:
        linear = layer.f[0]
        assert torch.count_nonzero(linear.bias) == 0
        # the sample variance of ≥ 5 120 draws is within 5 % of 2 / fan_in
        assert abs(linear.weight.var().item() * linear.in_features / 2 - 1) < 0.05
    assert all(torch.equal(a, b) for a, b in zip(feedback, net.feedback_parameters()))  # g_l untouched


@pytest.mark.parametrize("activation, init, he", [("relu", "auto", True), ("elu", "auto", True),
                                                  ("tanh", "auto", False), ("tanh", "he", True),
                                                  ("relu", "torch", False)])
def test_the_run_picks_he_init_for_unbounded_activations(activation, init, he):
    pytest.importorskip("sklearn")
    from helpers import quick_config
    from targetprop.running.setup import build_parts, load_splits, validate_config

    config = validate_config(quick_config(rule="bp", activation=activation, init=init))
    rule = make_rule("bp")
    splits = load_splits(config, rule)
    parts = build_parts(config, rule, splits, splits.targets_per_step, torch.device("cpu"))
    biases = [layer.f[0].bias for layer in parts.net.layers]
    assert all(torch.count_nonzero(b) == 0 for b in biases) == he  # PyTorch's default draws biases
