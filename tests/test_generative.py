"""Generative stacks (Bengio 2014 §2, §4): the network, Algorithms 1 and 2,
generation and completion."""
from __future__ import annotations

import pytest
import torch

from targetprop.autoencoders.corruption import Corruption
from targetprop.rules.generative import GenerativeBackprop, GenerativeTP
from targetprop.rules.generative.inference import complete, completion_error, generate, generate_class, part_features
from targetprop.registry import build_network, make_rule
from targetprop.rules.generative.stacks import GenerativeStack
from targetprop.core.targets import difference_propagate
from targetprop.core.updates import half_squared_error


def stack(modalities="image", top="dae", **kwargs) -> GenerativeStack:
    torch.manual_seed(0)
    return GenerativeStack(16, [12, 8], 3, modalities=modalities, top=top, top_width=6, **kwargs)


def test_chains_codes_and_decoding_per_modality():
    net = stack("halves")
    x = torch.rand(5, 16)
    chains = net.encode(x)
    assert [hs[0].shape[1] for hs in chains] == [8, 8]
    assert torch.equal(torch.cat([hs[0] for hs in chains], 1), x)
    h, known = net.join([hs[-1] for hs in chains])
    assert h.shape == (5, 16) and known.all()
    expected = torch.cat([hs_chain[0].feedback(hs_chain[1].feedback(hs[-1]))
                          for hs, hs_chain in zip(chains, net.chains)], 1)
    assert torch.allclose(net.decode(h), expected)
    assert len(net.layers) == 4


def test_a_label_is_a_one_hot_modality_and_missing_labels_are_masked():
    net = stack("image+label")
    x, y = torch.rand(4, 16), torch.tensor([2, -1, 0, 1])
    h, known = net.join([net.encode(x)[0][-1]], y)
    assert h.shape == (4, 8 + 3)
    assert known[:, 0].all() and known[:, 1].tolist() == [True, False, True, True]
    assert h[1, -3:].abs().sum() == 0 and h[0, -1] == 1
    assert net.decode(h).shape == (4, 16)  # the label has no chain to decode
    log_probabilities = net(x)
    assert torch.allclose(log_probabilities.exp().sum(1), torch.ones(4))


def test_completion_keeps_the_observed_half_exactly():
    net = stack("halves").eval()
    x = torch.rand(6, 16)
    completed = complete(net, x, "lower", steps=4)
    assert torch.equal(completed[:, :8], x[:, :8])
    assert not torch.allclose(completed[:, 8:], x[:, 8:])
    assert part_features(net, "upper") == slice(0, 8)
    error, baseline = completion_error(net, x, "lower", x.mean(0))
    assert error >= 0 and baseline == pytest.approx((x[:, 8:] - x[:, 8:].mean(0)).pow(2).mean().item())
    with pytest.raises(ValueError, match="can complete"):
        complete(net, x, "label")


def test_class_conditional_samples_clamp_the_label():
    net = stack("image+label")
    x, y = torch.rand(20, 16), torch.arange(20) % 3
    net.top.loss(*net.join([net.encode(x)[0][-1]], y))  # sets the running σ of the noise
    net.eval()
    images = generate_class(net, 2, 5, steps=3, noise=1.0, generator=torch.Generator().manual_seed(0))
    assert images.shape == (5, 16)
    assert not torch.allclose(images[0], images[1])  # the noise makes them differ
    with pytest.raises(ValueError, match="label must lie"):
        generate_class(net, 3, 2)


@pytest.mark.parametrize("top", ["dae", "linear", "factorial", "parzen", "learned-noise"])
def test_generation_shapes_seeds_and_dtype(top):
    net = stack(top=top, top_sigma=0.1)
    pool = torch.rand(40, 16)
    net.top.loss(net.join([net.encode(pool)[0][-1]])[0].detach(), torch.ones(40, 1, dtype=torch.bool))
    net.eval()
    first = generate(net, pool, 7, steps=3, generator=torch.Generator().manual_seed(1))
    again = generate(net, pool, 7, steps=3, generator=torch.Generator().manual_seed(1))
    assert first[-1].shape == (7, 16) and torch.equal(first[-1], again[-1])
    assert len(first) == (3 if top == "dae" else 1)
    net64 = net.double()
    assert generate(net64, pool.double(), 2, steps=1)[-1].dtype == torch.float64


def quick_rule(cls, **kwargs):
    return cls(top_width=6, **kwargs)


