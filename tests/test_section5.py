"""Bengio (2014) §5 on a recurrent net (rules/bengio2014/recurrent.py), each
piece against an independent reference: torch.nn.RNN for the forward pass,
closed forms (matrix powers, float64) for the long loops, the explicit sum
over steps for the streamed short loops, and the stored sequence for the
streaming case."""
from __future__ import annotations

import pytest
import torch

from targetprop.core import targets as tg
from targetprop.registry import build_network, make_rule
from targetprop.rules.bengio2014.recurrent import Section5Network, ShortLoopMoments, long_loop_targets
from targetprop.running.config import ConfigError
from targetprop.running.setup import load_splits, validate_config
from targetprop.running.trainer import Trainer

from helpers import quick_config, torch_rnn_like

T, F, WIDTH, N = 6, 3, 5, 16


def _problem(seed: int = 0, **settings):
    torch.manual_seed(seed)
    rule = make_rule("bengio2014", **settings)
    net = build_network(f"rnn:{WIDTH}", (T, F), 4, rule).double()
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N, T * F, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 4, (N,), generator=generator)
    return rule, net, x, y


def test_the_forward_pass_is_torchs_rnn_and_g_has_no_input():
    rule, net, x, _ = _problem()
    assert isinstance(net, Section5Network) and net.cell.back_input is None
    states, _ = torch_rnn_like(net)(x.view(N, T, F))
    record = rule.record(net, x)
    torch.testing.assert_close(torch.stack(record.hs[1:], 1), states)
    torch.testing.assert_close(record.logits, net(x))
    torch.testing.assert_close(torch.stack(record.codes), x.view(N, T, F).transpose(0, 1) @ net.cell.input.weight.T
                               + net.cell.input.bias)


def _top_and_step(rule, net, record, y):
    logits = net.output(record.top)
    grad = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y, reduction="sum"), record.top)[0]
    return record.hs[-1] - rule.state_target_step * grad


def test_ungated_difference_long_loop_is_the_matrix_power_closed_form():
    """ŝ_t − s_t = V^{T−t} Δ and ĥ_t − h_t = Q V^{T−t} Δ, Δ = ŝ_T − s_T."""
    rule, net, x, y = _problem(state_gating=False)
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    _, codes = rule.pieces["section5"].long_loops(net, record, _top_and_step(rule, net, record, y))
    delta = _top_and_step(rule, net, record, y) - record.hs[-1]
    V, Q = net.cell.back.weight.detach(), net.back_code.weight.detach()
    for t in range(1, T + 1):
        carried = delta @ torch.linalg.matrix_power(V, T - t).T
        torch.testing.assert_close(targets[t - 1] - record.hs[t], carried)
        torch.testing.assert_close(codes[t - 1] - record.code_values[t - 1], carried @ Q.T)


def test_gated_long_loop_step_by_hand():
    rule, net, x, y = _problem()
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    V = net.cell.back.weight.detach()
    for t in range(T, 1, -1):
        s = record.hs[t]
        gated = (1 - s * s) * (targets[t - 1] - s)
        torch.testing.assert_close(targets[t - 2], record.hs[t - 1] + gated @ V.T)


def test_the_papers_long_loop_runs_g_from_the_top_target():
    """propagation=tp: (ŝ_{t−1}, ĥ_t) = g(ŝ_t), the paper's literal recipe."""
    rule, net, x, y = _problem(propagation="tp", state_gating=False)
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    V, c = net.cell.back.weight.detach(), net.cell.back.bias.detach()
    s_hat = _top_and_step(rule, net, record, y)
    for t in range(T, 0, -1):
        torch.testing.assert_close(targets[t - 1], s_hat)
        s_hat = s_hat @ V.T + c


def test_label_free_loops_from_every_state_average_the_targets():
    """Difference propagation, ungated, long_loop_stride=1: a loop from
    ŝ_{T'} = s_{T'} moves nothing, so step t's target is s_t plus the
    labelled loop's step divided by the T − t + 1 loops that reach it."""
    rule, net, x, y = _problem(state_gating=False, long_loop_stride=1)
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    delta = _top_and_step(rule, net, record, y) - record.hs[-1]
    V = net.cell.back.weight.detach()
    for t in range(1, T + 1):
        carried = delta @ torch.linalg.matrix_power(V, T - t).T / (T - t + 1)
        torch.testing.assert_close(targets[t - 1] - record.hs[t], carried)


