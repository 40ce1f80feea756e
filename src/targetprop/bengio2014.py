"""Auto-encoder-mediated target propagation: Bengio (2014), Algorithm 5
(training) and Algorithm 4 (prediction), for supervised and semi-supervised
classification.

Labels travel with the batch: y = −1 marks an unlabelled example (m = 0).

Departures from the paper's text, and why:

* α follows Eq. 19 (weight α on the joint likelihood): α = 1 gives the joint
  target ĥ_{L-1}, α = 0 the fully discriminant target of Eq. 18,
  ĥ_{L-1} − h̃_{L-1} + h_{L-1}. Algorithm 5's caption states the opposite
  direction; Eqs. 17–19 fix the one used here.
* The top auto-encoder (f_L, g_L) is one layer in the sense of §6: its
  reconstruction losses are back-propagated inside it (into f_L as well as
  g_L), never below it in strict mode.
* While the top auto-encoder trains, observed labels are hidden at its input
  with probability ``label_hide`` and remain reconstruction targets (the
  modality-level masking of §4): without it, the m = 0 path that Algorithm 4
  predicts with would never be trained to produce y. The long loop that
  makes the targets always shows every known label, as Algorithm 5 does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .conditional import ConditionalNetwork
from .corruption import Corruption, gaussian_like
from .diagnostics import angle_degrees
from .networks import parse_arch
from .recirculation import short_loop_loss
from .rules import ForwardLoss, ForwardRecord, Rule, accepted_settings
from .targets import PROPAGATION_RULES, propagate_targets
from .updates import half_squared_error, local_target_loss

Tensor = torch.Tensor

__all__ = ["Bengio2014", "hybrid_target", "make_bengio2014", "CREDIT_ASSIGNMENT"]

CREDIT_ASSIGNMENT = ("strict", "hybrid")


def hybrid_target(joint: Tensor, unsupervised: Tensor, h: Tensor, alpha: float) -> Tensor:
    """Eq. 19: ĥ + (1 − α)(h − h̃), with ĥ the reconstruction of h with y given
    (``joint``) and h̃ without (``unsupervised``). α = 1: ĥ (Eq. 16, the joint
    of x and y); α = 0: ĥ − h̃ + h (Eq. 18, the discriminant target)."""
    return joint + (1.0 - alpha) * (h - unsupervised)



@dataclass(kw_only=True)
class Bengio2014(Rule):
    """Algorithm 5, one batch:

    1. short loops (Algorithm 2) at layers 1..L-1: h_{l-1} is a target for
       g_l(corrupt(h_l)), h_l a target for f_l(g_l(corrupt(h_l)))
       (``feedback_loss``; steps 2–4 are ``forward_loss``);
    2. top: h_L = f_L(h_{L-1}, m·y, m); the top auto-encoder learns to
       reconstruct y (labelled examples) and h_{L-1} from corrupt(h_L);
    3. noise-free long loop: ĥ_{L-1} = g_L^h(h_L), made discriminant by
       Eq. 19 where y is given; ĥ_{l-1} = g_l(ĥ_l) down the stack;
    4. ĥ_l is a target for h_l (updates f_l) and h_{l-1} a target for
       g_l(corrupt(ĥ_l)) (updates g_l).

    ``credit_assignment="strict"``: every input is detached at layer
    boundaries, so each target updates only the layer it belongs to;
    ``"hybrid"``: the same targets are back-propagated through the stack below
    them (§9, question 1).

    ``propagation="tp"`` is the paper's ĥ_{l-1} = g_l(ĥ_l); ``"difference"``
    swaps in the correction of Lee et al. (2015), h_{l-1} + g_l(ĥ_l) − g_l(h_l),
    which cancels each decoder's reconstruction error.

    ``top_input_noise`` (σ of Gaussian noise on h_{L-1} at the top encoder's
    input while the top auto-encoder trains) makes the reconstruction of
    h_{L-1} depend on y, and so gives the discriminant target ĥ − h̃ its
    strength; the paper corrupts only the code h_L.
    """

    name: str = "bengio2014"
    alpha: float = 0.0
    credit_assignment: str = "strict"
    # σ from the nearest-neighbour distance (§2.2.5): a fixed σ larger than
    # the spread of a representation makes the best denoiser a constant, and
    # the long-loop targets then collapse the stack onto it.
    corruption: Corruption = field(default_factory=lambda: Corruption(sigma="nn"))
    label_hide: float = 0.2
    corrupt_encoder_input: bool = False
    top_input_noise: float = 0.3
    propagation: str = "tp"
    uses_feedback: bool = field(default=True, init=False)
    handles_unlabelled: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        if self.credit_assignment not in CREDIT_ASSIGNMENT:
            raise ValueError(f"unknown credit_assignment {self.credit_assignment!r}; "
                             f"choose one of: {', '.join(CREDIT_ASSIGNMENT)}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not 0 <= self.label_hide <= 1:
            raise ValueError(f"label_hide must lie in [0, 1], got {self.label_hide}")
        if self.propagation not in PROPAGATION_RULES:
            raise ValueError(f"unknown propagation {self.propagation!r}; "
                             f"choose one of: {', '.join(PROPAGATION_RULES)}")

    def build_network(self, arch, in_features, num_classes, activation="tanh", dropout=0.0):
        return ConditionalNetwork(in_features, parse_arch(arch), num_classes, activation, dropout)

    def record(self, net: ConditionalNetwork, x: Tensor) -> ForwardRecord:
        strict = self.credit_assignment == "strict"
        hs, outputs, h = [x], [], x
        for layer in net.layers:
            out = layer(h.detach() if strict else h)
            outputs.append(out)
            hs.append(out.detach())
            h = out
        return ForwardRecord(hs, outputs, hs[-1], net.output(hs[-1]))  # logits: Algorithm 4

    def feedback_loss(self, net: ConditionalNetwork, record: ForwardRecord) -> Tensor:
        """The short loops (Algorithm 2) at layers 1..L-1: they need no label, so
        they also serve as layer-wise pre-training (``feedback_pretrain_epochs``)."""
        hs = record.hs
        losses = [short_loop_loss(layer, hs[l], hs[l + 1], self.corruption, self.corrupt_encoder_input)
                  for l, layer in enumerate(net.layers)]
        return sum(losses[1:], losses[0])

    def forward_loss(self, net: ConditionalNetwork, record: ForwardRecord, y: Tensor) -> ForwardLoss:
        top, hs, corrupt = net.output, record.hs, self.corruption
        labelled = y >= 0
        shown = labelled & (torch.rand(y.shape, device=y.device) >= self.label_hide)
        h_below = hs[-1]

        # the top auto-encoder, trained as a denoising auto-encoder inside itself
        encoder_input = h_below
        if self.top_input_noise:
            encoder_input = h_below + self.top_input_noise * gaussian_like(h_below)
        code = corrupt(top.encode(encoder_input, y, shown))
        loss = half_squared_error(top.g_h(code), h_below)
        if labelled.any():
            loss = loss + F.cross_entropy(top.g_y(code)[labelled], y[labelled],
                                          reduction="sum") / len(y)

        with torch.no_grad():  # the noise-free long loop: targets, every known label shown
            target = top.g_h(top.encode(h_below, y, labelled))
            if self.alpha < 1 and labelled.any():
                unsupervised = top.g_h(top.encode(h_below, y, torch.zeros_like(labelled)))
                target = torch.where(labelled.unsqueeze(1),
                                     hybrid_target(target, unsupervised, h_below, self.alpha), target)
            feedbacks = [None] + [layer.feedback for layer in net.layers]
            targets = propagate_targets(feedbacks, hs, target, PROPAGATION_RULES[self.propagation])

        loss = loss + local_target_loss(record.outputs, targets)
        for l, (layer, target) in enumerate(zip(net.layers, targets)):  # long-loop decoders
            loss = loss + half_squared_error(layer.feedback(corrupt(target)), hs[l])
        output_loss = (F.cross_entropy(record.logits[labelled], y[labelled]) if labelled.any()
                       else record.logits.new_zeros(()))
        return ForwardLoss(loss, output_loss.detach(), targets)

    @torch.no_grad()
    def diagnostics(self, net: ConditionalNetwork, record: ForwardRecord, y: Tensor) -> dict[str, float]:
        """``discriminant_norm``: mean ‖ĥ_{L-1} − h̃_{L-1}‖, the step of the fully
        discriminant target (Eq. 18) on labelled examples; ``discriminant_angle``:
        its angle (degrees) to the gradient of the prediction's log-likelihood,
        ∂log P(y|h_{L-1})/∂h_{L-1} through Algorithm 4; ``long_recon_l``:
        relative error of the noise-free long loop with y missing, from h_l up
        to the top and back down by ĥ_{l-1} = g_l(ĥ_l) (the short loop's error
        is the engine's ``recon_l``)."""
        top, hs = net.output, record.hs
        h_below, labelled = hs[-1], y >= 0
        missing = torch.zeros_like(labelled)
        unsupervised = top.g_h(top.encode(h_below, y, missing))
        out = {}
        if labelled.any():
            joint = top.g_h(top.encode(h_below, y, labelled))
            step = (joint - unsupervised)[labelled]
            out["discriminant_norm"] = step.norm(dim=1).mean().item()
            with torch.enable_grad():  # Eq. 17 claims the step follows ∂log P(y|h)/∂h
                h = h_below.detach().requires_grad_()
                log_likelihood = -F.cross_entropy(top(h)[labelled], y[labelled], reduction="sum")
                (ascent,) = torch.autograd.grad(log_likelihood, h)
            out["discriminant_angle"] = angle_degrees(step, ascent[labelled])
        reconstruction = unsupervised
        for l in range(len(net.layers), 0, -1):
            out[f"long_recon_{l}"] = _relative_error(reconstruction, hs[l])
            reconstruction = net.layers[l - 1].feedback(reconstruction)
        return out


def _relative_error(reconstruction: Tensor, h: Tensor) -> float:
    return ((reconstruction - h).pow(2).sum() / h.pow(2).sum().clamp_min(1e-12)).item()


def make_bengio2014(corruption_sigma: str | float = "nn", corruption_mask: float = 0.0,
                    **settings) -> Bengio2014:
    """The rule from flat settings (the run configuration); keys it does not
    use are ignored."""
    sigma = corruption_sigma if corruption_sigma == "nn" else float(corruption_sigma)
    return Bengio2014(corruption=Corruption(sigma, corruption_mask),
                      **accepted_settings(Bengio2014, settings, {"name", "corruption"}))
