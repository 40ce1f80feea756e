"""``wrap``: an ordinary PyTorch model as a target-propagation chain.

An ``nn.Sequential`` (nested ones are read through) is cut into blocks, the
layers of target propagation: a block runs up to and including an
activation, and takes the max-pooling that directly follows a monotone
one (the pooled values are still the activation's outputs, so act′ read off
them gates targets exactly). Normalisations, average pooling and
``Flatten`` start the next block; a ``Dropout`` at a block's start becomes
the block's input dropout. The last ``nn.Linear`` is the read-out, together
with whatever parameter-free or normalising modules stand between the last
block and it (global average pooling, ``Flatten``, ``Dropout``). A
:class:`targetprop.models.Residual` belongs to the block its activation
closes: targets live around residual blocks. A :class:`layers.Layer` placed
in the ``Sequential`` is a block of the user's own, kept as it is.

Each block l > 1 gets a proposed feedback map g_l from its output shape
back to its input shape (:func:`propose_feedback`); the first block needs
none (a classifier never needs a target for x) unless ``first_feedback``.
The modules are the model's own objects: training the chain trains the
model.
"""
from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

from ..models.blocks import Residual
from .layers import Layer, linear_part

__all__ = ["ACTIVATION_MODULES", "KNOWN_MODULES", "ResidualFeedback", "WrapError", "propose_feedback", "wrap"]

ACTIVATION_MODULES = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
MONOTONE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Tanh, nn.Sigmoid)  # max-pooling commutes with these
MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
PARAMETER_FREE = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                  nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)
KNOWN_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, *NORMS, *ACTIVATION_MODULES, *PARAMETER_FREE, nn.Dropout,
                 Residual, Layer)
_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}


class WrapError(ValueError):
    """A model that ``wrap`` cannot cut into blocks, said with the module and the way out."""


_BY_HAND = ("wrap that part by hand as a block of its own: targetprop.Layer(f, g, activation=...) "
            "inside the nn.Sequential")


class ResidualFeedback(nn.Module):
    """The feedback map of a residual block that keeps the shape:
    g(h) = h + C(h), the identity path of h + F(h) plus a learned correction
    C, which starts at zero (so g starts as the identity, the inverse of a
    block whose F is still small)."""

    def __init__(self, correction: nn.Module):
        super().__init__()
        self.correction = correction
        for p in correction.parameters():
            nn.init.zeros_(p)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.correction(h)

    def linear_part(self):
        inner = linear_part(self.correction)
        return None if inner is None else (lambda d: d + inner(d))


