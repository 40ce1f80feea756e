"""Architecture specs: the one place a spec string (``--arch``) is read.

Each form is one :class:`Architecture` entry: how it is written, a line of
help, its parser (spec → the builder's arguments), its builder and the
network options it reads. ``build_architecture(spec, input_shape,
num_outputs, **options)`` is the network of a spec; a checkpoint stores the
spec, the shape and the options, which rebuild it.

Forms: ``mlp:`` (fully connected), ``invertible:`` and ``invertible-svd:``
(exact inverses, §6), ``cnn:`` and its presets, ``resnetN`` (He et al.
2016's CIFAR ResNets, wrapped), ``rnn:`` and ``gru:`` (recurrent, §5),
``tree:`` (recursive, §5), and
``PATH.py:FUNCTION``, a function of the user's own file that returns an
``nn.Module`` (wrapped, :mod:`.wrap`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..models import resnet
from .conv import conv_layers, image_shape_of
from .discrete import DISCRETE_UNITS
from .invertible import InvertibleLayer
from .layers import ACTIVATIONS, TPLayer
from .networks import Chain, TPNetwork, flat_features
from .recurrent import RecurrentNetwork, sequence_shape_of
from .tree import TreeNetwork, tree_shape_of
from .wrap import wrap

__all__ = ["ARCHITECTURES", "CONV_PRESETS", "NETWORK_OPTIONS", "Architecture", "ArchitectureSpec", "UserCodeError",
           "architecture_help", "build_architecture", "parse_architecture", "source_digest", "user_model"]

# The options a builder may read (run-level settings of the same names; ``feedback_map`` is a rule's):
# activation, dropout, layer_hidden, normalization, feedback_map (linear: g_l = V h + c; activation: act(V h + c))
NETWORK_OPTIONS = ("activation", "dropout", "layer_hidden", "normalization", "feedback_map")

# A VGG-like net (Ernoult et al. 2022: conv 128-128-256-256-512, 3×3
# convolutions, max-pooling); "n" marks an entry without pooling.
CONV_PRESETS = {"simple-vgg": "cnn:128n-128-256n-256-512"}


class UserCodeError(ValueError):
    """The user's own architecture file failed: the message holds their traceback, not ours."""


@dataclass(frozen=True)
class Architecture:
    """One form of spec. ``parse(spec)`` returns the builder's arguments, or
    None where the spec is not of this form (and raises where it is, but
    malformed); ``build(input_shape, num_outputs, **arguments, **options)``
    returns the network. ``family``: feed-forward, recurrent or recursive.
    ``he_init``: ``init=auto`` starts it from He et al.'s weights when its
    units are unbounded (the forms whose own code sets no initialisation)."""
    name: str
    forms: tuple[str, ...]
    summary: str
    family: str
    parse: Callable[[str], dict | None]
    build: Callable[..., nn.Module]
    options: tuple[str, ...] = ()
    he_init: bool = False


@dataclass(frozen=True)
class ArchitectureSpec:
    """A parsed spec: its text, its entry's name and the builder's arguments."""
    text: str
    name: str
    arguments: dict[str, Any]

    @property
    def entry(self) -> Architecture:
        return ARCHITECTURES[self.name]

    @property
    def family(self) -> str:
        return self.entry.family


# -- parsers ---------------------------------------------------------------

_WIDTHS = re.compile(r"^(?:(\d+)x(\d+)|(\d+(?:-\d+)*))$")


def _widths(spec: str, body: str, square: bool) -> list[int]:
    match = _WIDTHS.match(body)
    if match is None:
        raise ValueError(f"unknown architecture {spec!r}; write WIDTHxDEPTH or W1-W2-... after the colon "
                         "(e.g. mlp:256x5)")
    width, depth, listed = match.groups()
    widths = [int(width)] * int(depth) if listed is None else [int(w) for w in listed.split("-")]
    if not widths or min(widths) < 1:
        raise ValueError(f"architecture {spec!r} needs at least one layer of positive width")
    if square and len(set(widths)) != 1:
        raise ValueError(f"architecture {spec!r}: layers with exact inverses are square, so every width "
                         "must be the same (e.g. invertible:256x5)")
    return widths


