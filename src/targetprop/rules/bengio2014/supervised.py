"""Bengio (2014) Algorithm 5 (training) and Algorithm 4 (prediction) on a
:class:`conditional.ConditionalNetwork`: a stack of layer-wise
auto-encoders under a conditional top auto-encoder that sees the label.
The piece that :class:`rule.Bengio2014` composes for that kind of network
(its settings' meanings are the rule's)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F

from ...autoencoders.corruption import Corruption
from ...autoencoders.recirculation import short_loop_loss
from ...core.diagnostics import angle_degrees
from ...core.noise import SharedNoise
from ...core.rule import ForwardLoss, ForwardRecord
from ...core.targets import PROPAGATION_RULES, hybrid_target, propagate_targets
from ...core.updates import half_squared_error, local_target_loss
from .conditional import ConditionalNetwork

Tensor = torch.Tensor

__all__ = ["AutoEncoderRecord", "Algorithm5"]


@dataclass
class AutoEncoderRecord(ForwardRecord):
    """The forward pass plus each hidden layer's corruption σ, measured once
    per batch on h_l and used for both h_l and its target ĥ_l, and the step's
    shared noise (:class:`core.noise.SharedNoise`): objectives with no
    parameter in common share its samples, so each stays unbiased."""
    sigmas: list[float | Tensor] = field(default_factory=list)
    noise: SharedNoise = field(default_factory=SharedNoise)


@dataclass
class Algorithm5:
    """Algorithm 5 on a conditional net, one batch (:class:`rule.Bengio2014`
    states the steps); built by the rule from its settings."""
    corruption: Corruption
    credit_assignment: str = "strict"
    label_hide: float = 0.5
    corrupt_encoder_input: bool = False
    recirculation_weight: float = 0.0
    top_input_noise: float = 0.3
    propagation: str = "difference"
    discriminant: str = "reconstruction"
    discriminant_step: float = 1.0
    alpha: float = 0.0
    unlabelled_step: float = 1.0
    layer_backprop: bool = False

    def record(self, net: ConditionalNetwork, x: Tensor) -> AutoEncoderRecord:
        strict = self.credit_assignment == "strict"
        h = net.as_input(x)
        hs, outputs = [h], []
        for layer in net.layers:
            out = layer(h.detach() if strict else h)
            outputs.append(out)
            hs.append(out.detach())
            h = out
        with torch.no_grad():
            logits = net.output(hs[-1])  # Algorithm 4, for the output loss and accuracy only
            sigmas = self.corruption.scales(hs[1:], first_index=1)
        return AutoEncoderRecord(hs, outputs, hs[-1], logits, net.layers, sigmas=sigmas)

    def feedback_loss(self, net: ConditionalNetwork, record: AutoEncoderRecord,
                      targets: list[Tensor] | None = None) -> Tensor:
        """The short loops (Algorithm 2) at layers 1..L-1 and, given the step's
        targets ĥ_l, the long loop's decoder terms (Algorithm 5): h_{l-1} is a
        target for g_l(corrupt(ĥ_l)). Without targets (feedback pre-training,
        ``feedback_pretrain_epochs``) no label is needed.

        The corruption of ĥ_l uses h_l's σ; layers of equal width share the
        record's noise sample. With ``layer_backprop`` the reconstruction of
        h_{l-1} also trains f_l (back-prop inside the layer, §6)."""
        hs, noise = record.hs, record.noise
        codes = record.outputs if self.layer_backprop else hs[1:]
        losses = [short_loop_loss(layer, hs[l], codes[l],
                                  partial(self.corruption, sigma=record.sigmas[l], noise=noise),
                                  partial(self.corruption, noise=noise, index=l)
                                  if self.corrupt_encoder_input else None,
                                  self.recirculation_weight,
                                  None if targets is None else targets[l], self.layer_backprop)
                  for l, layer in enumerate(net.layers)]
        return torch.stack(losses).sum()

    def forward_loss(self, net: ConditionalNetwork, record: AutoEncoderRecord, y: Tensor) -> ForwardLoss:
        top, hs = net.output, record.hs
        labelled = y >= 0
        shown = labelled & (torch.rand(y.shape, device=y.device) >= self.label_hide)
        h_below = hs[-1]

        # The top auto-encoder, trained as a denoising auto-encoder inside itself;
        # its input noise and its code's corruption are independent halves of
        # the noise sample the decoders of the long and short loops share.
        n, width = h_below.shape
        input_noise, code_noise = record.noise.sample(
            (2 * n, width), h_below.dtype, h_below.device).split(n)
        encoder_input = h_below
        if self.top_input_noise:
            encoder_input = torch.add(h_below, input_noise, alpha=self.top_input_noise)
        code = top.encode(encoder_input, y, shown)
        if code.shape != code_noise.shape:  # a top code of another width draws its own
            code_noise = record.noise(code)
        code = self.corruption(code, noise=lambda _: code_noise, index=len(hs))
        loss = half_squared_error(top.g_h(code), h_below)
        if labelled.any():  # averaged over the labelled examples, however few a batch holds
            loss = loss + F.cross_entropy(top.g_y(code), y, ignore_index=-1)

        with torch.no_grad():  # the noise-free long loop: targets, every known label shown
            target = self.top_target(top, h_below, y, labelled)
            feedbacks = [None] + [layer.feedback for layer in net.layers]
            targets = propagate_targets(feedbacks, hs, target, PROPAGATION_RULES[self.propagation])

        loss = loss + local_target_loss(record.outputs, targets)  # the long loop's decoders: feedback_loss
        output_loss = (F.cross_entropy(record.logits, y, ignore_index=-1) if labelled.any()
                       else record.logits.new_zeros(()))
        return ForwardLoss(loss, output_loss.detach(), targets)

    def top_target(self, top, h_below: Tensor, y: Tensor, labelled: Tensor) -> Tensor:
        """ĥ_{L-1}. Labelled rows: the joint reconstruction ĥ (every known
        label shown), made discriminant by Eq. 19. Unlabelled rows:
        h + u (ĥ − h), u = ``unlabelled_step`` (Algorithm 5 has u = 1)."""
        discriminant = self.alpha < 1 and bool(labelled.any())
        if discriminant and self.discriminant == "reconstruction":
            joint, unsupervised = top.reconstruct(h_below, y, labelled, torch.zeros_like(labelled))
            step = joint - unsupervised
        else:
            (joint,) = top.reconstruct(h_below, y, labelled)
            step = _log_likelihood_gradient(top, h_below, y, labelled) if discriminant else None
        labelled_target = joint if step is None else hybrid_target(
            joint, self.discriminant_step * step, h_below, self.alpha)
        return torch.where(labelled.unsqueeze(1), labelled_target,
                           torch.lerp(h_below, joint, self.unlabelled_step))

    @torch.no_grad()
    def record_diagnostics(self, net: ConditionalNetwork, record: ForwardRecord, y: Tensor) -> dict[str, float]:
        """``discriminant_norm``: mean ‖ĥ_{L-1} − h̃_{L-1}‖, the step of the fully
        discriminant target (Eq. 18) on labelled examples; ``discriminant_angle``:
        its angle (degrees) to the gradient of the prediction's log-likelihood,
        ∂log P(y|h_{L-1})/∂h_{L-1} through Algorithm 4; ``long_recon_l``:
        relative error of the noise-free long loop with y missing, from h_l up
        to the top and back down by ĥ_{l-1} = g_l(ĥ_l) (the short loop's error
        is the engine's ``recon_l``)."""
        top, hs = net.output, record.hs
        h_below, labelled = hs[-1], y >= 0
        joint, unsupervised = top.reconstruct(h_below, y, labelled, torch.zeros_like(labelled))
        out = {}
        if labelled.any():
            step = (joint - unsupervised)[labelled]
            out["discriminant_norm"] = step.norm(dim=1).mean().item()
            ascent = _log_likelihood_gradient(top, h_below, y, labelled)  # what Eq. 17 says step follows
            out["discriminant_angle"] = angle_degrees(step, ascent[labelled])
        reconstruction = unsupervised
        for l in range(len(net.layers), 0, -1):
            out[f"long_recon_{l}"] = _relative_error(reconstruction, hs[l])
            reconstruction = net.layers[l - 1].feedback(reconstruction)
        return out



def _log_likelihood_gradient(top, h_below: Tensor, y: Tensor, labelled: Tensor) -> Tensor:
    """∂ Σ log P(y|h_{L-1}) / ∂h_{L-1} over labelled rows, P(y|·) the
    prediction of Algorithm 4; zero on unlabelled rows."""
    with torch.enable_grad():
        h = h_below.detach().requires_grad_()
        log_likelihood = -F.cross_entropy(top(h)[labelled], y[labelled], reduction="sum")
        (ascent,) = torch.autograd.grad(log_likelihood, h)
    return ascent


def _relative_error(reconstruction: Tensor, h: Tensor) -> float:
    return ((reconstruction - h).pow(2).sum() / h.pow(2).sum().clamp_min(1e-12)).item()
