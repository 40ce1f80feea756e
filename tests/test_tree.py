"""Recursive (tree) nets, §5: level-by-level batching against a per-node
recursion, a path tree against the recurrent net, back-propagation through
structure against autograd, DTP's first targets against BPTS's gradient, the
list-operations data against Python's own arithmetic, and the errors of a
bracketed-tree file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from targetprop import build_network, make_rule
from targetprop.cli import main
from targetprop.core.recurrent import RecurrentNetwork
from targetprop.core.tree import DEPTH, FEATURES, LEFT, RIGHT, TreeNetwork
from targetprop.plotting.curves import _panel_title
from targetprop.running.data import load_dataset
from targetprop.running.trees import LISTOPS_TOKENS, encode_trees, listops

N, T, F_IN, WIDTH, CLASSES = 6, 5, 3, 7, 4


def _path_encoding(x: torch.Tensor) -> torch.Tensor:
    """Sequences (N, T, F) as path trees: node i, at depth i, reads x_{T−i}
    and has node i + 1 as its only (left) child; the last is a leaf."""
    n, steps, features = x.shape
    rows = torch.full((n, steps, FEATURES + features), -1.0, dtype=x.dtype)
    rows[:, :, LEFT] = torch.arange(1, steps + 1, dtype=x.dtype)
    rows[:, -1, LEFT] = -1
    rows[:, :, DEPTH] = torch.arange(steps, dtype=x.dtype)
    rows[:, :, FEATURES:] = x.flip(1)
    return rows.flatten(1)


def _tree_copy_of(rnn: RecurrentNetwork) -> TreeNetwork:
    """A tree net whose left-child maps are the Elman net's W, V, P and c."""
    tree = TreeNetwork((T, FEATURES + F_IN), WIDTH, CLASSES).double()
    with torch.no_grad():
        tree.cell.children_weight.weight[:WIDTH] = rnn.cell.recurrent.weight
        tree.cell.input.load_state_dict(rnn.cell.input.state_dict())
        tree.cell.back.weight[:WIDTH] = rnn.cell.back.weight
        tree.cell.back.bias[:WIDTH] = rnn.cell.back.bias
        tree.cell.back_input.weight[:WIDTH] = rnn.cell.back_input.weight
        tree.output.load_state_dict(rnn.output.state_dict())
    return tree


@pytest.mark.parametrize("rule_name", ["bp", "tp", "dtp", "drl", "ldrl"])
def test_a_path_tree_is_the_recurrent_net(rule_name):
    """On a path, the tree net's levels are the Elman net's steps: the same
    logits, loss, targets and forward-weight gradients (float64), though the
    recurrent net takes its own stacked code paths."""
    torch.manual_seed(0)
    rule = make_rule(rule_name)
    rnn = build_network(f"rnn:{WIDTH}", (T, F_IN), CLASSES, rule).double()
    tree = _tree_copy_of(rnn)
    x, y = torch.randn(N, T, F_IN, dtype=torch.float64), torch.randint(0, CLASSES, (N,))
    results = {}
    for name, net, inputs in (("rnn", rnn, x.flatten(1)), ("tree", tree, _path_encoding(x))):
        record = rule.record(net, inputs)
        result = rule.forward_loss(net, record, y)
        grads = torch.autograd.grad(result.loss, net.forward_parameters())
        results[name] = (record.logits, result.loss, result.targets, grads)
    (logits, loss, targets, grads), (t_logits, t_loss, t_targets, t_grads) = results["rnn"], results["tree"]
    torch.testing.assert_close(t_logits, logits)
    torch.testing.assert_close(t_loss, loss)
    if targets is not None:
        for a, b in zip(t_targets, targets):
            torch.testing.assert_close(a, b)
    recurrent, input_weight, input_bias, out_weight, out_bias = grads
    children, t_input_weight, t_input_bias, t_out_weight, t_out_bias = t_grads
    torch.testing.assert_close(children[:WIDTH], recurrent)
    assert torch.count_nonzero(children[WIDTH:]) == 0  # no right children on a path
    for a, b in ((t_input_weight, input_weight), (t_input_bias, input_bias), (t_out_weight, out_weight),
                 (t_out_bias, out_bias)):
        torch.testing.assert_close(a, b)


def _trees(n: int, depth: int, seed: int = 0):
    trees, y = listops(n, depth, np.random.default_rng(seed))
    return trees, torch.from_numpy(encode_trees(trees, LISTOPS_TOKENS)).double(), torch.from_numpy(y)


