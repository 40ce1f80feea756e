"""The registry: every named rule, as a recipe wiring the pieces of the
engine (DESIGN.md), and every kind of network a rule can declare it
trains, with the builder of that kind from an architecture spec. This is
the only module that knows every rule family; a new rule is a new entry
here.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from torch import nn

from .core import feedback as fb
from .core import targets as tg
from .core.architectures import ArchitectureSpec, build_architecture, parse_architecture
from .core.direct import direct_feedback_chain
from .core.fixed import fixed_feedback_chain
from .core.rule import Rule
from .core.wrap import wrap
from .core.settings import Declared, build, declared
from .rules.backprop import BackProp
from .rules.bengio2014 import Bengio2014
from .rules.bengio2014.conditional import build_conditional, conditional_from_model
from .rules.bengio2014.recurrent import build_section5
from .rules.bengio2014.trees import build_section5_tree
from .rules.ccl import CounterCurrent, build_dual
from .rules.dtp import (DampedTargetPropagation, DirectTargetPropagation, FixedWeightTargetPropagation,
                        TargetPropagation)
from .rules.generative import GenerativeBackprop, GenerativeTP
from .rules.generative.stacks import build_stack

__all__ = ["Recipe", "RULES", "NetworkKind", "NETWORK_KINDS", "make_rule", "rule_settings", "network_kind",
           "require_kind", "build_network", "wrap_for"]


@dataclass(frozen=True)
class Recipe:
    """A named rule: its class, the pieces wired into it, one line of summary."""
    summary: str
    cls: type[Rule]
    wired: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Declared]:
        return declared(self.cls)


def _tp(summary: str, propagate: tg.PropagationRule, objective: fb.FeedbackObjective,
        cls: type[Rule] = TargetPropagation) -> Recipe:
    return Recipe(summary, cls, {"propagate": propagate, "feedback_objective": objective})


RULES: dict[str, Recipe] = {
    "bp": Recipe("back-propagation of the output loss (through time on a recurrent net): the baseline", BackProp),
    "tp": _tp("vanilla target propagation ĥ_{l-1} = g_l(ĥ_l), denoising inverses "
              "(Bengio 2014 §2.2.6; Lee et al. 2015)", tg.tp_propagate, fb.noisy_reconstruction_loss),
    "dtp": _tp("difference target propagation, denoising inverses (Lee et al. 2015)",
               tg.difference_propagate, fb.noisy_reconstruction_loss),
    "drl": _tp("difference targets, difference reconstruction loss layer by layer (Meulemans et al. 2020's "
               "through the whole path above: drl_path=whole)",
               tg.difference_propagate, fb.difference_reconstruction_loss, DampedTargetPropagation),
    "ldrl": _tp("difference targets, local difference reconstruction loss (Ernoult et al. 2022)",
                tg.difference_propagate, fb.local_difference_reconstruction_loss),
    "fwdtp": _tp("difference targets through fixed random feedback maps, none trained (Shibuya et al. 2023, "
                 "fixed-weight DTP)", tg.difference_propagate, fb.noisy_reconstruction_loss,
                 FixedWeightTargetPropagation),
    "ddtp": Recipe("direct difference targets h_l + Q_l(τ − a) by linear maps from the output, direct difference "
                   "reconstruction loss (Meulemans et al. 2020, DDTP-linear)", DirectTargetPropagation),
    "ccl": Recipe("counter-current learning: a mirrored feedback net fed the class one-hots, each layer aligned "
                  "with its class prototypes (Kao & Hariharan 2024)", CounterCurrent),
    "bengio2014": Recipe("auto-encoder-mediated TP with a conditional top auto-encoder, "
                         "supervised and semi-supervised (Bengio 2014, Alg. 2, 4, 5); on rnn: nets, §5's "
                         "short and long loops through a backward net without inputs", Bengio2014),
    "generative": Recipe("generative stack of denoising auto-encoders, no back-prop between layers "
                         "(Bengio 2014, Alg. 2, 3, 6)", GenerativeTP),
    "generative-bp": Recipe("generative stack trained by back-prop of Eq. 7's criterion "
                            "(Bengio 2014, Alg. 1)", GenerativeBackprop),
}


def make_rule(name: str, **settings: Any) -> Rule:
    """The registered rule ``name`` with ``settings``; a setting it does not
    read is an error that lists what it takes."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; choose one of: {', '.join(RULES)}")
    recipe = RULES[name]
    return build(recipe.cls, f"rule {name!r}", settings, name=name, **recipe.wired)


