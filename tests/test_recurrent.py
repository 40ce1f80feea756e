"""Recurrent nets unrolled as chains of time steps (core/recurrent.py), each
against an independent reference: torch.nn.RNN for the forward pass and
BPTT, a closed form for the targets that DTP carries back through time."""
from __future__ import annotations

import pytest
import torch

from targetprop.core.learner import Learner
from targetprop.core.recurrent import RecurrentNetwork
from targetprop.registry import build_network, make_rule
from targetprop.running.config import ConfigError
from targetprop.running.setup import validate_config
from targetprop.running.trainer import Trainer

from helpers import quick_config, torch_rnn_like

T, F, WIDTH, N = 7, 3, 5, 16


def _net(seed: int = 0, activation: str = "tanh", outputs: int = 4, every_state: bool = False) -> RecurrentNetwork:
    torch.manual_seed(seed)
    return RecurrentNetwork((T, F), WIDTH, outputs, activation, every_state=every_state).double()


def _batch(seed: int = 1, per_step: bool = False):
    """x and labels; ``per_step``: a label for every step, −1 (no target) at about a third of them."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N, T * F, generator=generator, dtype=torch.float64)
    if not per_step:
        return x, torch.randint(0, 4, (N,), generator=generator)
    y = torch.randint(0, 4, (N, T), generator=generator)
    return x, y.masked_fill(torch.rand(N, T, generator=generator) < 0.3, -1)


def test_forward_pass_is_torchs_rnn():
    net, (x, _) = _net(), _batch()
    states, last = torch_rnn_like(net)(x.view(N, T, F))
    torch.testing.assert_close(net(x), net.output(last[0]))
    record = make_rule("dtp").record(net, x)  # the unrolled chain records every state
    torch.testing.assert_close(torch.stack(record.hs[1:], 1), states)


@pytest.mark.parametrize("truncation", [0, 3])
def test_bp_is_backpropagation_through_time(truncation):
    """bp's step on the unrolled chain is autograd's BPTT through torch.nn.RNN
    (truncated: the RNN restarted K steps from the end from the detached state)."""
    net, (x, y) = _net(), _batch()
    rnn = torch_rnn_like(net)
    sequence = x.view(N, T, F)
    if truncation:
        with torch.no_grad():
            _, start = rnn(sequence[:, :T - truncation])
        _, last = rnn(sequence[:, T - truncation:], start)
    else:
        _, last = rnn(sequence)
    loss = torch.nn.functional.cross_entropy(net.output(last[0]), y)
    expected = torch.autograd.grad(loss, [rnn.weight_hh_l0, rnn.weight_ih_l0, rnn.bias_ih_l0])

    rule = make_rule("bp", truncation=truncation)
    rule.check_network(net)
    result = rule.forward_loss(net, rule.record(net, x), y)
    cell = net.cell
    got = torch.autograd.grad(result.loss, [cell.recurrent.weight, cell.input.weight, cell.input.bias])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_a_read_out_on_every_state_is_torchs_rnn_and_bp_its_bptt():
    """Logits at every step from torch.nn.RNN's states; bp's step is
    autograd's gradient of the cross-entropy over the labelled steps."""
    net, (x, y) = _net(every_state=True), _batch(per_step=True)
    rnn = torch_rnn_like(net)
    states, _ = rnn(x.view(N, T, F))
    logits = net.output(states)
    torch.testing.assert_close(net(x), logits)
    labelled = y >= 0
    loss = torch.nn.functional.cross_entropy(logits[labelled], y[labelled])
    expected = torch.autograd.grad(loss, [rnn.weight_hh_l0, rnn.weight_ih_l0, rnn.bias_ih_l0])
    rule = make_rule("bp")
    result = rule.forward_loss(net, rule.record(net, x), y)
    torch.testing.assert_close(result.loss, loss)
    cell = net.cell
    got = torch.autograd.grad(result.loss, [cell.recurrent.weight, cell.input.weight, cell.input.bias])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    scores = rule.evaluate(net, x, y)
    assert int(scores["acc"][1]) == int(labelled.sum())  # accuracy over the labelled steps only


