"""Layers with exact inverses, W = L Lᵀ (core/invertible.py, Bengio 2014 §6); their
Gauss–Newton targets are checked in test_targets.py."""
from __future__ import annotations

import pytest
import torch

from targetprop import build_network, make_rule
from targetprop.core.invertible import CholeskyLinear, InvertibleLayer


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_the_triangular_solves_invert_the_layer(dtype, tolerance):
    torch.manual_seed(0)
    layer = InvertibleLayer(256).to(dtype)
    with torch.no_grad():
        layer.f[0].lower.add_(torch.randn(256, 256, dtype=dtype) * 0.02)  # away from its initial value
    h = 0.3 * torch.randn(64, 256, dtype=dtype)
    y = layer(h)
    linear = layer.f[0]
    reference = torch.linalg.solve(linear.weight, (torch.atanh(y) - linear.bias).T).T
    back = layer.feedback(y)
    assert ((back - reference).norm() / reference.norm()).item() <= tolerance
    assert ((back - h).norm() / h.norm()).item() <= tolerance


def test_the_weight_is_symmetric_positive_definite_and_the_layer_has_nothing_to_learn_backwards():
    torch.manual_seed(0)
    linear = CholeskyLinear(8)
    with torch.no_grad():
        linear.log_diagonal.add_(torch.randn(8))
        linear.lower.add_(torch.randn(8, 8))
    w = linear.weight.detach().double()
    torch.testing.assert_close(w, w.T)
    assert torch.linalg.eigvalsh(w).min() > 0
    x = torch.randn(5, 8)
    torch.testing.assert_close(linear(x), x @ linear.weight.T + linear.bias)
    assert InvertibleLayer(8).feedback_parameters() == []


def test_an_invertible_chain_trains_with_no_feedback_weights(tmp_path):
    pytest.importorskip("sklearn")
    from helpers import quick_config
    from targetprop.running.trainer import Trainer

    trainer = Trainer(quick_config(rule="dtp", arch="invertible:32x3", epochs=2), tmp_path / "run")
    assert trainer.learner.feedback_optimizer is None  # nothing to train backwards
    summary = trainer.run()
    assert summary["test_accuracy"] > 0.5  # chance is 0.1


@pytest.mark.parametrize("arch, rule, message", [
    ("invertible:32-16", "dtp", "every width must be the same"),
    ("invertible:32x3", "bengio2014", "is none of them"),
])
def test_bad_invertible_specs(arch, rule, message):
    with pytest.raises(ValueError, match=message):
        build_network(arch, 8, 3, make_rule(rule))


def test_the_svd_layer_inverts_exactly_while_orthogonal_and_its_penalty_restores_orthogonality(float64):
    """W = U D Vᵀ: at its orthogonal start V D⁻¹ Uᵀ is W⁻¹ (against
    torch.linalg.solve); away from orthogonality the §6 penalty (the linear
    auto-encoders' reconstruction error) is positive and gradient steps on it
    bring UᵀU and VᵀV back toward I."""
    from targetprop.core.invertible import SVDLinear

    torch.manual_seed(0)
    linear = SVDLinear(16)
    with torch.no_grad():
        linear.log_scale.copy_(0.3 * torch.randn(16))
    x = torch.randn(64, 16)
    pre = torch.randn(8, 16)
    torch.testing.assert_close(linear.solve(pre), torch.linalg.solve(linear.weight, pre.T).T,
                               rtol=1e-12, atol=1e-12)
    assert linear.penalty(x).item() < 1e-20
    with torch.no_grad():
        linear.u.add_(0.05 * torch.randn(16, 16))
        linear.v.add_(0.05 * torch.randn(16, 16))

    def distance():
        eye = torch.eye(16)
        return ((linear.u.T @ linear.u - eye).norm() + (linear.v.T @ linear.v - eye).norm()).item()

    before, start = distance(), linear.penalty(x).item()
    assert start > 1e-4
    optimizer = torch.optim.SGD([linear.u, linear.v], lr=0.01)
    for _ in range(200):
        optimizer.zero_grad()
        linear.penalty(x).backward()
        optimizer.step()
    assert distance() < 0.2 * before


def test_an_svd_chain_trains_and_its_penalty_is_part_of_the_local_loss(tmp_path):
    pytest.importorskip("sklearn")
    from helpers import quick_config
    from targetprop.running.trainer import Trainer

    net = build_network("invertible-svd:8x3", 5, 3, make_rule("dtp")).double()
    rule = make_rule("dtp")
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        net.layers[1].f[0].u.add_(0.1)  # away from orthogonal: the penalty is > 0
    record = rule.record(net, x)
    penalty = net.layers[1].penalty(record.hs[1])
    assert penalty.item() > 0
    with_penalty = rule.forward_loss(net, record, y).loss
    net.layers[1].penalty = lambda h: None
    torch.testing.assert_close(with_penalty - rule.forward_loss(net, rule.record(net, x), y).loss, penalty)

    trainer = Trainer(quick_config(rule="dtp", arch="invertible-svd:32x3", epochs=2), tmp_path / "run")
    assert trainer.learner.feedback_optimizer is None
    assert trainer.run()["test_accuracy"] > 0.5  # chance is 0.1
