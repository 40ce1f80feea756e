"""``wrap``: a user's ``nn.Sequential`` cut into blocks with proposed feedback
maps, checked against the model itself (same outputs, same parameters), the
shapes its feedback maps must have, and the closed form of their linear
parts; every error names the module and the way out."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from targetprop import Chain, Layer, Residual, build_network, make_rule, wrap
from targetprop.core.wrap import ResidualFeedback, WrapError, propose_feedback
from targetprop.models import resnet

from user_models import norm_conv, norm_mlp, residual_mlp


def block_inputs(net: Chain, x: torch.Tensor) -> list[torch.Tensor]:
    """h_0..h_L of a batch, eval mode."""
    hs = [net.as_input(x)]
    for layer in net.layers:
        hs.append(layer(hs[-1]))
    return hs


def test_an_mlp_is_cut_at_its_activations_and_computes_what_the_model_does():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))
    net = wrap(model, (3, 4), 3)
    assert len(net.layers) == 2 and net.output is model[5]
    assert [type(layer.activation) for layer in net.layers] == [nn.ReLU, nn.Tanh]
    assert net.layers[0].g is None and isinstance(net.layers[1].g, nn.Linear)  # h_0 needs no target
    x = torch.randn(5, 3, 4)
    torch.testing.assert_close(net(x), model(x))
    torch.testing.assert_close(net(x.flatten(1)), model(x))  # flat vectors of that many features go in too
    assert {id(p) for p in model.parameters()} <= {id(p) for p in net.parameters()}  # the model's own


def test_a_conv_net_keeps_its_pools_in_the_block_and_its_maps_go_back_to_each_input_shape():
    torch.manual_seed(0)
    model = norm_conv((2, 7, 9), 3)
    net = wrap(model, (2, 7, 9), 3).eval()
    assert len(net.layers) == 3
    assert all(isinstance(layer.activation, nn.ReLU) for layer in net.layers)
    assert isinstance(net.layers[0].f[-1], nn.MaxPool2d) and isinstance(net.layers[1].f[-1], nn.MaxPool2d)
    x = torch.randn(4, 2, 7, 9)
    torch.testing.assert_close(net(x), model.eval()(x))
    hs = block_inputs(net, x)
    for l, layer in enumerate(net.layers[1:], start=1):
        assert layer.feedback(hs[l + 1]).shape == hs[l].shape  # (6, 1, 2) → (4, 3, 4) and (12,) → (6, 1, 2)
    up = net.layers[1].g
    assert isinstance(up, nn.ConvTranspose2d) and up.stride == (2, 2) and up.kernel_size == (4, 4)


@pytest.mark.parametrize("size", [5, 6, 7, 8, 9, 28])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_transposed_maps_restore_every_size(size, stride):
    """(out − 1)s − 2p + k + op = in, for strided convolutions and pools alike."""
    block = [nn.Conv2d(3, 4, 3, stride=stride, padding=1), nn.ReLU()]
    out = nn.Sequential(*block)(torch.zeros(1, 3, size, size)).shape[1:]
    g = propose_feedback((3, size, size), tuple(out), block)
    assert g(torch.zeros(2, *out)).shape == (2, 3, size, size)


def test_a_norm_after_the_activation_starts_the_next_block_and_dropout_its_input():
    """Linear–ReLU–BatchNorm1d: the block ends at the ReLU (its output is the
    ReLU's, so act′ read off it gates exactly); the norm opens the next
    block; the Dropout after the Tanh drops the read-out's input."""
    net = wrap(norm_mlp((10,), 3), (10,), 3)
    assert [type(m) for m in net.layers[0].f] == [nn.Flatten, nn.Linear, nn.ReLU]
    assert [type(m) for m in net.layers[1].f] == [nn.BatchNorm1d, nn.Linear, nn.LayerNorm, nn.Tanh]
    assert isinstance(net.output, nn.Sequential) and isinstance(net.output[0], nn.Dropout)
    make_rule("dtp", target_gating="all").check_network(net)  # every block names an activation with a derivative


def test_a_dropout_between_global_pooling_and_the_read_out_drops_the_read_outs_input():
    """…AdaptiveAvgPool2d, Flatten, Dropout, Linear: the common classifier
    head; no activation follows the Dropout, so it is the read-out's."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Dropout(0.5), nn.Linear(4, 3))
    net = wrap(model, (1, 6, 6))
    assert [type(m) for m in net.output] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Linear]
    model.eval()
    x = torch.randn(5, 1, 6, 6)
    torch.testing.assert_close(net(x), model(x))
    net.train()
    torch.manual_seed(0)
    dropped = net(x)
    torch.manual_seed(0)
    torch.testing.assert_close(dropped, model(x))  # the same mask: the model's own Dropout


def test_residual_blocks_get_the_identity_plus_a_correction_that_starts_at_zero():
    torch.manual_seed(0)
    net = wrap(resnet(8, 1, 4), (1, 12, 12), 4).eval()
    assert len(net.layers) == 4  # the stem and three basic blocks
    kinds = [type(layer.g).__name__ for layer in net.layers]
    assert kinds == ["NoneType", "ResidualFeedback", "ConvTranspose2d", "ConvTranspose2d"]  # stages 2, 3 stride
    h = torch.randn(3, 16, 12, 12)
    torch.testing.assert_close(net.layers[1].feedback(h), h)  # g = identity + 0 at the start
    x = torch.randn(2, 1, 12, 12)
    hs = block_inputs(net, x)
    for l, layer in enumerate(net.layers[1:], start=1):
        assert layer.feedback(hs[l + 1]).shape == hs[l].shape
    assert isinstance(net.output, nn.Sequential) and isinstance(net.output[0], nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize("model_and_shape", [(norm_conv, (2, 7, 9)), (residual_mlp, (10,)),
                                             (lambda s, n: resnet(8, 1, n), (1, 8, 8))])
def test_linear_parts_are_the_differences_of_g(model_and_shape, float64):
    """g(a) − g(b) = M(a − b) for each proposed (affine) feedback map, in float64."""
    build, shape = model_and_shape
    torch.manual_seed(0)
    net = wrap(build(shape, 3), shape, 3)
    hs = block_inputs(net.eval(), torch.randn(4, *shape))
    for l, layer in enumerate(net.layers[1:], start=2):
        with torch.no_grad():  # a correction that is not zero, so that its part is seen
            for p in layer.g.parameters():
                p.normal_()
        out = hs[l]
        a, b = torch.randn_like(out), torch.randn_like(out)
        torch.testing.assert_close(layer.feedback_linear(a - b), layer.g(a) - layer.g(b))


def test_residual_feedback_is_h_plus_the_correction():
    correction = nn.Linear(5, 5)
    g = ResidualFeedback(correction)
    with torch.no_grad():
        correction.weight.normal_()
    h = torch.randn(3, 5)
    torch.testing.assert_close(g(h), h + correction(h))


def test_feedback_map_activation_appends_the_activation_of_the_block_below():
    net = wrap(nn.Sequential(nn.Linear(4, 6), nn.ELU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)), (4,),
               feedback_map="activation")
    assert isinstance(net.layers[1].g, nn.Sequential) and isinstance(net.layers[1].g[1], nn.ELU)
    assert net.layers[1].feedback_linear is None  # not affine: differences go through g twice


def test_a_block_of_ones_own_is_kept_and_its_feedback_map_checked():
    own = Layer(nn.Sequential(nn.Linear(6, 5), nn.Tanh()), nn.Linear(5, 6), activation=nn.Tanh())
    net = wrap(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), own, nn.Linear(5, 2)), (4,), 2)
    assert net.layers[1] is own and net.layers[1].g is own.g
    wrong = Layer(nn.Sequential(nn.Linear(6, 5), nn.Tanh()), nn.Linear(5, 7), activation=nn.Tanh())
    with pytest.raises(WrapError, match=r"feedback map of block 2 gives \(7,\), but the block's input is \(6,\)"):
        wrap(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), wrong, nn.Linear(5, 2)), (4,))


class Attention(nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Sequential(Attention()), nn.Linear(6, 2)),
     r"module 2\.0 \(Attention\).*targetprop\.Layer\(f, g, activation=\.\.\.\)"),
    (nn.Linear(4, 2), r"Linear is not one.*nn\.Sequential"),
    (nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2), nn.Softmax(dim=1)),
     r"module 3 \(Softmax\) comes after the read-out"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten()), "has none; add one"),
    (nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.ReLU(), nn.Linear(6, 2)), r"module 1 \(Dropout\).*inside"),
    (nn.Sequential(nn.Linear(4, 2)), "no block before its read-out"),
])
def test_what_wrap_cannot_split_is_a_clear_error(model, message):
    with pytest.raises(WrapError, match=message):
        wrap(model, (4,))


def test_shapes_that_do_not_fit_are_clear_errors():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(WrapError, match="block 1 does not take inputs of shape \\(5,\\)"):
        wrap(model, (5,))
    with pytest.raises(WrapError, match="gives 3 outputs per example, but the data have 10 classes.*6 → 10"):
        wrap(model, (4,), 10)
    with pytest.raises(WrapError, match=r"gives \(2, 3\) per example, not a vector of logits"):
        wrap(model, (2, 4))


def test_training_the_chain_trains_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    before = [p.detach().clone() for p in model.parameters()]
    net = wrap(model, (4,), 2)
    rule = make_rule("dtp")
    from targetprop import Learner
    learner = Learner(net, rule, torch.optim.SGD(net.forward_parameters(), 0.1),
                      torch.optim.SGD(net.feedback_parameters(), 0.1))
    learner.train_step(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_network_of_target_propagation_is_returned_as_it_is():
    net = build_network("mlp:8x2", 4, 2)
    assert wrap(net, (4,)) is net