@pytest.mark.parametrize("rule_name", ["dtp", "drl"])
def test_targets_for_every_state_are_bptts_steps_where_v_is_w_transposed(rule_name):
    """At the start V = Wᵀ: gated difference targets with a target at every
    step are ŝ_t − s_t = −η ∂L/∂s_t, L the summed loss of all steps and
    ∂L/∂s_t BPTT's total derivative (torch.nn.RNN, autograd)."""
    net, (x, y) = _net(every_state=True), _batch(per_step=True)
    cell = torch_rnn_like(net)  # its weights, stepped by hand: ∂L/∂s_t through every later step
    s, states = torch.zeros(N, WIDTH, dtype=torch.float64), []
    for x_t in x.view(N, T, F).unbind(1):
        s = torch.tanh(x_t @ cell.weight_ih_l0.T + cell.bias_ih_l0 + s @ cell.weight_hh_l0.T)
        states.append(s)
    logits = net.output(torch.stack(states, 1))
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum")
    descent = torch.autograd.grad(loss, states)
    rule = make_rule(rule_name, target_step=0.1)
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    for t in range(T):
        torch.testing.assert_close(targets[t] - record.hs[t + 1], -0.1 * descent[t])


def test_tp_gives_every_state_its_own_step_on_top_of_gs_reconstruction():
    """Vanilla TP through time with a target at every step:
    ŝ_{t−1} = g(ŝ_t) + (−η ∂ℓ_{t−1}/∂s_{t−1})."""
    net, (x, y) = _net(every_state=True), _batch(per_step=True)
    rule = make_rule("tp", target_step=0.1, target_gating="none")
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    logits = net.output(record.top)  # (T, N, outputs): each step's own loss ℓ_t
    own = torch.autograd.grad(torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), y.T.flatten(), ignore_index=-1, reduction="sum"), record.top)[0]
    steps = net.unrolled(x)
    for t in range(T - 1, 0, -1):  # targets[t] is ŝ_{t+1}; step t + 1's g reconstructs s_t
        expected = steps[t].feedback(targets[t]) - 0.1 * own[t - 1]
        torch.testing.assert_close(targets[t - 1], expected.detach())


def test_a_target_per_step_needs_a_recurrent_net_and_a_rule_that_reads_every_state(tmp_path):
    for arch, rule, message, settings in [("mlp:8", "bp", "recurrent", {}),
                                          ("rnn:8", "bengio2014", "last state", {}),
                                          ("rnn:8", "bp", "truncation=0", {"truncation": 3})]:
        with pytest.raises(ConfigError, match=message):
            Trainer(quick_config(data="copy", seq_len=12, arch=arch, rule=rule, **settings), tmp_path / rule).run()
        assert not (tmp_path / rule / "checkpoint.pt").exists()


def test_truncation_needs_a_recurrent_net():
    net = build_network("mlp:8x2", 6, 3, make_rule("bp"))
    with pytest.raises(ValueError, match="recurrent"):
        make_rule("bp", truncation=2).check_network(net)


def test_dtp_targets_through_time_follow_the_closed_form():
    """Linear units and an affine g: the differences ŝ_t − s_t that DTP
    carries down are V^(T−t) (ŝ_T − s_T), V the backward map's matrix."""
    net, (x, y) = _net(activation="linear"), _batch()
    rule = make_rule("dtp", target_gating="none")
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    top = targets[-1] - record.hs[-1]
    V = net.cell.back.weight.detach()
    for t in range(1, T + 1):  # targets[t − 1] is ŝ_t
        expected = top @ torch.linalg.matrix_power(V, T - t).T
        torch.testing.assert_close(targets[t - 1] - record.hs[t], expected)


def test_feedback_map_reads_its_step_input_for_stacked_batches():
    net, (x, _) = _net(), _batch()
    step = net.unrolled(x)[3]
    s = torch.randn(N, WIDTH, dtype=torch.float64)
    both = step.feedback(torch.cat([s, 2 * s]))
    torch.testing.assert_close(both, torch.cat([step.feedback(s), step.feedback(2 * s)]))
    assert net.unrolled(x)[0].g is None  # x needs no target


