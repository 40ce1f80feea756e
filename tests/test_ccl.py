"""ccl (counter-current learning) against its written-out equations in
float64, and its cost against the paper's count; gradient clipping."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from targetprop import Learner, build_network, make_rule
from targetprop.running.bench import _FlopCount, count_flops
from targetprop.running.optim import make_optimizer


def _elu_derivative(t):
    return torch.where(t > 0, torch.ones_like(t), torch.exp(t))


def test_ccl_step_equals_the_written_out_equations():
    """mlp:6x2 on 5 inputs, 3 classes, elu: the loss Σ_l (s/d_l)·mean((a_l c_lᵀ − Y)²) + CE and
    the gradient of every weight, from the closed forms (G_l = ∂L_l/∂S_l):
    ∂W_l = ((G_l c_l) ⊙ elu′(z_l))ᵀ a_{l-1}, ∂V_{l+1} = ((G_lᵀ a_l) ⊙ elu′(u_l))ᵀ c_{l+1},
    ∂R = (softmax − Y)ᵀ a_2 / N: no gradient crosses a layer."""
    torch.manual_seed(0)
    s = 0.7
    rule = make_rule("ccl", alignment_scale=s)
    net = build_network("mlp:6x2", 5, 3, rule, activation="elu").double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.arange(16) % 3
    result = rule.forward_loss(net, rule.record(net, x), y)
    names = [name for name, _ in net.named_parameters()]
    grads = dict(zip(names, torch.autograd.grad(result.loss, list(net.parameters()), allow_unused=True)))

    (W1, b1), (W2, b2) = [(layer.f[0].weight, layer.f[0].bias) for layer in net.layers]
    R, r = net.output.weight, net.output.bias
    U, u = net.label_feedback[0].weight, net.label_feedback[0].bias
    V2, v2 = net.layers[1].g[0].weight, net.layers[1].g[0].bias
    V1, v1 = net.layers[0].g[0].weight, net.layers[0].g[0].bias
    z1 = x @ W1.T + b1; a1 = F.elu(z1)
    z2 = a1 @ W2.T + b2; a2 = F.elu(z2)
    logits = a2 @ R.T + r
    u2 = torch.eye(3, dtype=torch.float64) @ U.T + u; c2 = F.elu(u2)
    u1 = c2 @ V2.T + v2; c1 = F.elu(u1)
    c0 = c1 @ V1.T + v1
    Y = F.one_hot(y, 3).double()
    terms = [(s / a.shape[1]) * ((a @ c.T - Y) ** 2).mean() for a, c in ((x, c0), (a1, c1), (a2, c2))]
    ce = F.cross_entropy(logits, y)
    torch.testing.assert_close(result.loss, sum(terms) + ce, rtol=1e-12, atol=0)
    torch.testing.assert_close(result.output_loss, ce.detach(), rtol=1e-12, atol=0)
    assert result.targets is None

    G = [2 * s * (a @ c.T - Y) / (a.shape[1] * 16 * 3) for a, c in ((x, c0), (a1, c1), (a2, c2))]
    expected = {
        "layers.0.f.0.weight": ((G[1] @ c1) * _elu_derivative(z1)).T @ x,
        "layers.1.f.0.weight": ((G[2] @ c2) * _elu_derivative(z2)).T @ a1,
        "output.weight": (torch.softmax(logits, 1) - Y).T @ a2 / 16,
        "label_feedback.0.weight": ((G[2].T @ a2) * _elu_derivative(u2)).T @ torch.eye(3, dtype=torch.float64),
        "layers.1.g.0.weight": ((G[1].T @ a1) * _elu_derivative(u1)).T @ c2,
        "layers.0.g.0.weight": (G[0].T @ x).T @ c1,
    }
    for name, value in expected.items():
        torch.testing.assert_close(grads[name], value.detach(), rtol=1e-10, atol=1e-14, msg=name)
    # back-prop would give layer 1 the cross-entropy's gradient too: this is not back-prop
    (through_the_chain,) = torch.autograd.grad(F.cross_entropy(net(x), y), W1)
    assert not torch.allclose(grads["layers.0.f.0.weight"], through_the_chain)


def test_ccl_prototypes_do_not_depend_on_the_batch():
    torch.manual_seed(1)
    net = build_network("mlp:6x2", 5, 3, make_rule("ccl"), activation="elu").double()
    first = [c.detach().clone() for c in net.class_activations()]
    net(torch.randn(4, 5, dtype=torch.float64))
    assert all(torch.equal(a, b) for a, b in zip(first, net.class_activations()))
    assert [tuple(c.shape) for c in first] == [(3, 5), (3, 6), (3, 6)]


def test_ccl_costs_what_the_paper_counts():
    """Kao & Hariharan (2024) count 2.39 M (bp) and 2.55 M (ccl) per example
    on 784-256×5-10 at batch 32: the feedback net runs on the K one-hots once
    per batch, and the input pair (x, c_0) is counted (2.27 M without)."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 784), torch.arange(32) % 10
    flops = count_flops(["bp", "ccl"], x, y, arch="mlp:256x5", num_classes=10, activation="elu")
    assert flops == {"bp": 2391040.0, "ccl": 2551552.0}
    torch.manual_seed(0)
    rule = make_rule("ccl", input_pair=False)
    net = build_network("mlp:256x5", 784, 10, rule, activation="elu")
    learner = Learner(net, rule, make_optimizer("adam", net.forward_parameters(), 1e-3),
                      make_optimizer("adam", net.feedback_parameters(), 1e-3))
    with _FlopCount() as counted:
        learner.train_step(x, y)
    assert counted.total / len(x) == 2269312.0


def test_clipping_scales_each_optimizers_gradient_to_its_norm():
    """SGD at rate 1 with a clip norm c moves the weights by exactly c (the
    gradient's norm being larger), each optimizer by its own."""
    torch.manual_seed(0)
    rule = make_rule("ccl")
    net = build_network("mlp:6x2", 5, 3, rule).double()
    learner = Learner(net, rule, make_optimizer("sgd", net.forward_parameters(), 1.0),
                      make_optimizer("sgd", net.feedback_parameters(), 1.0), clip_norms=(1e-3, 2e-3))
    before = [torch.cat([p.detach().flatten().clone() for p in group])
              for group in (net.forward_parameters(), net.feedback_parameters())]
    learner.train_step(torch.randn(16, 5, dtype=torch.float64), torch.arange(16) % 3)
    after = [torch.cat([p.detach().flatten() for p in group])
             for group in (net.forward_parameters(), net.feedback_parameters())]
    for b, a, norm in zip(before, after, (1e-3, 2e-3)):
        torch.testing.assert_close((a - b).norm(), torch.tensor(norm, dtype=torch.float64), rtol=1e-6, atol=0)
