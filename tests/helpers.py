"""Helpers shared by the run-level tests and the rule contract."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")

from targetprop.core.recurrent import ElmanCell, GRUCell  # noqa: E402
from targetprop.core.tree import TreeCell  # noqa: E402
from targetprop.running.checkpoint import load_checkpoint  # noqa: E402
from targetprop.running.config import Config  # noqa: E402
from targetprop.running.trainer import Trainer, TrainingInterrupted  # noqa: E402

QUICK = dict(data="digits", arch="mlp:32x3", batch_size=64, forward_lr=5e-3, progress=False,
             probe_size=64)


def quick_config(**values) -> Config:
    return Config().update(QUICK | values)


def params(trainer: Trainer) -> dict:
    return {k: v.clone() for k, v in trainer.net.state_dict().items()}


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_stopping_mid_epoch_then_resuming_is_exact(config, tmp_path, stop_at: int) -> None:
    """A run stopped (as by Ctrl-C) after ``stop_at`` steps, inside an epoch,
    and resumed ends with the weights of an uninterrupted run."""
    straight = Trainer(config, tmp_path / "a")
    straight.run()
    calls = 0

    def stop(trainer):
        nonlocal calls
        calls += 1
        if calls == stop_at:
            trainer.stop_requested = True

    with pytest.raises(TrainingInterrupted, match="--resume"):
        Trainer(config, tmp_path / "b", callback=stop).run()
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert state["batch_index"] > 0  # it really stopped inside an epoch
    resumed = Trainer(config, tmp_path / "b", resume=True)
    resumed.run()
    assert_same_params(params(straight), params(resumed))


def gradient_into_layer_inputs(net, rule, x, y) -> float:
    """The gradient of one step's whole loss (forward and feedback) that
    arrives at the input of any layer's forward map f_l: zero exactly when
    no gradient crosses a layer boundary."""
    arrived = []

    def watching(position):
        def watch(module, args):
            h = args[position] if len(args) > position else None
            if h is not None and h.requires_grad:
                h.register_hook(lambda grad: arrived.append(grad.abs().sum().item()))
        return watch

    # the module that reads h_{l-1}: f_l, or a recurrent cell's W (s_{t-1} -> s_t), or its GRU (x_t, s_{t-1}),
    # or a tree cell's [W_L; W_R] (children -> parent)
    entries = [(layer.recurrent, 0) if isinstance(layer, ElmanCell) else (layer.gru, 1)
               if isinstance(layer, GRUCell) else (layer.children_weight, 0) if isinstance(layer, TreeCell)
               else (layer.f, 0) for layer in net.layers]
    handles = [entry.register_forward_pre_hook(watching(position)) for entry, position in entries]
    try:
        record = rule.record(net, x)
        result = rule.forward_loss(net, record, y)
        feedback = rule.feedback_loss(net, record, result.targets)
        (result.loss if feedback is None else result.loss + feedback).backward()
    finally:
        for handle in handles:
            handle.remove()
    return sum(arrived)


def torch_rnn_like(net) -> torch.nn.RNN:
    """torch's own RNN with a recurrent net's weights, as an independent reference:
    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh), b_hh = 0 (our cell has one bias)."""
    width, features = net.cell.input.weight.shape
    rnn = torch.nn.RNN(features, width, batch_first=True).to(net.cell.input.weight.dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(net.cell.input.weight)
        rnn.bias_ih_l0.copy_(net.cell.input.bias)
        rnn.weight_hh_l0.copy_(net.cell.recurrent.weight)
        rnn.bias_hh_l0.zero_()
    return rnn
