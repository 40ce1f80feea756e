"""The difference-target-propagation family: vanilla TP and DTP (Lee et al.
2015), DRL (Meulemans et al. 2020) and L-DRL (Ernoult et al. 2022) are one
rule composed of four pieces (DESIGN.md), a top target, a propagation rule,
a feedback objective and a local update; the registry's recipes pick the
propagation rule and the feedback objective.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

import torch

from ..core import feedback as fb
from ..core import targets as tg
from ..core.delta import activation_derivative, check_delta_rule, delta_rule_loss
from ..core.direct import direct_difference_reconstruction_loss
from ..core.layers import InverseAffine, is_unbounded
from ..core.noise import SharedNoise, gaussian_like
from ..core.objectives import labelled_rows, output_loss
from ..core.recurrent import stacked_steps
from ..core.rule import ForwardLoss, ForwardRecord, Rule
from ..core.settings import check, setting
from ..core.updates import local_target_loss

Tensor = torch.Tensor

__all__ = ["TargetPropagation", "DampedTargetPropagation", "DirectTargetPropagation", "FixedWeightTargetPropagation"]


@dataclass(kw_only=True)
class TargetPropagation(Rule):
    """The difference-target-propagation family.

    1. top target:   ĥ_L = h_L − η ∂ℓ/∂h_L, ℓ the per-example cross-entropy;
    2. propagation:  ĥ_{l-1} = P(g_l, h_{l-1}, h_l, ĥ_l) for l = L..2;
    3. feedback:     an objective that teaches g_l to invert f_l, layers 2..L
                     (with ``shared_noise``, layers of equal width share the
                     step's noise sample: see :class:`core.noise.SharedNoise`);
    4. local update: Σ_l ½‖f_l(h_{l-1}) − ĥ_l‖² for the hidden layers, plus
       the cross-entropy for the read-out layer (a single layer, so its
       gradient is local too); ``local_update="delta"`` writes the hidden
       layers' step out as the delta rule (:mod:`core.delta`).
    """

    name: str
    propagate: tg.PropagationRule
    feedback_objective: fb.FeedbackObjective
    target_step: float = setting(0.1, "η of the top target ĥ_L = h_L − η ∂ℓ/∂h_L")
    feedback_noise: float = setting(0.1, "σ of the noise in the feedback objective")
    shared_noise: bool = setting(True, "layers of equal width share a step's noise sample")
    feedback_map: str = setting("linear", "the form of every g_l: linear (V h_l + c) or activation "
                                "(act(V h_l + c), act the layer's own, Lee et al. 2015 §2.3; a recurrent "
                                "step's act(V s_t + U x_t + c), reading x_t through f's U, Manchev and "
                                "Spratling 2020)", ("linear", "activation"))
    target_gating: str = setting("auto", "multiply a layer's target step by its act′ before it goes "
                                 "down (ĥ_l ← h_l + act′ ⊙ (ĥ_l − h_l)), as back-prop gates errors: "
                                 "unbounded (only layers of relu, leaky-relu or elu units), auto (those, and "
                                 "a recurrent net's steps where an affine g learns an inverse: not for ldrl, "
                                 "whose g learns the transpose, act′ included), all or none",
                                 ("auto", "unbounded", "all", "none"))
    inverse_damping: float = setting(0.3, "λ for layers with exact inverses (§6): their targets are "
                                     "h + W⁻¹ act′/(act′² + λ) (ĥ − h), each unit's inverse slope damped; "
                                     "0: the exact difference f⁻¹(ĥ) − f⁻¹(h) (Gauss–Newton)")
    local_update: str = setting("autograd", "how a layer moves toward its target: autograd (the gradient "
                                "of ½‖f_l(h_{l-1}) − ĥ_l‖²), delta (the same step written out as "
                                "the delta rule, §8) or delta-average (§8's moving-average form, "
                                "(ĥ_l − h_l) h_{l-1}ᵀ without act′)", ("autograd", "delta", "delta-average"))
    loss_average: str = setting("examples", "the local and feedback losses: ½‖·‖² summed over a layer's units "
                                "and averaged over examples, or units: the mean squared error over units and "
                                "examples as Manchev and Spratling (2020) take it (2/width times as large)",
                                ("examples", "units"))
    uses_feedback = True
    handles_regression = True
    feedback_reg: ClassVar[float] = 0.0  # DRL's damping λ (:class:`DampedTargetPropagation`)

    def __post_init__(self) -> None:
        check(self)
        noisy = self.feedback_objective is fb.noisy_reconstruction_loss  # the only one that does not divide by σ
        if self.feedback_noise < 0 or (self.feedback_noise == 0 and not noisy):
            raise ValueError(f"setting 'feedback_noise' must be {'>= 0' if noisy else '> 0'}")
        if self.inverse_damping < 0:
            raise ValueError("setting 'inverse_damping' must be >= 0")
        if self.loss_average == "units" and self.local_update != "autograd":
            raise ValueError("loss_average=units scales the local loss whose gradient local_update=autograd takes")

    def network_options(self, kind: str) -> dict:
        """The form of the feedback maps a network is built with. Linear g_l
        carry target differences as V_l(ĥ_l − h_l) and leave the gating by
        act' to the layer below's own local loss; with act(V h + c), each g_l
        gates them a second time by its own act', which at depth 8 costs DTP,
        DRL and L-DRL 3 to 4 points (benchmarks/results/robustness*.md)."""
        return {"feedback_map": self.feedback_map}

    def _gates(self, layer) -> bool:
        """Whether ``layer``'s target step is gated. A learned inverse of a
        recurrent step carries differences as W⁻¹ D⁻¹ (D = act′): over many
        steps the 1/D compound, which gating cancels (+9 points for dtp on
        fashion-mnist-rows, README); L-DRL's transpose Wᵀ D needs none."""
        if self.target_gating in ("all", "none"):
            return self.target_gating == "all"
        inverse_of_a_step = (self.target_gating == "auto" and getattr(layer, "time_step", False)
                             and getattr(layer, "feedback_linear", None) is not None
                             and self.feedback_objective is not fb.local_difference_reconstruction_loss)
        return is_unbounded(layer.activation) or inverse_of_a_step

    def check_network(self, net) -> None:
        super().check_network(net)
        if self.local_update != "autograd":
            if net.kind in ("recurrent", "tree"):
                raise ValueError(f"local_update={self.local_update} writes out a chain layer's step; a "
                                 f"{net.kind} net's steps share their weights: use local_update=autograd")
            check_delta_rule(net.layers)
        if self.target_gating == "all" and net.kind == "chain":
            for l, layer in enumerate(net.layers[1:], start=2):  # layer 1's target goes nowhere
                try:
                    activation_derivative(layer.activation, torch.zeros(1))
                except ValueError:
                    raise ValueError(f"target_gating=all gates each target step by act′ read off h_l, but "
                                     f"layer {l} has {type(layer.activation).__name__ if layer.activation else 'no'} "
                                     "activation whose derivative its output gives: use target_gating=auto "
                                     "(or name the block's activation: Layer(f, g, activation=...))") from None

    def top_target(self, net, record: ForwardRecord, y: Tensor) -> tuple[Tensor, Tensor]:
        """ĥ_L and the output loss (a batch mean)."""
        per_example = output_loss(record.logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(per_example, record.top, retain_graph=True)
        return (tg.gradient_top_target(record.top.detach(), grad, self.target_step),
                per_example / labelled_rows(y).clamp_min(1))

    def targets(self, net, record: ForwardRecord, y: Tensor) -> tuple[list[Tensor], Tensor]:
        """ĥ_l for every layer; a recurrent read-out on every state gives every
        s_t a top target ŝ_t = s_t − η ∂ℓ_t/∂s_t of its own, added to the
        difference that comes down to it."""
        top, output_loss = self.top_target(net, record, y)
        step = record.layers[-1]
        if (record.states is not None and self.propagate is tg.difference_propagate
                and step.feedback_linear is not None):  # every step's g is the cell's affine map
            gates = (activation_derivative(step.activation, record.states) if self._gates(step) else None)
            targets = tg.linear_difference_through_time(step.feedback_weight, record.states, top, gates)
            return list(targets), output_loss
        feedbacks, rules = self._propagation(record)
        if top.dim() > record.hs[-1].dim():  # every state's, (T, N, W)
            own_steps = [None, *(top - record.states)]
            return tg.propagate_targets(feedbacks, record.hs, top[-1], rules, own_steps=own_steps), output_loss
        return tg.propagate_targets(feedbacks, record.hs, top, rules), output_loss

    def _propagation(self, record: ForwardRecord) -> tuple[list, list]:
        """The feedback map and the propagation rule of every layer (index 0
        unused), as :func:`targets.propagate_targets` takes them."""
        feedbacks, rules = [None], [None]
        for layer in record.layers:
            exact = isinstance(layer.g, InverseAffine)
            if exact and self.inverse_damping > 0:
                feedbacks.append(layer.g)
                rules.append(partial(tg.damped_inverse_propagate, damping=self.inverse_damping))
            else:  # learned maps are gated (where set), exact inverses never
                linear = getattr(layer, "feedback_linear", None)
                if self.propagate is tg.difference_propagate and linear is not None:  # g affine: one product
                    feedback, propagate = linear, tg.linear_difference_propagate
                else:
                    feedback, propagate = (layer.feedback if layer.g is not None else None), self.propagate
                    if propagate is tg.difference_propagate and not layer.feedback_stacks:
                        propagate = tg.difference_propagate_apart  # g normalises over its batch
                feedbacks.append(feedback)
                gate = layer.g is not None and not exact and self._gates(layer)
                rules.append(tg.gated(propagate, partial(activation_derivative, layer.activation))
                             if gate else propagate)
        return feedbacks, rules

    def forward_loss(self, net, record, y):
        targets, output_loss = self.targets(net, record, y)
        if self.local_update != "autograd":
            local = delta_rule_loss(record.layers, record.hs[:-1], targets,
                                    derivative=self.local_update == "delta")
        else:
            outputs = [record.stacked_outputs] if record.stacked_outputs is not None else record.outputs
            targets_in = [torch.cat(targets)] if record.stacked_outputs is not None else targets
            if self.loss_average == "units":
                outputs, targets_in = _unit_scaled(outputs), _unit_scaled(targets_in)
            # a batch mean, whatever the layers' rows (a recurrent net's stacked steps, a tree's levels)
            local = local_target_loss(outputs, targets_in, examples=len(record.x))
        return ForwardLoss(output_loss + _with_penalties(local, record), output_loss.detach(), targets)

    def feedback_loss(self, net, record, targets=None):
        hs = record.hs
        noise = SharedNoise() if self.shared_noise else gaussian_like
        paths = self.feedback_paths(record)
        losses = []
        for l, (layer, h_below, h, count) in enumerate(stacked_steps(record.layers, hs, record.states)):
            if layer.g is None or not layer.feedback_parameters():  # none, or exact (nothing to learn)
                continue
            if layer.drops_input:  # the objectives invert the deterministic f, without the mask
                with torch.no_grad():
                    h = layer.fixed_forward(h_below)
            # a batch mean over `count` stacked steps, times count: the sum of their losses
            shared = noise.stacked(count) if count > 1 and self.shared_noise else noise
            path = {} if paths is None else {"path": paths[l]}
            loss = self.feedback_objective(layer, h_below, h, self.feedback_noise, self.feedback_reg, shared, **path)
            scale = count * (2 / h_below[0].numel() if self.loss_average == "units" else 1)
            losses.append(loss if scale == 1 else scale * loss)
        return torch.stack(losses).sum() if losses else None

    def feedback_paths(self, record: ForwardRecord) -> list[fb.FeedbackPath] | None:
        """The path above each layer that its feedback objective reaches
        through (:class:`DampedTargetPropagation`); none: layer by layer."""
        return None


@dataclass(kw_only=True)
class DampedTargetPropagation(TargetPropagation):
    """The family with a damped feedback objective: DRL's λ‖g(h_l + ση) − g(h_l)‖²
    term (Meulemans et al. 2020) is a setting of its own."""

    feedback_reg: float = setting(0.0, "λ of DRL's damping term ‖g(h_l + ση) − g(h_l)‖²/σ²")
    drl_path: str = setting("layer", "layer: the DRL through f_l and g_l alone; whole: the noisy h_{l-1} goes "
                            "up every layer above to h_L and back down the feedback path before g_l, as "
                            "Meulemans et al. (2020) define it (on chains; a recurrent net's steps keep the "
                            "layer form)",
                            ("layer", "whole"))

    def feedback_paths(self, record: ForwardRecord) -> list[fb.FeedbackPath] | None:
        """For ``drl_path=whole`` on a chain, the path above layer l
        (:class:`core.feedback.FeedbackPath`): up through the fixed maps of
        layers l+1..L, down the propagation of the targets (the same maps,
        corrections and gating), from h_L. Its cost grows as L²."""
        if self.drl_path == "layer" or record.states is not None:
            return None
        feedbacks, rules = self._propagation(record)
        hs, layers = record.hs, record.layers

        def up(h: Tensor, above) -> Tensor:
            for layer in above:
                h = layer.fixed_forward(h)
            return h

        def down(top: Tensor, first: int) -> Tensor:
            return tg.propagate_targets(feedbacks, hs, top, rules, first=first)[0]

        return [fb.FeedbackPath(partial(up, above=layers[l + 1:]), partial(down, first=l + 1), hs[-1])
                for l in range(len(layers))]


@dataclass(kw_only=True)
class DirectTargetPropagation(Rule):
    """Direct difference target propagation with linear direct feedback,
    DDTP-linear (Meulemans et al. 2020, §5):

    1. output target: τ = a − η ∂ℓ/∂a, a the logits, ℓ the per-example loss;
    2. targets:       ĥ_l = h_l + Q_l(τ − a) for every hidden layer, Q_l a
                      linear map from the output (:mod:`core.direct`): the
                      difference form, one product a layer, no chain of g's;
    3. feedback:      the direct difference reconstruction loss trains every
                      Q_l toward the damped pseudo-inverse of ∂a/∂h_l, so the
                      targets approach Gauss–Newton targets;
    4. local update:  DTP's, Σ_l ½‖f_l(h_{l-1}) − ĥ_l‖², and the output loss
                      for the read-out.
    """

    name: str
    target_step: float = setting(0.1, "η of the output target τ = a − η ∂ℓ/∂a (a the logits)")
    feedback_noise: float = setting(0.1, "σ of the noise in the direct difference reconstruction loss")
    feedback_reg: float = setting(0.0, "λ of its damping term ‖Q_l ση‖²/σ²")
    network_kinds = ("direct",)
    uses_feedback = True
    handles_regression = True

    def __post_init__(self) -> None:
        check(self)
        if self.feedback_noise <= 0:
            raise ValueError("setting 'feedback_noise' must be > 0")

    def targets(self, net, record: ForwardRecord, y: Tensor) -> tuple[list[Tensor], Tensor]:
        grad, output_loss = _output_gradient(record, y)
        with torch.no_grad():
            step = grad * -self.target_step  # τ − a
            targets = [h + q(step) for q, h in zip(net.direct, record.hs[1:])]
        return targets, output_loss

    def forward_loss(self, net, record, y):
        targets, output_loss = self.targets(net, record, y)
        local = _with_penalties(local_target_loss(record.outputs, targets), record)
        return ForwardLoss(output_loss + local, output_loss.detach(), targets)

    def feedback_loss(self, net, record, targets=None):
        return torch.stack([direct_difference_reconstruction_loss(q, h, partial(net.above, l), self.feedback_noise,
                                                                  self.feedback_reg)
                            for l, (q, h) in enumerate(zip(net.direct, record.hs[1:]), start=1)]).sum()


@dataclass(kw_only=True)
class FixedWeightTargetPropagation(TargetPropagation):
    """Fixed-weight difference target propagation (Shibuya et al. 2023):
    DTP whose feedback maps are drawn at random once and never trained
    (:mod:`core.fixed`), the top target brought to h_L from the output by a
    fixed map B_out too:

    1. top target:  ĥ_L = h_L + g_out(a − η ∂ℓ/∂a) − g_out(a), a the logits,
                    g_out(u) = B_out u (or act(B_out u));
    2. propagation: ĥ_{l-1} = h_{l-1} + g_l(ĥ_l) − g_l(h_l), g_l fixed;
    3. feedback:    none (nothing to train);
    4. local update: as DTP's.

    The maps Shibuya et al. report are act(B h) with a tiny B under batch
    standardisation of every activation; without it, a variance-keeping B
    (``feedback_scale``) carries the target steps down undiminished."""

    feedback_scale: float = setting(1.0, "s of every fixed feedback weight, U(±s·√(3/fan_in)), drawn once",
                                    above=0)
    # read by the family's feedback objectives, which this rule has none of
    feedback_noise: float = field(default=0.1, init=False)
    shared_noise: bool = field(default=True, init=False)
    inverse_damping: float = field(default=0.3, init=False)
    network_kinds = ("fixed",)
    uses_feedback = False
    contract_exemptions = {"feedback": "its feedback maps are fixed random matrices: there is nothing to train"}

    def network_options(self, kind: str) -> dict:
        return {"feedback_map": self.feedback_map, "feedback_scale": self.feedback_scale}

    def top_target(self, net, record: ForwardRecord, y: Tensor) -> tuple[Tensor, Tensor]:
        grad, output_loss = _output_gradient(record, y)
        with torch.no_grad():
            a = record.logits.detach()
            top = tg.difference_propagate(net.output_feedback, record.top.detach(), a,
                                          torch.add(a, grad, alpha=-self.target_step))
        return top, output_loss

    def feedback_loss(self, net, record, targets=None):
        return None


def _unit_scaled(tensors: list[Tensor]) -> list[Tensor]:
    """Each tensor times √(2/units): ½‖·‖² of their differences becomes the mean over units."""
    return [t * (2 / t[0].numel()) ** 0.5 for t in tensors]


def _output_gradient(record: ForwardRecord, y: Tensor) -> tuple[Tensor, Tensor]:
    """∂ℓ/∂a of the per-example output loss ℓ at the logits a, and its batch mean."""
    per_example = output_loss(record.logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(per_example, record.logits, retain_graph=True)
    return grad, per_example / labelled_rows(y).clamp_min(1)


def _with_penalties(local: Tensor, record: ForwardRecord) -> Tensor:
    """``local`` plus each layer's own term (:meth:`layers.Layer.penalty`): its gradient stays local."""
    for layer, h_below in zip(record.layers, record.hs):
        penalty = layer.penalty(h_below)
        if penalty is not None:
            local = local + penalty
    return local
