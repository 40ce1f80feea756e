"""Training rules and their registry.

A rule answers three questions for one batch:

* ``record(net, x)``: the forward pass, keeping what the rule needs;
* ``feedback_loss(net, record, targets)``: the loss that trains the feedback
  maps g_l (``targets``, the step's ĥ_l when known, for rules whose decoders
  learn from them);
* ``forward_loss(net, record, y)``: the loss whose gradient is the rule's
  update of the forward weights.

The target-propagation family is one class composed of four pieces (DESIGN.md):
a top target, a propagation rule, a feedback objective and a local update; the
named recipes at the bottom of this file wire them together.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable

import torch
import torch.nn.functional as F

from . import feedback as fb
from . import targets as tg
from .networks import TPNetwork, build_network
from .updates import local_target_loss

Tensor = torch.Tensor

__all__ = ["ForwardRecord", "ForwardLoss", "Rule", "BackProp", "TargetPropagation",
           "RULES", "make_rule"]


@dataclass
class ForwardRecord:
    """One forward pass. ``hs`` holds detached h_0..h_L; ``outputs`` holds
    h_1..h_L again with a graph back to each layer's own (detached) input;
    ``top`` is h_L as a leaf, so ∂loss/∂h_L can be read off; ``logits`` hangs
    from ``top`` (local rules) or from the whole chain (back-prop)."""
    hs: list[Tensor]
    outputs: list[Tensor]
    top: Tensor
    logits: Tensor


@dataclass
class ForwardLoss:
    loss: Tensor                     # its gradient is the forward-weight update
    output_loss: Tensor              # cross-entropy of the logits
    targets: list[Tensor] | None = None   # ĥ_1..ĥ_L where the rule has them


class Rule:
    """Base class of all rules; subclasses override the three methods, and
    ``build_network`` when they need another architecture."""

    name = "rule"
    uses_feedback = False
    handles_unlabelled = False  # whether batches may hold examples with y = -1
    supervised = True           # False: trained and scored without labels
    generative = False          # True: a generative stack, scored by its reconstructions

    def build_network(self, arch: str, in_features: int, num_classes: int, activation: str = "tanh",
                      dropout: float = 0.0, hidden: int = 0) -> TPNetwork:
        return build_network(arch, in_features, num_classes, activation, dropout, hidden)

    def record(self, net: TPNetwork, x: Tensor) -> ForwardRecord:
        hs, outputs, h = [x], [], x
        for layer in net.layers:
            out = layer(h.detach())
            outputs.append(out)
            hs.append(out.detach())
            h = out
        top = hs[-1].detach().requires_grad_()  # a leaf of its own: hs stays graph-free
        return ForwardRecord(hs, outputs, top, net.output(top))

    def feedback_loss(self, net: TPNetwork, record: ForwardRecord,
                      targets: list[Tensor] | None = None) -> Tensor | None:
        return None

    def forward_loss(self, net: TPNetwork, record: ForwardRecord, y: Tensor) -> ForwardLoss:
        raise NotImplementedError

    def diagnostics(self, net: TPNetwork, record: ForwardRecord, y: Tensor) -> dict[str, float]:
        """Rule-specific figures for the per-epoch log (none by default)."""
        return {}


class BackProp(Rule):
    """Back-propagation of the cross-entropy through the whole chain: the
    baseline every other rule is compared with."""

    name = "bp"

    def record(self, net: TPNetwork, x: Tensor) -> ForwardRecord:
        hs, h = [x], x
        for layer in net.layers:
            h = layer(h)
            hs.append(h)
        return ForwardRecord([t.detach() for t in hs], hs[1:], h, net.output(h))

    def forward_loss(self, net, record, y):
        loss = F.cross_entropy(record.logits, y)
        return ForwardLoss(loss, loss)


@dataclass(kw_only=True)
class TargetPropagation(Rule):
    """The difference-target-propagation family.

    1. top target:   ĥ_L = h_L − η ∂ℓ/∂h_L, ℓ the per-example cross-entropy;
    2. propagation:  ĥ_{l-1} = P(g_l, h_{l-1}, h_l, ĥ_l) for l = L..2;
    3. feedback:     an objective that teaches g_l to invert f_l, layers 2..L
                     (with ``shared_noise``, layers of equal width share the
                     step's noise sample: see :class:`feedback.SharedNoise`);
    4. local update: Σ_l ½‖f_l(h_{l-1}) − ĥ_l‖² for the hidden layers, plus
       the cross-entropy for the read-out layer (a single layer, so its
       gradient is local too).
    """

    name: str
    propagate: tg.PropagationRule
    feedback_objective: fb.FeedbackObjective
    target_step: float = 0.1
    feedback_noise: float = 0.1
    feedback_reg: float = 0.0
    shared_noise: bool = True
    uses_feedback: bool = field(default=True, init=False)

    def top_target(self, record: ForwardRecord, y: Tensor) -> tuple[Tensor, Tensor]:
        per_example = F.cross_entropy(record.logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(per_example, record.top, retain_graph=True)
        return tg.gradient_top_target(record.hs[-1], grad, self.target_step), per_example / len(y)

    def targets(self, net: TPNetwork, record: ForwardRecord, y: Tensor) -> tuple[list[Tensor], Tensor]:
        top, output_loss = self.top_target(record, y)
        feedbacks = [None] + [layer.feedback if layer.g is not None else None for layer in net.layers]
        return tg.propagate_targets(feedbacks, record.hs, top, self.propagate), output_loss

    def forward_loss(self, net, record, y):
        targets, output_loss = self.targets(net, record, y)
        loss = output_loss + local_target_loss(record.outputs, targets)
        return ForwardLoss(loss, output_loss.detach(), targets)

    def feedback_loss(self, net, record, targets=None):
        hs = record.hs
        noise = fb.SharedNoise() if self.shared_noise else fb.gaussian_like
        losses = []
        for l, layer in enumerate(net.layers):
            if layer.g is None:
                continue
            h = hs[l + 1]
            if layer.drops_input:  # the objectives invert the deterministic f, without the mask
                with torch.no_grad():
                    h = layer.f(hs[l])
            losses.append(self.feedback_objective(layer, hs[l], h, self.feedback_noise,
                                                  self.feedback_reg, noise))
        return torch.stack(losses).sum() if losses else None


# -- recipes -----------------------------------------------------------------

def accepted_settings(cls: type, settings: dict, wired: set[str]) -> dict:
    """The entries of flat ``settings`` that are init fields of the dataclass
    rule ``cls``, leaving out the ones a recipe ``wired`` itself and the
    ones set to None (the rule's own default applies)."""
    names = {f.name for f in fields(cls) if f.init} - wired
    return {k: v for k, v in settings.items() if k in names and v is not None}


def _recipe(name: str, propagate: tg.PropagationRule, objective: fb.FeedbackObjective):
    return lambda **settings: TargetPropagation(
        name=name, propagate=propagate, feedback_objective=objective,
        **accepted_settings(TargetPropagation, settings, {"name", "propagate", "feedback_objective"}))


def _bengio2014(**settings) -> Rule:
    from .bengio2014 import make_bengio2014  # that module builds on this one
    return make_bengio2014(**settings)


def _generative(**settings) -> Rule:
    from .generative import make_generative
    return make_generative(**settings)


def _generative_bp(**settings) -> Rule:
    from .generative import make_generative_bp
    return make_generative_bp(**settings)


RULES: dict[str, Callable[..., Rule]] = {
    # Back-propagation baseline.
    "bp": lambda **_: BackProp(),
    # Vanilla TP, ĥ_{l-1} = g_l(ĥ_l), denoising inverses (Lee et al. 2015 §2.2).
    "tp": _recipe("tp", tg.tp_propagate, fb.noisy_reconstruction_loss),
    # Difference TP with denoising inverses (Lee et al. 2015 §2.3).
    "dtp": _recipe("dtp", tg.difference_propagate, fb.noisy_reconstruction_loss),
    # Difference targets, feedback by the difference reconstruction loss (Meulemans et al. 2020).
    "drl": _recipe("drl", tg.difference_propagate, fb.difference_reconstruction_loss),
    # Difference targets, feedback by the local DRL (Ernoult et al. 2022).
    "ldrl": _recipe("ldrl", tg.difference_propagate, fb.local_difference_reconstruction_loss),
    # Auto-encoder-mediated TP with a conditional top auto-encoder (Bengio 2014, Alg. 5).
    "bengio2014": _bengio2014,
    # Unsupervised generative stack, no back-prop between layers (Bengio 2014, Alg. 2).
    "generative": _generative,
    # Unsupervised generative stack, the criterion of Eq. 7 by back-prop (Bengio 2014, Alg. 1).
    "generative-bp": _generative_bp,
}


def make_rule(name: str, **settings) -> Rule:
    """Build a registered rule from flat settings (e.g. a run's whole
    configuration); each rule takes the keys it knows and ignores the rest."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; choose one of: {', '.join(RULES)}")
    return RULES[name](**settings)