def _prefixed(prefix: str, read: Callable[[str, str], dict]):
    def parse(spec: str) -> dict | None:
        return read(spec, spec[len(prefix):]) if spec.startswith(prefix) else None
    return parse


_CONV_ENTRY = re.compile(r"^(\d+)(n?)$")


def _parse_conv(spec: str) -> dict | None:
    """``cnn:32-64-128`` (each entry a 3×3 convolution and a 2×2 max-pool;
    ``64n``: no pool) or a preset name: [(channels, pooled)] per layer."""
    if spec not in CONV_PRESETS and not spec.startswith("cnn:"):
        return None
    body = CONV_PRESETS.get(spec, spec).removeprefix("cnn:")
    parsed = [_CONV_ENTRY.match(e.strip()) for e in body.split("-")]
    if not all(parsed) or min(int(m.group(1)) for m in parsed) < 1:
        raise ValueError(f"unknown convolutional architecture {spec!r}: write cnn:C1-C2-... (C channels, "
                         "a 3×3 convolution and 2×2 max-pooling per entry; Cn without pooling), e.g. "
                         f"cnn:32-64-128, or a preset: {', '.join(CONV_PRESETS)}")
    return {"entries": [(int(m.group(1)), not m.group(2)) for m in parsed]}


def _parse_resnet(spec: str) -> dict | None:
    match = re.match(r"^resnet(\d+)$", spec)
    if match is None:
        return None
    depth = int(match.group(1))
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"unknown architecture {spec!r}: a CIFAR ResNet has depth 6n + 2 "
                         "(resnet8, resnet14, resnet20, resnet32, resnet56, ...)")
    return {"depth": depth}


def _parse_recurrent(spec: str) -> dict | None:
    match = re.match(r"^(rnn|gru):(.*)$", spec)
    if match is None:
        return None
    if not match.group(2).isdigit() or int(match.group(2)) < 1:
        raise ValueError(f"unknown recurrent architecture {spec!r}; the forms are rnn:WIDTH and gru:WIDTH "
                         "(e.g. rnn:128)")
    return {"cell": match.group(1), "width": int(match.group(2))}


def _parse_tree(spec: str) -> dict | None:
    match = re.match(r"^tree:(.*)$", spec)
    if match is None:
        return None
    if not match.group(1).isdigit() or int(match.group(1)) < 1:
        raise ValueError(f"unknown tree architecture {spec!r}; the form is tree:WIDTH (e.g. tree:64)")
    return {"width": int(match.group(1))}


def _parse_file(spec: str) -> dict | None:
    match = re.match(r"^(.+\.py):([A-Za-z_]\w*)$", spec)
    if match is None:
        return None
    path = Path(match.group(1)).expanduser()
    if not path.is_file():
        raise ValueError(f"architecture {spec!r}: no file {path} (write PATH.py:FUNCTION, FUNCTION(input_shape, "
                         "num_classes) returning an nn.Module)")
    return {"path": str(path.resolve()), "function": match.group(2)}


# -- builders --------------------------------------------------------------

def _check_activation(activation: str, discrete: bool = True) -> None:
    known = [*ACTIVATIONS, *DISCRETE_UNITS] if discrete else list(ACTIVATIONS)
    if activation not in known:
        raise ValueError(f"unknown activation {activation!r}; choose one of: {', '.join(known)}")


def _feedback_activation(feedback_map: str | None) -> str | None:
    """g_l's activation: linear, or the layer's own (None)."""
    if feedback_map not in (None, "linear", "activation"):
        raise ValueError(f"unknown feedback_map {feedback_map!r}; choose linear or activation")
    return "linear" if feedback_map == "linear" else None


def _build_mlp(input_shape, num_outputs, widths, activation="tanh", dropout=0.0, layer_hidden=0,
               normalization="none", feedback_map=None):
    _check_activation(activation)
    return TPNetwork(flat_features(input_shape), widths, num_outputs, activation, dropout, hidden=layer_hidden,
                     feedback_activation=_feedback_activation(feedback_map), normalization=normalization)


