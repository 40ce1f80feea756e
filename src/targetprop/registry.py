"""The registry: every named rule, as a recipe wiring the pieces of the
engine (DESIGN.md). This is the only module that knows every rule family;
a new rule is a new entry here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .core import feedback as fb
from .core import targets as tg
from .core.rule import Rule
from .core.settings import Declared, build, declared
from .rules.backprop import BackProp
from .rules.bengio2014 import Bengio2014
from .rules.dtp import DampedTargetPropagation, TargetPropagation
from .rules.generative import GenerativeBackprop, GenerativeTP

__all__ = ["Recipe", "RULES", "make_rule", "rule_settings"]


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
    "drl": _tp("difference targets, difference reconstruction loss (Meulemans et al. 2020)",
               tg.difference_propagate, fb.difference_reconstruction_loss, DampedTargetPropagation),
    "ldrl": _tp("difference targets, local difference reconstruction loss (Ernoult et al. 2022)",
                tg.difference_propagate, fb.local_difference_reconstruction_loss),
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
