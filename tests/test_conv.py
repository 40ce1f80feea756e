"""Convolutional layers: the forward map against a float64 reference written
with unfold and a matrix product, the feedback map's shapes and its adjoint
form, L-DRL's feedback learning the transpose, and a whole run."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from targetprop import build_network, make_rule
from targetprop.cli import main
from targetprop.core.architectures import parse_architecture
from targetprop.core.conv import ConvLayer
from targetprop.core.diagnostics import angle_degrees
from targetprop.core.feedback import local_difference_reconstruction_loss


def parse_conv_spec(spec: str) -> list[tuple[int, bool]]:
    return parse_architecture(spec).arguments["entries"]


def reference_block(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool) -> torch.Tensor:
    """tanh(W ∗ x + b) as patches × weights, then the max of each 2×2 window
    (windows that do not fit are dropped, as max_pool2d does)."""
    b, c, h, w = x.shape
    patches = F.unfold(x, 3, padding=1)  # (B, C·9, H·W)
    out = torch.tanh((weight.reshape(len(weight), -1) @ patches + bias[:, None]).reshape(b, -1, h, w))
    if pool:
        out = out[:, :, : h // 2 * 2, : w // 2 * 2]
        out = out.reshape(b, -1, h // 2, 2, w // 2, 2).amax(dim=(3, 5))
    return out


@pytest.mark.parametrize("size", [(7, 6), (8, 8)])
@pytest.mark.parametrize("pool", [True, False])
def test_forward_map_matches_reference(size, pool):
    torch.manual_seed(0)
    layer = ConvLayer((3, *size), 5, pool, "tanh").double()
    x = torch.randn(4, 3, *size, dtype=torch.float64)
    conv = layer.f[0]
    torch.testing.assert_close(layer(x), reference_block(x, conv.weight, conv.bias, pool))
    assert layer(x).shape[1:] == layer.out_shape


@pytest.mark.parametrize("size", [(7, 6), (8, 8), (5, 5)])
@pytest.mark.parametrize("pool", [True, False])
def test_feedback_map_returns_the_input_shape(size, pool):
    layer = ConvLayer((3, *size), 5, pool, "relu")
    assert layer.feedback(torch.randn(2, *layer.out_shape)).shape == (2, 3, *size)


def test_feedback_map_has_the_shape_of_the_transpose():
    """With V = W (and no bias), g is the exact adjoint of the convolution:
    ⟨W ∗ x, y⟩ = ⟨x, g(y)⟩, so J_g = J_fᵀ is reachable (L-DRL's condition)."""
    torch.manual_seed(0)
    layer = ConvLayer((3, 6, 5), 4, False, "linear").double()
    conv, transpose = layer.f[0], layer.g[0]
    with torch.no_grad():
        transpose.weight.copy_(conv.weight)
        transpose.bias.zero_()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    y = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    linear_part = layer(x) - conv.bias[:, None, None]
    torch.testing.assert_close((linear_part * y).sum(), (x * layer.feedback(y)).sum())


def test_ldrl_feedback_learns_the_transpose():
    torch.manual_seed(0)
    layer = ConvLayer((3, 6, 6), 4, False, "linear")
    optimizer = torch.optim.Adam(layer.feedback_parameters(), lr=1e-2)
    h_below = torch.randn(64, 3, 6, 6)
    h = layer(h_below).detach()
    start = angle_degrees(layer.g[0].weight, layer.f[0].weight)
    for _ in range(300):
        optimizer.zero_grad()
        local_difference_reconstruction_loss(layer, h_below, h, 0.1).backward()
        optimizer.step()
    end = angle_degrees(layer.g[0].weight, layer.f[0].weight)
    assert start > 60 and end < 10, (start, end)


def test_gating_reads_the_units_not_the_pool():
    layer = ConvLayer((1, 4, 4), 2, True, "relu")
    assert isinstance(layer.activation, torch.nn.ReLU) and isinstance(layer.f[-1], torch.nn.MaxPool2d)


@pytest.mark.parametrize("rule", ["bp", "tp", "dtp", "drl", "ldrl"])
def test_every_chain_rule_builds_conv_nets(rule):
    net = build_network("cnn:4-8", (3, 8, 8), 10, make_rule(rule))
    assert net(torch.randn(2, 3 * 64)).shape == (2, 10)
    assert len(net.layers) == 2 and net.layers[0].g is None and net.layers[1].g is not None
    if rule != "bp":  # the family's default feedback_map=linear
        assert isinstance(net.layers[1].g[-1], torch.nn.Identity)


def test_specs_and_their_errors():
    assert parse_conv_spec("cnn:32-64n-128") == [(32, True), (64, False), (128, True)]
    assert parse_conv_spec("simple-vgg") == [(128, False), (128, True), (256, False), (256, True), (512, True)]
    for bad in ("cnn:", "cnn:3x3", "cnn:0-4", "cnn:4-p"):
        with pytest.raises(ValueError, match="cnn:C1-C2"):
            parse_conv_spec(bad)
    with pytest.raises(ValueError, match="fewer pooled entries"):
        build_network("cnn:4-4-4-4", (8, 8), 10)
    with pytest.raises(ValueError, match="need images"):
        build_network("cnn:4", 40, 10)
    with pytest.raises(ValueError, match="trains conditional.*mlp:.*cnn:4 is none of them"):
        build_network("cnn:4", (8, 8), 10, make_rule("bengio2014"))


def test_conv_run_on_flat_data_is_an_error_exit(tmp_path, capsys):
    pytest.importorskip("mnist1d")
    assert main(["train", "--data", "mnist1d", "--arch", "cnn:8", "--out", str(tmp_path / "r")]) == 2
    assert "need images" in capsys.readouterr().err


def test_dtp_trains_a_conv_net(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--rule", "dtp", "--arch", "cnn:16-32", "--epochs", "5",
                 "--no-progress", "--set", "threads=1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.75
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert "angle_2" in metrics[0] and "recon_2" in metrics[0]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["simple-vgg", "resnet20"])
@pytest.mark.parametrize("rule", ["bp", "tp", "dtp", "drl", "ldrl"])
def test_presets_train_end_to_end_on_cifar_shaped_data(tmp_path, rule, arch):
    """The VGG-like preset and ResNet-20 on generated 3×32×32 images in a
    .npz file, with augmentation: two steps, an evaluation and the
    diagnostics, every rule."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cifar-like.npz", x=rng.integers(0, 256, (80, 3, 32, 32), dtype=np.uint8),
             y=np.arange(80) % 10)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "cifar-like.npz"), "--rule", rule, "--arch", arch,
                 "--epochs", "1", "--batch-size", "16", "--no-progress", "--set", "limit=32",
                 "--set", "val_size=16", "--set", "probe_size=16", "--set", "augment=crop-flip",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["completed"] and summary["arch"] == arch and 0 <= summary["test_accuracy"] <= 1
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "angle_2" in header and (rule == "bp" or "recon_2" in header)