def _recursive_root(net: TreeNetwork, tree) -> torch.Tensor:
    """A tree's root state by recursion, node by node, from the cell's weights."""
    cell = net.cell
    token, children = (tree, ()) if isinstance(tree, str) else (tree[0], tree[1:])
    x = torch.zeros(len(LISTOPS_TOKENS), dtype=torch.float64)
    x[LISTOPS_TOKENS.index(token)] = 1
    pre = cell.input.weight @ x + cell.input.bias
    for side, child in enumerate(children):
        pre = pre + cell.children_weight.weight[side * WIDTH:(side + 1) * WIDTH] @ _recursive_root(net, child)
    return torch.tanh(pre)


def test_bpts_is_autograd_through_a_recursion_over_each_tree():
    """A batch of trees of different shapes, processed level by level: the
    logits and BPTS's gradients of a per-node recursion over each tree alone."""
    torch.manual_seed(1)
    trees, x, y = _trees(12, 4)
    net = build_network(f"tree:{WIDTH}", tuple(x.shape[1:]), 10, "bp").double()
    rule = make_rule("bp")
    params = net.forward_parameters()
    record = rule.record(net, x.flatten(1))
    ours = torch.autograd.grad(rule.forward_loss(net, record, y).loss, params)
    logits = torch.stack([net.output(_recursive_root(net, tree)) for tree in trees])
    torch.testing.assert_close(record.logits, logits)
    for a, b in zip(ours, torch.autograd.grad(F.cross_entropy(logits, y), params)):
        torch.testing.assert_close(a, b)


def test_dtp_targets_start_as_the_bpts_step():
    """With g's linear part the transpose of f's (as the cell starts) and the
    targets gated by tanh′, DTP's target step at every node is BPTS's
    −η ∂ℓ/∂h_n, ℓ the batch's summed loss."""
    torch.manual_seed(2)
    _, x, y = _trees(10, 4)
    rule = make_rule("dtp")
    net = build_network(f"tree:{WIDTH}", tuple(x.shape[1:]), 10, rule).double()
    x = x.flatten(1)
    record = rule.record(net, x)
    targets = rule.forward_loss(net, record, y).targets
    states = make_rule("bp").record(net, x).outputs
    descent = torch.autograd.grad(F.cross_entropy(net.read_out(states[-1]), y, reduction="sum"), states)
    assert len(targets) == len(states) == 5
    for target, h, grad in zip(targets, record.hs[1:], descent):
        torch.testing.assert_close(target - h, -rule.target_step * grad)


def _python_value(tree) -> int:
    """A list-operations tree's value by Python's own arithmetic, from its text."""
    def text(node):
        if isinstance(node, str):
            return node
        operation, *children = node
        args = ", ".join(text(c) for c in children)
        return {"MAX": f"max({args})", "MIN": f"min({args})"}[operation]
    return eval(text(tree))


def _decoded(rows: np.ndarray, i: int = 0):
    """The nested tree of an encoding's rows (the inverse of encode_trees)."""
    token = LISTOPS_TOKENS[int(np.argmax(rows[i, FEATURES:]))]
    children = [int(c) for c in rows[i, [LEFT, RIGHT]] if c >= 0]
    return token if not children else (token, *(_decoded(rows, c) for c in children))


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_listops_labels_depths_and_encoding(depth):
    trees, x, y = _trees(200, depth, seed=depth)
    assert [_python_value(t) for t in trees] == y.tolist()
    encoded = x.numpy()
    assert (encoded[:, :, DEPTH].max(axis=1) == depth).all()  # every tree has exactly that depth
    for rows, tree in zip(encoded, trees):
        assert _decoded(rows) == tree
        for i in np.flatnonzero(rows[:, DEPTH] >= 0):  # a child is one level below its parent
            for child in rows[i, [LEFT, RIGHT]]:
                assert child < 0 or rows[int(child), DEPTH] == rows[i, DEPTH] + 1


def test_listops_dataset_is_fixed_and_unstandardised():
    a, b = (load_dataset("listops", tree_depth=3, seed=s) for s in (0, 1))
    assert a.tree_shape == (a.input_shape[0], FEATURES + len(LISTOPS_TOKENS)) and a.mean is None
    torch.testing.assert_close(a.test.tensors[0], b.test.tensors[0])
    assert set(a.train.tensors[0][:, :].reshape(-1, a.tree_shape[1])[:, FEATURES:].unique().tolist()) == {0.0, 1.0}


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.trees"
    path.write_text(text)
    return str(path)


