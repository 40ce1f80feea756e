"""The contract every registered rule honours (the pattern of torch's optim_db).

Each case runs on every rule in ``targetprop.RULES`` with its default
settings. A rule leaves a case out only by naming it, with the reason, in
its own ``contract_exemptions``; nothing here skips a rule by name.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")  # the short runs train on scikit-learn's digits

from helpers import (assert_stopping_mid_epoch_then_resuming_is_exact, gradient_into_layer_inputs,  # noqa: E402
                     quick_config)
from targetprop import RULES, Learner, build_network, make_rule  # noqa: E402
from targetprop.core.architectures import parse_architecture  # noqa: E402
from targetprop.registry import network_kind  # noqa: E402
from targetprop.core.networks import ChainNetwork, Network, flat_features  # noqa: E402
from targetprop.core.rule import ForwardRecord, Record  # noqa: E402
from targetprop.core.tree import FEATURES  # noqa: E402
from targetprop.running.trees import LISTOPS_TOKENS, encode_trees, listops  # noqa: E402
from targetprop.running.checkpoint import load_checkpoint  # noqa: E402
from targetprop.running.optim import make_optimizer  # noqa: E402
from targetprop.running.trainer import Trainer, TrainingDiverged  # noqa: E402

CASES = ("step", "feedback", "targets", "locality", "float64", "state_dict", "run", "resume", "nan")


def contract(case: str) -> list:
    """Every registered rule, each one exempt from ``case`` marked skipped with its reason."""
    params = []
    for name, recipe in RULES.items():
        reason = recipe.cls.contract_exemptions.get(case)
        marks = [pytest.mark.skip(reason=f"{name}: {reason}")] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def test_exemptions_name_real_cases_and_give_reasons():
    for name, recipe in RULES.items():
        for case, reason in recipe.cls.contract_exemptions.items():
            assert case in CASES and len(reason) > 10, (name, case)


TREE_SHAPE = (15, FEATURES + len(LISTOPS_TOKENS))  # list-operations trees of depth 3: at most 15 nodes

# The layer kinds every case below runs on: (arch, input features or image or sequence shape, the kinds of
# network it builds); "wrapped" is a user's plain nn.Sequential with batch norms and pooling, "wrapped-mlp" a
# fully connected one with a norm after its activation, "resnet" residual blocks with batch norms
MODELS = Path(__file__).parent / "user_models.py"
NETWORKS = {"mlp": ("mlp:12x3", 8, ("chain", "direct", "fixed", "dual", "conditional", "stack")),
            "cnn": ("cnn:4-6n-5", (2, 6, 6), ("chain", "direct", "fixed")),
            "rnn": ("rnn:6", (5, 3), ("recurrent", "section5")), "gru": ("gru:6", (5, 3), ("recurrent",)),
            "tree": ("tree:6", TREE_SHAPE, ("tree", "section5-tree")),
            "wrapped": (f"{MODELS}:norm_conv", (2, 6, 6), ("chain", "direct", "fixed")),
            "wrapped-mlp": (f"{MODELS}:norm_mlp", (8,), ("chain", "direct", "fixed", "conditional")),
            "resnet": ("resnet8", (1, 6, 6), ("chain", "direct", "fixed"))}
KINDS = pytest.mark.parametrize("kind", list(NETWORKS))


def build(rule: str, kind: str = "mlp"):
    """The network of ``kind`` for ``rule``; skipped where none of the kinds
    of network the rule declares it trains is one this architecture builds."""
    arch, inputs, builds = NETWORKS[kind]
    declared = make_rule(rule)
    if not set(declared.network_kinds) & set(builds):
        pytest.skip(f"{rule} trains {', '.join(declared.network_kinds)} networks; {arch} builds {', '.join(builds)}")
    net = build_network(arch, inputs, 3, declared)
    assert net.kind in builds and network_kind(declared, parse_architecture(arch)) == net.kind
    return net


def small_problem(rule: str, seed: int = 0, dtype=torch.float32, kind: str = "mlp"):
    torch.manual_seed(seed)
    net = build(rule, kind).to(dtype)
    if kind == "tree":  # an encoding of trees, not any vector, is a tree net's input
        trees, _ = listops(32, 3, np.random.default_rng(seed))
        x = torch.from_numpy(encode_trees(trees, LISTOPS_TOKENS, TREE_SHAPE[0])).flatten(1).to(dtype)
    else:
        x = torch.randn(32, flat_features(NETWORKS[kind][1]), dtype=dtype)
    y = torch.randint(0, 3, (32,))
    return net, x, y


def make_learner(net, rule_name: str, iterations: int = 1, lr: float = 1e-2) -> Learner:
    rule = make_rule(rule_name)
    feedback = make_optimizer("adam", net.feedback_parameters(), lr) if rule.uses_feedback else None
    return Learner(net, rule, make_optimizer("adam", net.forward_parameters(), lr), feedback, iterations)


def changed(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, after))


@KINDS
@pytest.mark.parametrize("rule_name", contract("step"))
def test_one_step_moves_the_forward_and_feedback_weights(rule_name, kind):
    net, x, y = small_problem(rule_name, kind=kind)
    learner = make_learner(net, rule_name)
    assert isinstance(net, Network) and isinstance(learner.rule.record(net, x), Record)
    if net.kind in ("chain", "recurrent", "tree"):
        assert isinstance(net, ChainNetwork)
    forward = [p.detach().clone() for p in net.forward_parameters()]
    feedback = [p.detach().clone() for p in net.feedback_parameters()]
    result = learner.train_step(x, y)
    assert torch.isfinite(result.output_loss)
    assert all(torch.isfinite(total).all() for total, _ in result.scores.values())
    assert changed(forward, [p.detach() for p in net.forward_parameters()])
    if learner.rule.uses_feedback:
        assert changed(feedback, [p.detach() for p in net.feedback_parameters()])


@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("rule_name", contract("feedback"))
def test_feedback_iterations(rule_name, iterations):
    """k feedback steps per batch: k − 1 feedback-only steps, then the joint step."""
    net, x, y = small_problem(rule_name)
    learner = make_learner(net, rule_name, iterations)
    for _ in range(2):
        result = learner.train_step(x, y)
    assert result.feedback_loss is not None and torch.isfinite(result.feedback_loss)
    steps = {int(s["step"]) for s in learner.feedback_optimizer.state.values()}
    assert max(steps) == 2 * iterations


@KINDS
@pytest.mark.parametrize("rule_name", contract("targets"))
def test_targets_lower_each_local_loss(rule_name, kind):
    """A small step on Σ_l ½‖f_l(h_{l-1}) − ĥ_l‖² lowers every layer's term
    (their sum, where the layers are time steps sharing one set of weights);
    in float64, where a term near zero is not lost in rounding."""
    net, x, y = small_problem(rule_name, dtype=torch.float64, kind=kind)
    rule = make_rule(rule_name)
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    layers = record.layers if isinstance(record, ForwardRecord) else net.layers  # a chain's, unrolled
    assert targets is not None and len(targets) == len(layers)

    def local_losses():
        return [0.5 * (layer(h_below) - t).pow(2).sum() / len(x)
                for layer, (h_below, _), t in zip(layers, record.pairs(), targets)]

    before = local_losses()
    optimizer = torch.optim.SGD(list(dict.fromkeys(p for layer in layers for p in layer.forward_parameters())),
                                lr=1e-3)
    sum(before).backward()
    optimizer.step()
    before, after = [b.item() for b in before], [a.item() for a in local_losses()]
    if kind in ("rnn", "gru", "tree"):
        before, after = [sum(before)], [sum(after)]
    assert all(a < b for a, b in zip(after, before)), (before, after)


@KINDS
@pytest.mark.parametrize("rule_name", contract("locality"))
def test_locality_holds_where_the_rule_claims_it(rule_name, kind):
    """A rule that claims locality sends no gradient across a layer boundary;
    one that does not (back-prop) does, which shows the check can fail."""
    net, x, y = small_problem(rule_name, kind=kind)
    rule = make_rule(rule_name)
    crossing = gradient_into_layer_inputs(net, rule, x, y)
    assert (crossing == 0) == rule.local, crossing


def test_locality_check_sees_hybrid_credit_assignment():
    net, x, y = small_problem("bengio2014")
    for mode, local in (("strict", True), ("hybrid", False)):
        rule = make_rule("bengio2014", credit_assignment=mode)
        assert rule.local == local
        assert (gradient_into_layer_inputs(net, rule, x, y) == 0) == local


@KINDS
@pytest.mark.parametrize("rule_name", contract("float64"))
def test_float32_agrees_with_float64(rule_name, kind):
    """The same step's gradients in float32 and float64 (noise is drawn in
    float32 and cast, so both see the same sample)."""
    grads = {}
    for dtype in (torch.float32, torch.float64):
        net, x, y = small_problem(rule_name, kind=kind)
        net, x = net.to(dtype), x.to(dtype)
        rule = make_rule(rule_name)
        torch.manual_seed(5)
        record = rule.record(net, x)
        params = list(net.parameters())
        losses = [rule.feedback_loss(net, record), rule.forward_loss(net, record, y).loss]
        grads[dtype] = [torch.zeros_like(p, dtype=torch.float64) if g is None else g.double()
                        for loss in losses if loss is not None
                        for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True,
                                                                    retain_graph=True))]
    scale = max(1.0, *(b.abs().max().item() for b in grads[torch.float64]))  # float32 rounding grows with it
    for a, b in zip(grads[torch.float32], grads[torch.float64]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5 * scale)


@KINDS
@pytest.mark.parametrize("rule_name", contract("state_dict"))
def test_state_dict_round_trip(rule_name, kind):
    net, x, y = small_problem(rule_name, kind=kind)
    learner = make_learner(net, rule_name)
    for _ in range(3):
        learner.train_step(x, y)
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    buffer.seek(0)
    clone = make_learner(build(rule_name, kind), rule_name)  # fresh
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    for target in (learner, clone):
        torch.manual_seed(9)
        for _ in range(2):
            target.train_step(x, y)
    for a, b in zip(learner.net.state_dict().values(), clone.net.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("rule_name", contract("run"))
def test_a_short_run_reports_finite_scores(rule_name, tmp_path):
    summary = Trainer(quick_config(rule=rule_name, epochs=1, limit=400), tmp_path / "run").run()
    assert summary["completed"] and summary["epochs"] == 1
    scores = [v for k, v in summary.items() if k.startswith("test_") and v is not None]
    assert scores and all(math.isfinite(v) for v in scores)


@pytest.mark.parametrize("rule_name", contract("resume"))
def test_resume_equals_an_uninterrupted_run(rule_name, tmp_path):
    config = quick_config(rule=rule_name, epochs=2, limit=400)
    assert_stopping_mid_epoch_then_resuming_is_exact(config, tmp_path, stop_at=8)


@pytest.mark.parametrize("rule_name", contract("nan"))
def test_a_nan_stops_the_run_and_keeps_the_last_good_checkpoint(rule_name, tmp_path):
    config = quick_config(rule=rule_name, epochs=3, limit=400)

    def poison_in_epoch_2(trainer):
        if trainer.epoch == 2 and trainer.batch_index == 2:
            with torch.no_grad():
                trainer.net.layers[0].forward_parameters()[0].fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="is not finite.*at epoch 2.*checkpoint of epoch 1 is kept"):
        Trainer(config, tmp_path / "run", callback=poison_in_epoch_2).run()
    assert "not finite" in json.loads((tmp_path / "run" / "summary.json").read_text())["diverged"]
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 2 and state["batch_index"] == 0
    assert all(torch.isfinite(v).all() for v in state["learner"]["net"].values() if v.is_floating_point())