def test_long_loop_targets_with_the_generic_difference_rule_match_the_linear_one():
    torch.manual_seed(3)
    weight, bias = torch.randn(2 * WIDTH, WIDTH, dtype=torch.float64), torch.randn(2 * WIDTH, dtype=torch.float64)
    states = [torch.randn(N, WIDTH, dtype=torch.float64).tanh() for _ in range(T)]
    codes = [torch.randn(N, WIDTH, dtype=torch.float64) for _ in range(T)]
    top = states[-1] + 0.1 * torch.randn(N, WIDTH, dtype=torch.float64)
    generic = long_loop_targets(lambda s: s @ weight.T + bias, tg.difference_propagate, states, codes, top)
    linear = long_loop_targets(lambda d: d @ weight.T, tg.linear_difference_propagate, states, codes, top)
    for a, b in zip(generic[0] + generic[1], linear[0] + linear[1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("credit", ["step", "code", "both"])
def test_what_trains_the_encoder(credit):
    """The encoder's gradient, written out: "code" Σ_t (h_t − ĥ_t) x_tᵀ / N;
    "step" Σ_t (act′ ⊙ (s_t − ŝ_t)) x_tᵀ / N, act′ = 1 − s_t² (tanh)."""
    rule, net, x, y = _problem(encoder_credit=credit)
    record = rule.record(net, x)
    result = rule.forward_loss(net, record, y)
    (grad,) = torch.autograd.grad(result.loss, net.cell.input.weight)
    _, codes = rule.pieces["section5"].long_loops(net, record, _top_and_step(rule, net, record, y))
    inputs = x.view(N, T, F).transpose(0, 1)
    expected = torch.zeros_like(grad)
    for t in range(T):
        s, s_hat = record.hs[t + 1], result.targets[t]
        if credit != "code":
            expected += ((1 - s * s) * (s - s_hat)).T @ inputs[t] / N
        if credit != "step":
            expected += (record.code_values[t] - codes[t]).T @ inputs[t] / N
    torch.testing.assert_close(grad, expected)


def test_short_loop_moments_give_the_summed_loss_and_its_gradient():
    torch.manual_seed(4)
    pairs = [(torch.randn(N, WIDTH, dtype=torch.float64), torch.randn(N, 2 * WIDTH, dtype=torch.float64))
             for _ in range(T)]
    moments = ShortLoopMoments()
    for a, b in pairs:
        moments.add(a, b)
    weight = torch.randn(2 * WIDTH, WIDTH, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2 * WIDTH, dtype=torch.float64, requires_grad=True)
    explicit = sum(0.5 * (a @ weight.T + bias - b).pow(2).sum() / N for a, b in pairs)
    streamed = moments.loss(weight, bias)
    torch.testing.assert_close(streamed, explicit)
    for g, h in zip(torch.autograd.grad(streamed, (weight, bias)), torch.autograd.grad(explicit, (weight, bias))):
        torch.testing.assert_close(g, h)


@pytest.mark.parametrize("window", [2, 4])
def test_streaming_is_the_stored_recipe_cut_to_its_window(window):
    """Without corruption noise: the streamed short loops have the stored
    ones' gradient, and the window's targets are the stored ones' last K."""
    stored_rule, net, x, y = _problem(corruption_sigma="0")
    streaming = make_rule("bengio2014", corruption_sigma="0", stream_window=window)
    stored, streamed = stored_rule.record(net, x), streaming.record(net, x)
    assert len(streamed.outputs) == window
    feedback = list(net.feedback_parameters())
    for a, b in zip(torch.autograd.grad(stored_rule.feedback_loss(net, stored), feedback),
                    torch.autograd.grad(streaming.feedback_loss(net, streamed), feedback)):
        torch.testing.assert_close(a, b)
    full = stored_rule.forward_loss(net, stored, y).targets
    cut = streaming.forward_loss(net, streamed, y).targets
    for a, b in zip(full[-window:], cut):
        torch.testing.assert_close(a, b)


def test_streaming_memory_does_not_grow_with_the_sequence():
    """The tensors a streaming record holds, the input aside, are the same
    size for T = 10 and T = 40; the stored record's grow with T."""
    def held(length: int, window: int) -> int:
        torch.manual_seed(0)
        rule = make_rule("bengio2014", stream_window=window)
        net = build_network(f"rnn:{WIDTH}", (length, F), 4, rule)
        record = rule.record(net, torch.randn(N, length * F))
        tensors = [*record.hs[1:], *record.outputs, *record.codes]
        if record.moments is not None:
            tensors += [record.moments.inputs, record.moments.cross]
        return sum(t.numel() for t in tensors)

    assert held(10, 4) == held(40, 4)
    assert held(40, 0) > 3 * held(10, 0)


def test_settings_belong_to_their_kind_of_network():
    with pytest.raises(ValueError, match="alpha"):
        build_network("rnn:4", (T, F), 3, make_rule("bengio2014", alpha=0.5))
    with pytest.raises(ValueError, match="stream_window"):
        build_network("mlp:8x2", 12, 3, make_rule("bengio2014", stream_window=5))
    with pytest.raises(ValueError, match="gru:4 is none of them"):
        build_network("gru:4", (T, F), 3, make_rule("bengio2014"))
    with pytest.raises(ValueError, match="recirculation"):
        make_rule("bengio2014", stream_window=5, recirculation_weight=1.0)


def test_a_semi_supervised_run_builds_a_recurrent_net():
    """Its defaults (layer_backprop, a setting of mlp: nets) are not an error on rnn:."""
    config = validate_config(quick_config(data="temporal-order", rule="bengio2014", arch="rnn:8", seq_len=10,
                                          labels=200))
    assert config.rule_settings["layer_backprop"] is True


def test_regression_is_refused_on_mlp_and_taken_on_rnn():
    for arch, refused in (("mlp:8x2", True), ("rnn:8", False)):
        config = validate_config(quick_config(data="adding", rule="bengio2014", arch=arch, seq_len=10))
        rule = make_rule("bengio2014")
        if refused:
            with pytest.raises(ConfigError, match="regression"):
                load_splits(config, rule)
        else:
            assert load_splits(config, rule).num_classes == 0


@pytest.mark.slow
@pytest.mark.parametrize("window", [0, 10])
def test_section5_learns_short_dependencies(tmp_path, window):
    """T = 10, two epochs, stored and streaming (a window of every step):
    the order of two symbols well past chance (1/4)."""
    summary = Trainer(quick_config(data="temporal-order", rule="bengio2014", arch="rnn:32", seq_len=10, epochs=2,
                                   stream_window=window), tmp_path / "order").run()
    assert summary["test_accuracy"] > 0.9