def test_a_file_of_trees_round_trips(tmp_path):
    lines = ["# classes: neg pos", *[f"{'pos' if i % 2 else 'neg'} (AND {'a' if i % 3 else 'b'} (NOT c))"
                                     for i in range(40)], "", "# a comment", "pos leaf"]
    splits = load_dataset(_write(tmp_path, "\n".join(lines)), val_size=0)
    assert splits.class_names == ("neg", "pos") and splits.num_classes == 2
    assert splits.tree_shape == (4, FEATURES + 6)  # tokens a, b, c, leaf, AND, NOT
    assert len(splits.train) + len(splits.test) == 41


@pytest.mark.parametrize("text, line, message", [
    ("1 (MAX 3 4)\n2 (MIN 3 (MAX 1 2)\n", 2, "unbalanced brackets"),
    ("1 (MAX 3 4))\n", 1, "unbalanced brackets"),
    ("# classes: 0 1\n1 (MAX 3 4)\n\n7 (MIN 1 2)\n", 4, "label '7' is none of the classes 0 1"),
    ("1 (MAX 3 4)\n0 ()\n", 2, "empty tree"),
    ("1 (MAX 3 4)\n0\n", 2, "empty tree"),
    ("1 (SUM 3 4 5)\n", 1, "node 'SUM' has 3 children; the tree cell is binary"),
])
def test_bad_tree_files_name_the_line(tmp_path, text, line, message):
    """(From the command line, with the arch and data mismatches: tests/test_faults.py.)"""
    with pytest.raises(ValueError, match=f"line {line}: .*{message}"):
        load_dataset(_write(tmp_path, text))


def test_a_malformed_tree_spec_is_named():
    with pytest.raises(ValueError, match="the form is tree:WIDTH"):
        build_network("tree:x", (4, 7), 2)


def test_a_tree_net_learns_list_operations_from_the_command_line(tmp_path):
    """dtp on depth-2 trees, a few epochs: above the commonest class, with
    angles to BPTS per depth in the metrics and their plot."""
    out = tmp_path / "run"
    assert main(["train", "--data", "listops", "--arch", "tree:32", "--rule", "dtp", "--epochs", "4",
                 "--no-progress", "--set", "tree_depth=2", "--set", "limit=3000", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    splits = load_dataset("listops", val_size=0, tree_depth=2)
    labels = splits.test.tensors[1]
    commonest = (labels == torch.bincount(splits.train.tensors[1]).argmax()).double().mean().item()
    assert summary["test_accuracy"] > commonest + 0.05, (summary["test_accuracy"], commonest)
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "angle_depth_1" in header and "angle_children" in header
    assert main(["plot", str(out)]) == 0 and (out / "angles.png").is_file()
    assert _panel_title("depth_2") == "target step 2 levels below the root"


def test_bengio2014_on_a_path_tree_is_section5_on_the_recurrent_net():
    """§5's recursive form on a path is §5's recurrent form: the same loss,
    targets, short- and long-loop feedback loss and gradients (float64; no
    corruption, so that no noise is drawn; the right-child maps zero)."""
    torch.manual_seed(3)
    rule = make_rule("bengio2014", corruption_sigma="0")
    rnn = build_network(f"rnn:{WIDTH}", (T, F_IN), CLASSES, rule).double()
    tree = build_network(f"tree:{WIDTH}", (T, FEATURES + F_IN), CLASSES, rule).double()
    assert (rnn.kind, tree.kind) == ("section5", "section5-tree")
    with torch.no_grad():
        for p in tree.parameters():
            p.zero_()
        tree.cell.children_weight.weight[:WIDTH] = rnn.cell.recurrent.weight
        tree.cell.input.load_state_dict(rnn.cell.input.state_dict())
        tree.cell.back.weight[:WIDTH] = rnn.cell.back.weight
        tree.cell.back.bias[:WIDTH] = rnn.cell.back.bias
        tree.back_code.load_state_dict(rnn.back_code.state_dict())
        tree.output.load_state_dict(rnn.output.state_dict())
    x, y = torch.randn(N, T, F_IN, dtype=torch.float64), torch.randint(0, CLASSES, (N,))
    results = {}
    for name, net, inputs in (("rnn", rnn, x.flatten(1)), ("tree", tree, _path_encoding(x))):
        record = rule.record(net, inputs)
        result = rule.forward_loss(net, record, y)
        feedback = rule.feedback_loss(net, record, result.targets)
        weights = [net.cell.input.weight, net.back_code.weight]
        results[name] = (result.loss, result.targets, feedback, torch.autograd.grad(result.loss + feedback, weights))
    (loss, targets, feedback, grads), (t_loss, t_targets, t_feedback, t_grads) = results["rnn"], results["tree"]
    torch.testing.assert_close(t_loss, loss)
    torch.testing.assert_close(t_feedback, feedback)
    for a, b in [*zip(t_targets, targets), *zip(t_grads, grads)]:
        torch.testing.assert_close(a, b)