def test_algorithm_2_targets_follow_the_top_and_the_difference_rule():
    """ĥ_{L-1} = h + w (r(h) − h), then ĥ_{l-1} = h_{l-1} + g_l(ĥ_l) − g_l(h_l)."""
    rule = quick_rule(GenerativeTP, prior_weight=0.5)
    net = build_network("mlp:12-8", 16, 3, rule)
    x = torch.rand(10, 16)
    record = rule.record(net, x)
    result = rule.forward_loss(net, record, torch.zeros(10, dtype=torch.long))
    hs = record.chains[0]
    top = hs[2] + 0.5 * (net.top.target(hs[2]) - hs[2])
    below = difference_propagate(net.layers[1].feedback, hs[1], hs[2], top)
    assert torch.allclose(result.targets[1], top, atol=1e-6)
    assert torch.allclose(result.targets[0], below, atol=1e-6)
    expected_output = (net.decode(hs[2]) - x).pow(2).mean()
    assert torch.allclose(result.output_loss, expected_output)


def test_without_a_pull_the_targets_are_the_codes():
    rule = quick_rule(GenerativeTP, prior_weight=0.0)
    net = build_network("mlp:12-8", 16, 3, rule)
    record = rule.record(net, torch.rand(10, 16))
    result = rule.forward_loss(net, record, torch.zeros(10, dtype=torch.long))
    for target, h in zip(result.targets, record.chains[0][1:]):
        assert torch.equal(target, h)


@pytest.mark.parametrize("layer_backprop", [False, True])
def test_short_loops_reach_the_encoders_only_with_layer_backprop(layer_backprop):
    rule = quick_rule(GenerativeTP, recirculation_weight=0.0, layer_backprop=layer_backprop)
    net = build_network("mlp:12-8", 16, 3, rule)
    record = rule.record(net, torch.rand(10, 16))
    loss = rule.feedback_loss(net, record)
    encoder = net.layers[0].f[0].weight
    grad = torch.autograd.grad(loss, [encoder, net.layers[0].g[0].weight], allow_unused=True)
    assert grad[1] is not None and grad[1].abs().sum() > 0
    assert (grad[0] is not None and grad[0].abs().sum() > 0) == layer_backprop


def test_the_layer_backprop_term_is_each_layers_denoising_error():
    """With no long-loop targets and no recirculation, the feedback loss is
    Σ_l ½‖g_l(h_l + σ_l ξ) − h_{l-1}‖² and its gradient on f_1 is autograd's."""
    rule = quick_rule(GenerativeTP, recirculation_weight=0.0, corruption_sigma=0.1)
    net = build_network("mlp:12-8", 16, 3, rule).double()
    x = torch.rand(10, 16, dtype=torch.float64)
    record = rule.record(net, x)
    torch.manual_seed(2)
    loss = rule.feedback_loss(net, record)
    torch.manual_seed(2)
    noise = {}
    expected = 0.0
    h = x
    for layer in net.layers:
        code = layer.f(h)
        key = code.shape
        if key not in noise:
            noise[key] = torch.randn(key).double()
        expected = expected + half_squared_error(layer.g(code + 0.1 * noise[key]), h)
        h = code.detach()
    assert torch.allclose(loss, expected)
    weight = net.layers[0].f[0].weight
    assert torch.allclose(*[torch.autograd.grad(v, weight, retain_graph=True)[0] for v in (loss, expected)])


def test_algorithm_1_trains_every_part_of_the_stack():
    rule = quick_rule(GenerativeBackprop)
    net = build_network("mlp:12-8", 16, 3, rule)
    record = rule.record(net, torch.rand(10, 16))
    result = rule.forward_loss(net, record, torch.zeros(10, dtype=torch.long))
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(result.loss, list(params.values()), allow_unused=True)
    missing = [name for name, grad in zip(params, grads) if grad is None or grad.abs().sum() == 0]
    assert missing == []
    assert rule.feedback_loss(net, record) is None


def test_algorithm_1_entropy_term_is_minus_log_sigma():
    """Raising every log σ_l,j by δ, with the noise sample fixed, changes the
    cost by −δ per unit plus the change of the reconstruction terms."""
    rule = quick_rule(GenerativeBackprop, prior_weight=0.0)
    net = build_network("mlp:12-8", 16, 3, rule).double()
    x = torch.rand(10, 16, dtype=torch.float64)

    def cost():
        torch.manual_seed(0)
        return rule.forward_loss(net, rule.record(net, x), torch.zeros(10, dtype=torch.long)).loss

    base = cost()
    with torch.no_grad():
        for log_sigma in net.log_noise:
            log_sigma -= 50.0  # σ → 0: the noise vanishes, only −log σ changes a lot
    near_zero = cost()
    assert (near_zero - base).item() == pytest.approx(50.0 * (12 + 8), rel=0.05)


def test_generative_rules_are_registered_and_validated():
    assert make_rule("generative", top_prior="parzen").top_prior == "parzen"
    assert make_rule("generative-bp").learned_noise
    with pytest.raises(ValueError, match="top_prior"):
        make_rule("generative", top_prior="gan")
    with pytest.raises(ValueError, match="dropout"):
        build_network("mlp:8", 16, 3, make_rule("generative"), dropout=0.1)
    with pytest.raises(ValueError, match="modalities"):
        build_network("mlp:8", 16, 3, make_rule("generative", modalities="audio"))