def _build_invertible(input_shape, num_outputs, widths, parametrisation, activation="tanh", dropout=0.0,
                      feedback_map=None):
    """A first layer to the width, then square layers with exact inverses
    (W = L Lᵀ, or U D Vᵀ): their g is f⁻¹, whatever ``feedback_map`` says."""
    if activation != "tanh":
        raise ValueError(f"invertible layers are tanh(W h + b): use activation=tanh, not {activation!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    in_features = flat_features(input_shape)
    first = TPLayer(in_features, widths[0], "tanh", feedback_activation=None)
    rest = [InvertibleLayer(width, dropout, parametrisation) for width in widths[1:]]
    output = nn.Linear(widths[-1], num_outputs)
    return Chain([first, *rest], nn.Sequential(nn.Dropout(dropout), output) if dropout > 0 else output,
                 input_shape=(in_features,))


def _build_conv(input_shape, num_outputs, entries, activation="tanh", dropout=0.0, feedback_map=None):
    _check_activation(activation, discrete=False)
    image = image_shape_of(input_shape)
    layers, features = conv_layers(image, entries, activation, dropout, _feedback_activation(feedback_map))
    output = nn.Sequential(nn.Flatten(), *([nn.Dropout(dropout)] if dropout > 0 else []),
                           nn.Linear(features, num_outputs))
    return Chain(layers, output, input_shape=image)


def _build_resnet(input_shape, num_outputs, depth, feedback_map=None):
    image = image_shape_of(input_shape)
    return wrap(resnet(depth, image[0], num_outputs), image, num_outputs, feedback_map=feedback_map or "linear")


def _build_recurrent(input_shape, num_outputs, cell, width, activation="tanh", feedback_map=None):
    return RecurrentNetwork(sequence_shape_of(input_shape), width, num_outputs, activation, cell=cell,
                            feedback_map=feedback_map or "linear")


def _build_tree(input_shape, num_outputs, width, activation="tanh", feedback_map=None):
    if feedback_map == "activation":
        raise ValueError("a tree net's inverse g(h_n) = V h_n + P x_n + c is linear: use feedback_map=linear")
    return TreeNetwork(tree_shape_of(input_shape), width, num_outputs, activation)


def user_model(path: str, function: str, input_shape, num_outputs: int) -> nn.Module:
    """FUNCTION(input_shape, num_classes) from the user's file (a ``file``
    spec's arguments), checked to be an ``nn.Module``; an error in their
    code is a :class:`UserCodeError` with their traceback."""
    user_function = _load_function(path, function)
    try:
        model = user_function(tuple(input_shape), num_outputs)
    except Exception as error:  # the user's code: show their traceback
        raise UserCodeError(_user_traceback(error, path, f"{function}{tuple(input_shape), num_outputs}")) from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{path}:{function} returned {type(model).__name__}, not an nn.Module")
    return model


def _build_file(input_shape, num_outputs, path, function, feedback_map=None):
    """The user's model, wrapped."""
    return wrap(user_model(path, function, input_shape, num_outputs), input_shape, num_outputs,
                feedback_map=feedback_map or "linear")


def _load_function(path: str, function: str):
    digest = source_digest(path)[:12]
    spec = importlib.util.spec_from_file_location(f"targetprop_user_{Path(path).stem}_{digest}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise UserCodeError(_user_traceback(error, path, "importing it")) from None
    user_function = getattr(module, function, None)
    if not callable(user_function):
        defined = sorted(name for name, value in vars(module).items() if callable(value) and not name.startswith("_")
                         and getattr(value, "__module__", None) == module.__name__)
        raise ValueError(f"{path} has no function {function!r}" + (f"; it defines {', '.join(defined)}"
                                                                   if defined else ""))
    return user_function


def _user_traceback(error: BaseException, path: str, doing: str) -> str:
    """The traceback of ``error`` cut to the frames of the user's file."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == Path(path)]
    lines = "".join(traceback.format_list(frames))
    return (f"{path} failed while {doing}:\nTraceback (most recent call last, in your file):\n{lines}"
            f"{type(error).__name__}: {error}")


def source_digest(path: str) -> str:
    """sha256 of a file's bytes: a checkpoint records it, and resuming notices a changed file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


ARCHITECTURES: dict[str, Architecture] = {entry.name: entry for entry in (
    Architecture("mlp", ("mlp:WIDTHxDEPTH", "mlp:W1-W2-..."), "fully connected act(W h + b) layers",
                 "feed-forward", _prefixed("mlp:", lambda spec, body: {"widths": _widths(spec, body, False)}),
                 _build_mlp, ("activation", "dropout", "layer_hidden", "normalization", "feedback_map"), he_init=True),
    Architecture("invertible", ("invertible:WIDTHxDEPTH",), "square tanh layers W = L Lᵀ with exact inverses (§6)",
                 "feed-forward", _prefixed("invertible:", lambda spec, body: {
                     "widths": _widths(spec, body, True), "parametrisation": "cholesky"}),
                 _build_invertible, ("activation", "dropout", "feedback_map")),
    Architecture("invertible-svd", ("invertible-svd:WIDTHxDEPTH",),
                 "square tanh layers W = U D Vᵀ, U and V kept near-orthogonal (§6)",
                 "feed-forward", _prefixed("invertible-svd:", lambda spec, body: {
                     "widths": _widths(spec, body, True), "parametrisation": "svd"}),
                 _build_invertible, ("activation", "dropout", "feedback_map")),
    Architecture("cnn", ("cnn:C1-C2-...", *CONV_PRESETS),
                 "3×3 convolutions, each with 2×2 max-pooling (Cn: without); presets: "
                 + ", ".join(f"{k} = {v}" for k, v in CONV_PRESETS.items()),
                 "feed-forward", _parse_conv, _build_conv, ("activation", "dropout", "feedback_map"), he_init=True),
    Architecture("resnet", ("resnetN",), "He et al. 2016's CIFAR ResNet, N = 6n + 2 (resnet20: 3 stages of 3 "
                 "basic blocks, 16/32/64 channels, batch norm, global average pooling)",
                 "feed-forward", _parse_resnet, _build_resnet, ("feedback_map",)),
    Architecture("recurrent", ("rnn:WIDTH", "gru:WIDTH"), "an Elman or GRU cell unrolled in time (§5)",
                 "recurrent", _parse_recurrent, _build_recurrent, ("activation", "feedback_map")),
    Architecture("tree", ("tree:WIDTH",), "a binary recursive net composing each node from its children "
                 "and its own input, level by level (§5)",
                 "recursive", _parse_tree, _build_tree, ("activation", "feedback_map")),
    Architecture("file", ("PATH.py:FUNCTION",), "your own model: FUNCTION(input_shape, num_classes) returns an "
                 "nn.Module, wrapped into blocks (targetprop.wrap)",
                 "feed-forward", _parse_file, _build_file, ("feedback_map",)),
)}


def parse_architecture(spec: str) -> ArchitectureSpec:
    """The entry and builder arguments of ``spec`` (ValueError listing the forms if none fits)."""
    text = spec.strip()
    for entry in ARCHITECTURES.values():
        arguments = entry.parse(text)
        if arguments is not None:
            return ArchitectureSpec(text, entry.name, arguments)
    raise ValueError(f"unknown architecture {spec!r}; valid forms: {architecture_help()}")


def architecture_help() -> str:
    """Every form, for ``--arch``'s help and error messages."""
    return "; ".join(f"{', '.join(entry.forms)} ({entry.summary})" for entry in ARCHITECTURES.values())


def build_architecture(spec: str | ArchitectureSpec, input_shape, num_outputs: int, **options) -> nn.Module:
    """The network of ``spec`` on examples of ``input_shape`` (a tuple, or
    a number of features) with ``num_outputs`` read-out units. ``options``
    are network options (``NETWORK_OPTIONS``); one the form does not read
    is an error, unless it is None."""
    parsed = parse_architecture(spec) if isinstance(spec, str) else spec
    entry = parsed.entry
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(NETWORK_OPTIONS))
    if unknown:
        raise ValueError(f"unknown network option(s) {', '.join(unknown)}; the options are "
                         f"{', '.join(NETWORK_OPTIONS)}")
    unread = sorted(set(given) - set(entry.options))
    if unread:
        raise ValueError(f"architecture {parsed.text!r} ({entry.summary}) does not read "
                         f"{', '.join(f'{k}={given[k]!r}' for k in unread)}"
                         + (f"; it reads {', '.join(entry.options)}" if entry.options else ""))
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(int(n) for n in input_shape)
    return entry.build(shape, num_outputs, **parsed.arguments, **given)