def test_dtp_learns_the_weights_of_every_step_together():
    """The feedback step moves V (and P) and the forward step W and U, once
    per batch however many steps share them."""
    net, (x, y) = _net(), _batch()
    rule = make_rule("dtp")
    forward = torch.optim.SGD(net.forward_parameters(), 0.1)
    feedback = torch.optim.SGD(net.feedback_parameters(), 0.1)
    assert len({id(p) for p in net.forward_parameters()}) == len(net.forward_parameters()) == 5
    before = [p.detach().clone() for p in net.parameters()]
    Learner(net, rule, forward, feedback, 1).train_step(x, y)
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_a_recurrent_net_needs_sequences():
    with pytest.raises(ValueError, match="sequences"):
        build_network("rnn:8", 12, 3, make_rule("dtp"))
    with pytest.raises(ValueError, match="rnn:WIDTH"):
        build_network("rnn:big", (4, 3), 3, make_rule("dtp"))


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["bp", "dtp"])
def test_bptt_and_tptt_learn_short_dependencies(tmp_path, rule):
    """T = 10, two epochs: the order of two symbols, and the sum of two marked
    values well past the baselines (chance 1/4; predicting 1 everywhere solves
    36 % of the adding sequences at a squared error of 1/6); and T = 12 with a
    target at every step, the copy problem."""
    order = Trainer(quick_config(data="temporal-order", rule=rule, arch="rnn:32", seq_len=10, epochs=2),
                    tmp_path / "order").run()
    assert order["test_accuracy"] > 0.9
    adding = Trainer(quick_config(data="adding", rule=rule, arch="rnn:32", seq_len=10, epochs=2),
                     tmp_path / "adding").run()
    assert adding["test_solved"] > 0.6 and adding["test_loss"] < 1 / 12
    copied = Trainer(quick_config(data="copy", rule=rule, arch="rnn:32", seq_len=12, epochs=2),
                     tmp_path / "copy").run()
    assert copied["test_accuracy"] > 0.4  # 5 symbols of 8 recalled at the last steps (chance 1/8)


def test_he_init_is_refused_for_a_recurrent_net():
    with pytest.raises(ConfigError, match="orthogonal"):
        validate_config(quick_config(data="adding", arch="rnn:8", init="he"))


@pytest.mark.parametrize("rule_name", ["dtp", "drl", "ldrl"])
def test_stacked_steps_give_the_sum_of_the_steps_feedback_losses(rule_name):
    """The feedback loss over the steps stacked into one batch equals the sum
    of the per-step losses, step by step with the same (shared) noise."""
    from targetprop.core.noise import SharedNoise

    net, (x, y) = _net(), _batch()
    rule = make_rule(rule_name)
    record = rule.record(net, x)
    torch.manual_seed(3)
    stacked = rule.feedback_loss(net, record)
    torch.manual_seed(3)
    noise = SharedNoise()
    steps = [rule.feedback_objective(layer, record.hs[l], record.hs[l + 1], rule.feedback_noise,
                                     rule.feedback_reg, noise)
             for l, layer in enumerate(record.layers) if layer.g is not None]
    assert len(steps) == T - 1
    torch.testing.assert_close(stacked, torch.stack(steps).sum())


def test_gru_net_is_torchs_gru_and_bp_is_its_bptt():
    torch.manual_seed(0)
    net = RecurrentNetwork((T, F), WIDTH, 4, cell="gru").double()
    x, y = _batch()
    gru = torch.nn.GRU(F, WIDTH, batch_first=True).double()
    cell = net.cell.gru
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(gru, f"{name}_l0").copy_(getattr(cell, name))
    _, last = gru(x.view(N, T, F))
    torch.testing.assert_close(net(x), net.output(last[0]))
    loss = torch.nn.functional.cross_entropy(net.output(last[0]), y)
    expected = torch.autograd.grad(loss, [gru.weight_hh_l0, gru.weight_ih_l0])
    rule = make_rule("bp")
    got = torch.autograd.grad(rule.forward_loss(net, rule.record(net, x), y).loss, [cell.weight_hh, cell.weight_ih])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="gru"):
        RecurrentNetwork((T, F), WIDTH, 4, activation="relu", cell="gru")