def _flatten(module: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(name, module) of a ``Sequential``'s modules, nested ones read through."""
    out = []
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        out += _flatten(child, path + ".") if isinstance(child, nn.Sequential) else [(path, child)]
    return out


def _read_out_index(modules: list[tuple[str, nn.Module]]) -> int:
    """The position of the read-out, the last ``nn.Linear``, which must end the model."""
    linears = [i for i, (_, m) in enumerate(modules) if isinstance(m, nn.Linear)]
    if not linears:
        raise WrapError("wrap takes the last nn.Linear as the read-out, and this model has none; add one "
                        "(nn.Flatten(), nn.Linear(features, num_classes))")
    if linears[-1] != len(modules) - 1:
        name, after = modules[linears[-1] + 1]
        raise WrapError(f"module {name} ({type(after).__name__}) comes after the read-out, the last nn.Linear: "
                        "the read-out's outputs are the logits the loss reads; remove it")
    return linears[-1]


def _check_known(modules: list[tuple[str, nn.Module]]) -> None:
    for name, module in modules:
        if not isinstance(module, KNOWN_MODULES):
            known = ", ".join(sorted({k.__name__ for k in KNOWN_MODULES}))
            raise WrapError(f"wrap cannot split module {name} ({type(module).__name__}): it knows {known}; "
                            + _BY_HAND)


def _split(modules: list[tuple[str, nn.Module]], end: int) -> tuple[list[dict], list[nn.Module]]:
    """The blocks (their modules, input dropout and activation) of the
    modules before the read-out at ``end``, and the read-out's modules."""
    blocks, current = [], {"modules": [], "dropout": None, "activation": None}

    def close():
        nonlocal current
        if current["modules"]:
            blocks.append(current)
        elif current["dropout"] is not None:
            raise WrapError("a Dropout stands before a block of your own (a targetprop.Layer): give it the "
                            "dropout instead, Layer(f, g, dropout=p, activation=...)")
        current = {"modules": [], "dropout": None, "activation": None}

    i = 0
    while i < end:
        name, module = modules[i]
        if isinstance(module, Layer):
            close()
            blocks.append({"own": module})
        elif isinstance(module, nn.Dropout):
            if not current["modules"]:
                if current["dropout"] is not None:
                    raise WrapError(f"module {name}: two Dropouts in a row")
                current["dropout"] = module
            elif not any(isinstance(m, (Layer, *ACTIVATION_MODULES)) for _, m in modules[i + 1:end]):
                current["modules"].append(module)  # in the read-out's tail: it drops the read-out's input
            else:
                raise WrapError(f"module {name} (Dropout) stands inside a block, before its activation: its "
                                "mask would be part of the map the feedback map learns to invert; put it "
                                "after the activation (it then drops the next block's input)")
        else:
            current["modules"].append(module)
            if isinstance(module, ACTIVATION_MODULES):
                current["activation"] = module
                while (isinstance(module, MONOTONE) and i + 1 < end
                       and isinstance(modules[i + 1][1], MAX_POOLS)):
                    i += 1
                    current["modules"].append(modules[i][1])
                close()
        i += 1
    read_out = current["modules"] + [modules[end][1]]
    if current["dropout"] is not None:
        read_out.insert(0, current["dropout"])
    if not blocks:
        raise WrapError("this model has no block before its read-out (a block ends with an activation): "
                        "target propagation needs at least one hidden layer")
    return blocks, read_out


def _solve_transpose(size_in: int, size_out: int, kernel: int, stride: int) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, output_padding) of a transposed convolution
    taking size_out back to size_in: size_in = (size_out − 1)s − 2p + k + op,
    0 ≤ op < s, s the block's own stride where it fits (else ⌈in/out⌉).
    Stride 1 keeps the forward kernel (V then has the shape of Wᵀ); a stride
    s > 1 prefers k = 2s, a learned upsampling whose windows overlap."""
    for s in dict.fromkeys([stride, max(1, math.ceil(size_in / size_out))]):
        kernels = [kernel, 3, 1] if s == 1 else [2 * s, 2 * s + 1, s]
        for k in kernels:
            for p in range(k):
                op = size_in - ((size_out - 1) * s - 2 * p + k)
                if 0 <= op < s:
                    return k, s, p, op
    return None


def _pairs(value, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank


def _block_geometry(modules: Sequence[nn.Module], rank: int) -> tuple[int, tuple[int, ...]]:
    """The first convolution's kernel size (3 if none) and the product of the
    strides of the block's convolutions and pools, per spatial dimension (a
    residual block's through its body)."""
    kernel, stride = None, [1] * rank

    def walk(items):
        nonlocal kernel
        for m in items:
            if isinstance(m, nn.Sequential):
                walk(m)
            elif isinstance(m, Residual):
                walk([m.body])
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)):
                if isinstance(m, (nn.Conv1d, nn.Conv2d)) and kernel is None:
                    kernel = m.kernel_size[0]
                for d, s in enumerate(_pairs(m.stride, rank)):
                    stride[d] *= s
    walk(modules)
    return kernel or 3, tuple(stride)


def propose_feedback(shape_in: tuple[int, ...], shape_out: tuple[int, ...], modules: Sequence[nn.Module],
                     activation_below: nn.Module | None = None, feedback_map: str = "linear") -> nn.Module:
    """A feedback map g from a block's output shape back to its input shape:

    * vectors: a linear map V h + c;
    * feature maps of the same rank: a transposed convolution (the shape of
      Wᵀ for a stride-1 block, a learned upsampling k = 2s, stride s, for a
      block that strides or pools; :func:`_solve_transpose`);
    * a residual block that keeps the shape: identity plus a learned
      correction of that form (:class:`ResidualFeedback`);
    * otherwise (a block that flattens): a linear map and a reshape.

    ``feedback_map="activation"`` appends the activation of the block
    below, act(V h + c), so that g's values lie in h_{l−1}'s range (Lee et
    al. 2015 §2.3)."""
    if len(shape_in) == len(shape_out) and len(shape_in) in (2, 3):
        channels_in, *sizes_in = shape_in
        channels_out, *sizes_out = shape_out
        kernel, strides = _block_geometry(modules, len(sizes_in))
        solved = [_solve_transpose(a, b, kernel, s) for a, b, s in zip(sizes_in, sizes_out, strides)]
        if None in solved:
            raise WrapError(f"wrap has no transposed convolution taking {shape_out} back to {shape_in}; "
                            "give this block a feedback map of your own: " + _BY_HAND)
        k, s, p, op = (tuple(column) for column in zip(*solved))
        g = _CONV_TRANSPOSE[len(sizes_in)](channels_out, channels_in, k, stride=s, padding=p, output_padding=op)
    elif len(shape_in) == len(shape_out) == 1:
        g = nn.Linear(shape_out[0], shape_in[0])
    else:
        g = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape_out), math.prod(shape_in)),
                          nn.Unflatten(1, shape_in))
    residual = any(isinstance(m, Residual) for m in modules)  # a block's top-level modules
    if residual and shape_in == shape_out:
        g = ResidualFeedback(g)
    if feedback_map == "activation" and activation_below is not None:
        g = nn.Sequential(g, copy.deepcopy(activation_below))
    return g