def rule_settings(name: str) -> dict[str, Declared]:
    """The settings rule ``name`` declares (name → declaration)."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; choose one of: {', '.join(RULES)}")
    return RULES[name].settings()


@dataclass(frozen=True)
class NetworkKind:
    """A kind of network a rule may declare it trains (``Rule.network_kinds``):
    ``accepts(spec)``, whether it is built from that architecture spec,
    ``build(spec, input_shape, num_outputs, **options)``, and, where a model
    of the user's own (an ``nn.Sequential``) can be one,
    ``from_model(model, input_shape, num_outputs, **options)``."""
    summary: str
    accepts: Callable[[ArchitectureSpec], bool]
    build: Callable[..., nn.Module]
    from_model: Callable[..., nn.Module] | None = None


def _of_the_architecture(spec: ArchitectureSpec, input_shape, num_outputs: int, **options) -> nn.Module:
    return build_architecture(spec, input_shape, num_outputs, **options)


def _wrapped(model: nn.Module, input_shape, num_outputs: int | None, feedback_map: str | None = None) -> nn.Module:
    return wrap(model, input_shape, num_outputs, feedback_map=feedback_map or "linear")


def _direct(spec: ArchitectureSpec, input_shape, num_outputs: int, **options) -> nn.Module:
    return direct_feedback_chain(build_architecture(spec, input_shape, num_outputs, **options), input_shape)


def _direct_wrapped(model: nn.Module, input_shape, num_outputs: int | None) -> nn.Module:
    return direct_feedback_chain(wrap(model, input_shape, num_outputs), input_shape)


def _fixed(spec: ArchitectureSpec, input_shape, num_outputs: int, feedback_scale: float = 1.0,
           feedback_map: str = "linear", **options) -> nn.Module:
    net = build_architecture(spec, input_shape, num_outputs, feedback_map=feedback_map, **options)
    return fixed_feedback_chain(net, input_shape, feedback_scale, feedback_map)


def _fixed_wrapped(model: nn.Module, input_shape, num_outputs: int | None, feedback_scale: float = 1.0,
                   feedback_map: str = "linear") -> nn.Module:
    net = wrap(model, input_shape, num_outputs, feedback_map=feedback_map)
    return fixed_feedback_chain(net, input_shape, feedback_scale, feedback_map)


NETWORK_KINDS: dict[str, NetworkKind] = {
    "chain": NetworkKind("a chain of layers (f_l, g_l) under a read-out: mlp:, cnn:, invertible:, resnetN, "
                         "your own model", lambda spec: spec.family == "feed-forward", _of_the_architecture,
                         _wrapped),
    "recurrent": NetworkKind("a recurrent cell unrolled in time: rnn:, gru:", lambda spec: spec.family == "recurrent",
                             _of_the_architecture),
    "tree": NetworkKind("a binary recursive net over trees, level by level: tree:",
                        lambda spec: spec.family == "recursive", _of_the_architecture),
    "conditional": NetworkKind("layer-wise auto-encoders under a conditional top auto-encoder (Bengio 2014 §3.1): "
                               "mlp:, or a fully connected model of your own",
                               lambda spec: spec.name in ("mlp", "file"), build_conditional, conditional_from_model),
    "section5": NetworkKind("§5's Elman net and its backward net without inputs: rnn:",
                            lambda spec: spec.family == "recurrent" and spec.arguments["cell"] == "rnn",
                            build_section5),
    "section5-tree": NetworkKind("§5's recursive net and its backward net without inputs: tree:",
                                 lambda spec: spec.family == "recursive", build_section5_tree),
    "direct": NetworkKind("a chain whose hidden layers have direct linear feedback maps Q_l from the output "
                          "(Meulemans et al. 2020): mlp:, cnn:, resnetN, your own model",
                          lambda spec: spec.family == "feed-forward", _direct, _direct_wrapped),
    "fixed": NetworkKind("a chain whose feedback maps are fixed random matrices, and one from the output to h_L "
                         "(Shibuya et al. 2023): mlp:, cnn:, resnetN, your own model",
                         lambda spec: spec.family == "feed-forward" and spec.name != "invertible", _fixed,
                         _fixed_wrapped),
    "dual": NetworkKind("a chain and its mirrored feedback net fed the class one-hots (Kao & Hariharan 2024): "
                        "mlp:", lambda spec: spec.name == "mlp", build_dual),
    "stack": NetworkKind("a generative stack of denoising auto-encoders (§2, §4, §7): mlp:",
                         lambda spec: spec.name == "mlp", build_stack),
}


def network_kind(rule: Rule, spec: ArchitectureSpec) -> str | None:
    """The first kind ``rule`` trains that ``spec`` builds, or None."""
    return next((kind for kind in rule.network_kinds if NETWORK_KINDS[kind].accepts(spec)), None)


def require_kind(rule: Rule, spec: ArchitectureSpec) -> str:
    """:func:`network_kind`, or a ValueError that names the kinds ``rule`` trains."""
    kind = network_kind(rule, spec)
    if kind is None:
        kinds = "; ".join(f"{k}: {NETWORK_KINDS[k].summary}" for k in rule.network_kinds)
        raise ValueError(f"rule {rule.name!r} trains {kinds}; {spec.text} is none of them")
    return kind


def _unread_options(builder: Callable, options: dict) -> list[str]:
    """The options that ``builder`` takes no parameter for."""
    parameters = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return []
    return sorted(set(options) - {p.name for p in parameters})


def build_network(arch: str | ArchitectureSpec, input_shape: int | Sequence[int], num_outputs: int,
                  rule: Rule | str | None = None, **options) -> nn.Module:
    """The network of ``arch`` (an ``--arch`` spec) on examples of
    ``input_shape`` with ``num_outputs`` read-out units, of the kind
    ``rule`` trains (with the feedback maps its settings ask for,
    ``Rule.network_options``), checked by it; without a rule, the
    architecture's own chain or recurrent net. ``options``: network options
    (activation, dropout, layer_hidden, feedback_map)."""
    spec = parse_architecture(arch) if isinstance(arch, str) else arch
    if rule is None:
        kind, wanted = {"feed-forward": "chain", "recursive": "tree"}.get(spec.family, "recurrent"), {}
    else:
        rule = make_rule(rule) if isinstance(rule, str) else rule
        kind = require_kind(rule, spec)
        wanted = rule.network_options(kind)
    options = wanted | {k: v for k, v in options.items() if v is not None}
    builder = NETWORK_KINDS[kind].build
    unread = _unread_options(builder, options) if builder is not _of_the_architecture else []
    if unread:
        raise ValueError(f"{spec.text} as a {kind} net ({NETWORK_KINDS[kind].summary}) does not read "
                         f"{', '.join(f'{k}={options[k]!r}' for k in unread)}")
    net = builder(spec, input_shape, num_outputs, **options)
    if rule is not None:
        rule.check_network(net)
    return net


def wrap_for(rule: Rule | str, model: nn.Module, input_shape: Sequence[int], num_outputs: int | None = None):
    """``model`` (an ``nn.Sequential`` of the user's own, or a network of
    target propagation already) as a network of the first kind ``rule``
    trains that a model can be (a chain: wrapped with the feedback maps the
    rule's settings ask for), checked by the rule."""
    rule = make_rule(rule) if isinstance(rule, str) else rule
    kind = next((k for k in rule.network_kinds if NETWORK_KINDS[k].from_model is not None), None)
    if kind is None:
        kinds = ", ".join(rule.network_kinds)
        raise ValueError(f"rule {rule.name!r} trains networks it builds from a spec ({kinds}); a model of your own "
                         "cannot be one")
    net = NETWORK_KINDS[kind].from_model(model, input_shape, num_outputs, **rule.network_options(kind))
    rule.check_network(net)
    return net