@pytest.mark.parametrize("rule_name, same_as", [("dtp", "all"), ("drl", "all"), ("ldrl", "none")])
def test_auto_gating_gates_the_steps_where_g_learns_an_inverse(rule_name, same_as):
    net, (x, y) = _net(), _batch()
    other = "all" if same_as == "none" else "none"
    targets = {}
    for gating in ("auto", same_as, other):
        rule = make_rule(rule_name, target_gating=gating)
        targets[gating] = rule.forward_loss(net, rule.record(net, x), y).targets
    for a, b in zip(targets["auto"], targets[same_as]):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(targets["auto"][0], targets[other][0])  # the choice matters here


def test_the_delta_rule_is_refused_for_a_recurrent_net():
    with pytest.raises(ConfigError, match="local_update=autograd"):
        validate_config(quick_config(data="adding", arch="rnn:8", local_update="delta"))


@pytest.mark.parametrize("every_state", [False, True])
def test_angles_per_time_step_are_zero_where_gated_targets_are_bptt(every_state):
    """At the start V = Wᵀ, so gated difference targets carry ŝ_{t−1} − s_{t−1}
    = Wᵀ(act′ ⊙ (ŝ_t − s_t)): BPTT's recursion, every lag at 0° (float64),
    with a target at the last step or at every step; L-DRL's ungated steps
    are not, which shows the angle can tell."""
    net, (x, y) = _net(every_state=every_state), _batch(per_step=every_state)
    dtp = make_rule("dtp").diagnostics(net, x, y)
    assert {f"angle_lag_{k}" for k in (1, 3)} <= dtp.keys() and "angle_lag_10" not in dtp  # T = 7
    assert all(value < 1e-5 for key, value in dtp.items() if key.startswith("angle_lag_"))
    assert make_rule("ldrl", target_gating="none").diagnostics(net, x, y)["angle_lag_3"] > 1


def test_an_angle_per_time_step_is_left_out_where_bptt_has_no_gradient():
    """W = 0: no state depends on the one before, BPTT's gradient k steps
    back is exactly zero, and its angle is left out (not a NaN, which the
    divergence guard would stop the run for)."""
    net, (x, y) = _net(), _batch()
    with torch.no_grad():
        net.cell.recurrent.weight.zero_()
    diagnostics = make_rule("dtp").diagnostics(net, x, y)
    assert not any(key.startswith("angle_lag_") for key in diagnostics)
    assert all(value == value for value in diagnostics.values())