@torch.no_grad()
def _shapes(blocks: list[Layer], read_out: nn.Module, input_shape: tuple[int, ...]) -> list[tuple]:
    """Each block's input shape and the read-out's output shape, from one
    forward pass of a zero example in eval mode (nothing is updated)."""
    h = torch.zeros(1, *input_shape, **_placement(blocks))
    shapes = []
    for l, layer in enumerate(blocks, start=1):
        shapes.append(tuple(h.shape[1:]))
        try:
            h = layer.f(layer.dropout(h))
        except RuntimeError as error:
            raise WrapError(f"block {l} does not take inputs of shape {tuple(h.shape[1:])}: "
                            f"{str(error).splitlines()[0]}") from None
    shapes.append(tuple(h.shape[1:]))
    try:
        shapes.append(tuple(read_out(h).shape[1:]))
    except RuntimeError as error:
        raise WrapError(f"the read-out does not take the last block's output {tuple(h.shape[1:])}: "
                        f"{str(error).splitlines()[0]}") from None
    return shapes


def _placement(blocks: list[Layer]) -> dict:
    """The dtype and device of the blocks' parameters (the defaults where they have none)."""
    param = next((p for layer in blocks for p in layer.f.parameters()), None)
    return {} if param is None else {"dtype": param.dtype, "device": param.device}


def wrap(model: nn.Module, input_shape: Sequence[int], num_outputs: int | None = None, *,
         feedback_map: str = "linear", first_feedback: bool = False):
    """The chain of target propagation that ``model`` (an ``nn.Sequential``)
    is, on examples of ``input_shape`` (one example's shape: (C, H, W) for
    images, (features,) for vectors); ``num_outputs``, if given, is checked
    against the read-out. A network of target propagation already (a
    :class:`networks.Chain`, anything with ``layers`` and ``unrolled``) is
    returned as it is. Raises :class:`WrapError`, naming the module, for
    what it cannot split (module docstring)."""
    from .networks import Chain

    if hasattr(model, "layers") and hasattr(model, "unrolled"):
        return model
    if not isinstance(model, nn.Sequential):
        raise WrapError(f"wrap cuts an nn.Sequential into blocks; {type(model).__name__} is not one. Write the "
                        "model as nn.Sequential(...) (targetprop.models.Residual for skip connections), or build "
                        "the chain by hand: targetprop.Chain([Layer(f, g, activation=...), ...], read_out)")
    if feedback_map not in ("linear", "activation"):
        raise WrapError(f"unknown feedback_map {feedback_map!r}; choose linear or activation")
    input_shape = tuple(int(n) for n in input_shape)
    modules = _flatten(model)
    end = _read_out_index(modules)
    _check_known(modules[:end])
    parts, read_out_modules = _split(modules, end)
    layers = [part["own"] if "own" in part else
              Layer(nn.Sequential(*part["modules"]), None,
                    part["dropout"] if part["dropout"] is not None else 0.0, activation=part["activation"])
              for part in parts]
    read_out = read_out_modules[0] if len(read_out_modules) == 1 else nn.Sequential(*read_out_modules)
    was_training = model.training
    model.eval()
    try:
        shapes = _shapes(layers, read_out, input_shape)
    finally:
        model.train(was_training)
    for l, layer in enumerate(layers):
        shape_in, shape_out = shapes[l], shapes[l + 1]
        if layer.g is not None:
            _check_feedback(layer, l + 1, shape_in, shape_out)
        elif l > 0 or first_feedback:
            below = layers[l - 1].activation if l > 0 else None
            modules = list(layer.f) if isinstance(layer.f, nn.Sequential) else [layer.f]
            layer.g = propose_feedback(shape_in, shape_out, modules, below, feedback_map)
            layer.g.to(**_placement(layers))
    if len(shapes[-1]) != 1:
        raise WrapError(f"the read-out gives {shapes[-1]} per example, not a vector of logits: flatten its input "
                        "(nn.Flatten() before the last nn.Linear)")
    if num_outputs is not None and shapes[-1] != (num_outputs,):
        raise WrapError(f"the read-out gives {shapes[-1][0]} outputs per example, but the data have "
                        f"{num_outputs} classes (or real outputs): make its last nn.Linear "
                        f"{math.prod(shapes[-2])} → {num_outputs}")
    return Chain(layers, read_out, input_shape=input_shape)


@torch.no_grad()
def _check_feedback(layer: Layer, l: int, shape_in: tuple, shape_out: tuple) -> None:
    was_training = layer.g.training
    layer.g.eval()
    try:
        out = layer.g(torch.zeros(1, *shape_out, **_placement([layer])))
    except RuntimeError as error:
        raise WrapError(f"the feedback map of block {l} does not take the block's output {shape_out}: "
                        f"{str(error).splitlines()[0]}") from None
    finally:
        layer.g.train(was_training)
    if tuple(out.shape[1:]) != shape_in:
        raise WrapError(f"the feedback map of block {l} gives {tuple(out.shape[1:])}, but the block's input is "
                        f"{shape_in}: g must map h_l back to the shape of h_(l-1)")
