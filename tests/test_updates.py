"""The local update's loss and its hand-written gradient."""
from __future__ import annotations

import torch

from targetprop.core.updates import half_squared_error, local_target_loss


def test_local_target_loss_matches_autograd_of_the_plain_sum():
    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64)
    w1 = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    targets = [torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)]

    def outputs():  # the second output hangs from the first: gradients must flow through
        h1 = torch.tanh(x @ w1.T)
        return [h1, torch.tanh(h1 @ w2.T)]

    loss = local_target_loss(outputs(), targets)
    plain = sum(0.5 * (o - t).pow(2).sum() / 6 for o, t in zip(outputs(), targets))
    torch.testing.assert_close(loss, plain)
    for got, want in zip(torch.autograd.grad(loss, [w1, w2]), torch.autograd.grad(plain, [w1, w2])):
        torch.testing.assert_close(got, want)


def test_local_target_loss_passes_gradcheck_and_ignores_target_gradients():
    torch.manual_seed(0)
    outputs = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    targets = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert torch.autograd.gradcheck(lambda a, b: local_target_loss([a, b], targets), outputs)
    local_target_loss(outputs, targets).backward()
    assert all(t.grad is None for t in targets)  # targets are constants


def test_half_squared_error_is_a_batch_mean():
    prediction, target = torch.ones(4, 3), torch.zeros(4, 3)
    assert half_squared_error(prediction, target).item() == 0.5 * 3