@pytest.mark.parametrize("flush", [True, False])
def test_a_run_counts_subnormal_floats_as_zero_unless_told_not_to(tmp_path, flush):
    """flush_denormal: BPTT's vanishing gradients are subnormal at long T,
    and subnormal arithmetic is slow on CPUs (recurrent_memory.py)."""
    try:
        Trainer(quick_config(data="adding", arch="rnn:4", seq_len=5, flush_denormal=flush), tmp_path / "run")
        tiny = torch.tensor([1e-39]) * torch.tensor([1.0])
        assert (tiny.item() == 0.0) == flush
    finally:
        torch.set_flush_denormal(False)  # torch's own default, for the tests that follow


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_local_pass_is_the_loop_of_steps_on_detached_inputs(kind):
    """All steps' outputs in one call of the cell: the states and outputs of
    a loop of ``layer(h.detach())`` over the unrolled steps, and the same
    gradients into the cell (float64)."""
    torch.manual_seed(0)
    net = RecurrentNetwork((T, F), WIDTH, 4, cell=kind).double()
    x, _ = _batch()
    weights = torch.randn(T, N, WIDTH, dtype=torch.float64)
    record = net.local_pass(x)
    layers, states, outputs = record.layers, record.states, record.stacked_outputs
    assert not states.requires_grad and len(layers) == T
    h, loop = x, []
    for layer in net.unrolled(x):
        loop.append(layer(h.detach()))
        h = loop[-1]
    torch.testing.assert_close(states, torch.stack(loop).detach())
    torch.testing.assert_close(outputs.view(T, N, WIDTH), torch.stack(loop))
    params = net.cell.forward_parameters()
    got = torch.autograd.grad((outputs.view(T, N, WIDTH) * weights).sum(), params)
    want = torch.autograd.grad((torch.stack(loop) * weights).sum(), params)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_the_input_reading_inverse_of_manchev_and_spratling():
    """feedback_map=activation: g(s_t) = tanh(V s_t + U x_t + c), U the forward
    input weights; DTP's targets are then ŝ_{t−1} = s_{t−1} + g(ŝ_t) − g(s_t)
    written out step by step (no gating), and g's objective trains V and c
    only, never U."""
    rule = make_rule("dtp", feedback_map="activation")
    torch.manual_seed(0)
    net = build_network(f"rnn:{WIDTH}", (T, F), 4, rule).double()
    x, y = _batch()
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    cell, steps = net.cell, x.view(N, T, F).transpose(0, 1)
    U, V, c = cell.input.weight, cell.back.weight, cell.back.bias

    def g(s, x_t):
        return torch.tanh(s @ V.T + x_t @ U.T + c)

    with torch.no_grad():
        expected = [targets[-1]]
        for t in range(T - 1, 0, -1):  # the target of s_t (index t − 1) from that of s_{t+1}
            expected.append(record.hs[t] + g(expected[-1], steps[t]) - g(record.hs[t + 1], steps[t]))
    for a, b in zip(targets, expected[::-1]):
        torch.testing.assert_close(a, b)
    assert cell.back_input is None and set(map(id, net.feedback_parameters())) == {id(V), id(c)}
    rule.feedback_loss(net, record).backward()
    assert U.grad is None and V.grad is not None


def test_local_losses_averaged_over_units_are_the_mean_squared_error():
    """loss_average=units: the local loss is Σ_t mean over units and
    examples of (f(s_{t−1}, x_t) − ŝ_t)², as Manchev and Spratling take it;
    σ = 0 is DTP's noisy reconstruction without noise (no other objective takes it)."""
    rule = make_rule("dtp", loss_average="units", feedback_noise=0.0)
    torch.manual_seed(0)
    net = build_network(f"rnn:{WIDTH}", (T, F), 4, rule).double()
    x, y = _batch()
    record = rule.record(net, x)
    result = rule.forward_loss(net, record, y)
    cell_weights = net.cell.forward_parameters()
    ours = torch.autograd.grad(result.loss, cell_weights, retain_graph=True)
    mse = sum(((out - t) ** 2).mean() for out, t in zip(record.outputs, result.targets))
    for a, b in zip(ours, torch.autograd.grad(mse, cell_weights)):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="must be > 0"):
        make_rule("drl", feedback_noise=0.0)
    with pytest.raises(ValueError, match="feedback_map=linear"):
        build_network(f"gru:{WIDTH}", (T, F), 4, make_rule("dtp", feedback_map="activation"))


def test_orthogonal_start_of_manchev_and_spratling(tmp_path):
    """init=orthogonal: W, U, V and the read-out (semi-)orthogonal, V not Wᵀ; refused for a chain."""
    torch.manual_seed(0)
    config = quick_config(data="adding", arch=f"rnn:{WIDTH}", seq_len=T, init="orthogonal")
    net = Trainer(config, tmp_path / "rnn").net
    cell = net.cell
    for weight in (cell.recurrent.weight, cell.input.weight, cell.back.weight, net.output.weight):
        small = min(weight.shape)
        gram = weight @ weight.T if weight.shape[0] == small else weight.T @ weight
        torch.testing.assert_close(gram, torch.eye(small), atol=1e-5, rtol=0)
    assert not torch.allclose(cell.back.weight, cell.recurrent.weight.T)
    with pytest.raises(ConfigError, match="init=orthogonal"):
        Trainer(quick_config(init="orthogonal"), tmp_path / "mlp")
