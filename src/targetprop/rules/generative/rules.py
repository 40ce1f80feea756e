"""Unsupervised target propagation in deep generative stacks (Bengio 2014
§2.2.5): Algorithm 2 (``generative``, no back-prop between layers) and
Algorithm 1 (``generative-bp``, the criterion of Eq. 7 by back-prop).

Both train every chain of a :class:`stacks.GenerativeStack` and its top
level; an ``image+label`` stack also learns the label as a modality and
classifies by completing it (Algorithm 6). Departures from the text, and why
(Fashion-MNIST, benchmarks/generative.py):

* ``layer_backprop=True``: each layer's denoising reconstruction error,
  ½‖g_l(corrupt(h_l)) − h_{l-1}‖², also trains its encoder f_l, back-
  propagated inside the layer only (§6 allows back-prop within a layer).
  In Algorithm 2 as written the encoders learn only from the prior's pull
  ("ĥ_l is a target for h_l") and the recirculation term ("h_l is a target
  for f_l(h̃_{l-1})"), and a constant code satisfies both: the stack
  collapses (noise-free reconstruction error 0.087 per pixel after 3
  epochs, against 0.019 with the layer's own error; the top code's
  nearest-neighbour spread shrinks every epoch).
* ``prior_weight`` scales the pull of the top prior: Algorithm 2's target is
  h_{L-1} + w (ĥ_{L-1} − h_{L-1}), Algorithm 1's long-loop terms are
  weighted by w. The text's w = 1 lowers the Parzen log-likelihood of the
  samples; the default is w = 0.1.
* ``propagation="difference"`` by default (Lee et al. 2015), as for
  ``bengio2014``: with ĥ_{l-1} = g_l(ĥ_l) every decoder's reconstruction
  error is added to the targets below it.
* The denoising top is an MLP (``top_hidden=512``; §6's advice that the
  encoder or decoder of a layer may be a small network): a one-layer top
  cannot model Q(h_{L-1}) well enough for its chain to give good samples.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

import torch

from ...autoencoders.corruption import Corruption, parse_sigma
from ...autoencoders.recirculation import short_loop_loss
from ...autoencoders.sampling import decode_down
from ...core.noise import SharedNoise, gaussian_like
from ...core.objectives import classification_scores
from ...core.rule import ForwardLoss, Rule, Scores
from ...core.settings import check, setting
from ...core.targets import PROPAGATION_RULES, hybrid_target, propagate_targets
from ...core.updates import gaussian_nll, half_squared_error, local_target_loss
from .inference import generate
from .stacks import MODALITIES, GenerativeStack
from .tops import TOP_CRITERIA, TOPS

Tensor = torch.Tensor

__all__ = ["StackRecord", "GenerativeRule", "GenerativeTP", "GenerativeBackprop"]


@dataclass
class StackRecord:
    """One batch's forward pass through every chain (a :class:`core.rule.Record`):
    ``chains`` holds the detached h_0..h_{L-1} of each chain, ``outputs`` the
    same h_1..h_{L-1} with a graph back to each layer's own input (all
    chains, in ``net.layers`` order), ``sigmas`` the corruption σ of each."""
    chains: list[list[Tensor]]
    outputs: list[Tensor] = field(default_factory=list)
    sigmas: list = field(default_factory=list)
    noise: SharedNoise = field(default_factory=SharedNoise)
    logits: Tensor | None = None

    @property
    def x(self) -> Tensor:
        return torch.cat([hs[0] for hs in self.chains], dim=1)

    def pairs(self) -> list[tuple[Tensor, Tensor]]:
        """(h_{l-1}, h_l) for every layer, in ``net.layers`` order."""
        return [(hs[l - 1], hs[l]) for hs in self.chains for l in range(1, len(hs))]


def squared_error_per_feature(prediction: Tensor, target: Tensor) -> Tensor:
    return (prediction - target).pow(2).mean()


@dataclass(kw_only=True)
class GenerativeRule(Rule):
    """What both algorithms share: the stack they build, its settings, and
    the diagnostics (reconstruction error of x from every layer)."""

    name: str
    top_prior: str = setting("dae", "the model of P(h_{L-1}) on top (§7)", tuple(TOPS))
    modalities: str = setting("image", "image, halves (upper and lower, one chain each) or image+label (§4)",
                              MODALITIES)
    top_width: int = setting(256, "code width h_L of a dae or learned-noise top")
    top_hidden: int = setting(512, "> 0: the top encoder and decoder are MLPs with a hidden layer this wide (§6)")
    top_sigma: float = setting(0.0, "corruption σ of the top level (0: nearest-neighbour, §2.2.5)")
    modality_hide: float = setting(0.67, "fraction of training rows that hide one modality at the top input")
    walk_back: int = setting(1, "> 1: walk-back steps for the dae top (§2.2.4)")
    top_criterion: str = setting("reconstruction", "criterion of the dae top: reconstruction, or "
                                 "nearest-neighbour (Eq. 15)", TOP_CRITERIA)
    prior_weight: float = setting(0.1, "strength of the top prior's pull on the codes (the paper: 1)")
    alpha: float = setting(1.0, "image+label stacks, Eq. 19: 1 = the joint target, 0 = the discriminant one")
    network_kinds = ("stack",)
    uses_feedback = True
    handles_unlabelled = True  # an image+label stack takes y = -1 as a missing label
    standardize_inputs = False  # features in [0, 1]: samples are images, Parzen estimates comparable
    learned_noise: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check(self)
        if self.prior_weight < 0:
            raise ValueError(f"prior_weight must be >= 0, got {self.prior_weight}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.top_width < 1:
            raise ValueError(f"top_width must be >= 1, got {self.top_width}")

    def network_options(self, kind: str) -> dict:
        """The stack's own shape: modalities, the top level (:func:`stacks.build_stack`)."""
        return {"modalities": self.modalities, "top": self.top_prior, "top_width": self.top_width,
                "top_hidden": self.top_hidden, "top_sigma": self.top_sigma, "modality_hide": self.modality_hide,
                "walk_back": self.walk_back, "top_criterion": self.top_criterion,
                "learned_noise": self.learned_noise}

    def _labels(self, net: GenerativeStack, y: Tensor) -> Tensor | None:
        return y if net.labelled else None

    @staticmethod
    @torch.no_grad()
    def _reconstruction_error(net: GenerativeStack, x: Tensor, h: Tensor | None = None) -> Tensor:
        """Mean squared error per input feature of the noise-free deep
        auto-encoder x → h_{L-1} → x̂ (the output loss of these rules);
        ``h``: the top code of x, when already computed."""
        if h is None:
            return squared_error_per_feature(net.reconstruct(x), x)
        return squared_error_per_feature(net.decode(h), x)

    def train_scores(self, record, result: ForwardLoss, y: Tensor) -> Scores:
        """``train_loss``: the reconstruction error, over every example."""
        count = torch.tensor(len(y), device=y.device)
        return {"loss": (result.output_loss.detach().double() * count, count)}

    @torch.no_grad()
    def evaluate(self, net: GenerativeStack, x: Tensor, y: Tensor) -> Scores:
        """``recon``: squared error per input feature of the noise-free deep
        auto-encoder; an image+label stack adds the loss and accuracy of
        classification by label completion (Algorithm 6)."""
        scores = classification_scores(net(x), y) if net.labelled else {}
        error = (net.reconstruct(x) - x).pow(2).sum().double()
        return scores | {"recon": (error, torch.tensor(x.numel(), device=x.device))}

    @torch.no_grad()
    def diagnostics(self, net: GenerativeStack, x: Tensor, y: Tensor) -> dict[str, float]:
        """``x_recon_l``: mean squared error per feature of x decoded from
        h_l (noise-free, every chain); ``recon_l``: relative error of layer
        l's own auto-encoder, ‖g_l(f_l(h_{l-1})) − h_{l-1}‖²/‖h_{l-1}‖²
        (chains summed); the top's own figures."""
        chains = net.encode(x)
        depth = len(chains[0]) - 1
        out = {}
        for l in range(1, depth + 1):
            decoded = torch.cat([decode_down(hs[l], [layer.feedback for layer in chain[:l]])
                                 for hs, chain in zip(chains, net.chains)], dim=1)
            out[f"x_recon_{l}"] = squared_error_per_feature(decoded, x).item()
            error = sum((chain[l - 1].feedback(hs[l]) - hs[l - 1]).pow(2).sum()
                        for hs, chain in zip(chains, net.chains))
            scale = sum(hs[l - 1].pow(2).sum() for hs in chains)
            out[f"recon_{l}"] = (error / scale.clamp_min(1e-12)).item()
        return out | net.top.diagnostics()

    def epoch_images(self, net: GenerativeStack, x: Tensor) -> dict[str, Tensor]:
        """16 samples (Algorithm 3, 20 steps of the top's chain from noise),
        drawn apart from the training's random stream so that logging them
        changes no run."""
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            return {"samples": generate(net, x, 16, steps=20, generator=torch.Generator().manual_seed(0))[-1]}


@dataclass(kw_only=True)
class GenerativeTP(GenerativeRule):
    """Algorithm 2, one batch, with no back-prop between layers:

    1. up: h_l = f_l(h_{l-1}) in every chain; short loops at every layer:
       h_{l-1} is a target for g_l(corrupt(h_l)) and, with weight
       ``recirculation_weight``, h_l for f_l(g_l(corrupt(h_l)));
    2. top: the top level trains on h = h_{L-1} (all chains joined);
    3. noise-free long loop: ĥ_{L-1} = h + w (top.target(h) − h), carried
       down each chain by ``propagation``;
    4. ĥ_l is a target for h_l = f_l(h_{l-1}) (updates f_l) and h_{l-1} a
       target for g_l(corrupt(ĥ_l)) (updates g_l).

    With ``layer_backprop`` the short loop's reconstruction error of step 1
    also trains f_l (inside the layer), which keeps the codes informative.
    """

    name: str = "generative"
    corruption_sigma: str = setting("nn", "auto-encoder corruption σ: nn (§2.2.5), a number, or one per "
                                    "representation 'σ_x,σ_1,...,σ_{L-1}'")
    corruption_mask: float = setting(0.0, "masking-noise probability of that corruption")
    recirculation_weight: float = setting(1.0, "weight of Algorithm 2's f_l(h̃_{l-1}) → h_l term")
    propagation: str = setting("difference", "long-loop propagation: difference, or tp (the paper's "
                               "ĥ_{l-1} = g_l(ĥ_l))", tuple(PROPAGATION_RULES))
    layer_backprop: bool = setting(True, "each layer's reconstruction error also trains its encoder (§6; "
                                   "false: Algorithm 2 as written, which collapses)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.corruption = Corruption(parse_sigma(self.corruption_sigma), self.corruption_mask)
        if self.recirculation_weight < 0:
            raise ValueError(f"recirculation_weight must be >= 0, got {self.recirculation_weight}")

    def check_network(self, net) -> None:
        super().check_network(net)
        self.corruption.check_depth(len(net.chains[0]) + 1)  # a σ per representation, x to h_{L-1}

    def record(self, net: GenerativeStack, x: Tensor) -> StackRecord:
        chains, outputs, sigmas = [], [], []
        for chain, h in zip(net.chains, net.split(x)):
            hs = [h]
            for layer in chain:
                out = layer(hs[-1])  # hs holds detached values: no graph crosses layers
                outputs.append(out)
                hs.append(out.detach())
            chains.append(hs)
            with torch.no_grad():
                sigmas += self.corruption.scales(hs[1:], first_index=1)
        return StackRecord(chains, outputs, sigmas)

    def forward_loss(self, net: GenerativeStack, record: StackRecord, y: Tensor) -> ForwardLoss:
        h, known = net.join([hs[-1] for hs in record.chains], self._labels(net, y))
        loss = net.top.loss(h, known)
        with torch.no_grad():
            top_target = torch.lerp(h, self.top_target(net, h, known), self.prior_weight)
            targets = []
            for hs, chain, part in zip(record.chains, net.chains, top_target.split(net.code_widths, 1)):
                feedbacks = [None] + [layer.feedback for layer in chain]
                targets += propagate_targets(feedbacks, hs, part, PROPAGATION_RULES[self.propagation])
        loss = loss + local_target_loss(record.outputs, targets)
        return ForwardLoss(loss, self._reconstruction_error(net, record.x, h), targets)

    def top_target(self, net: GenerativeStack, h: Tensor, known: Tensor) -> Tensor:
        """ĥ_{L-1}: the top's noise-free reconstruction. For an image+label
        stack with ``alpha`` < 1, rows with a label get Eq. 19's target,
        α ĥ + (1 − α)(h + ĥ − h̃), h̃ the reconstruction with the label
        hidden (Algorithm 5 on a multi-modal stack)."""
        joint = net.top.target(h, known)
        if not net.labelled or self.alpha == 1 or not known[:, -1].any():
            return joint
        hidden = known.clone()
        hidden[:, -1] = False
        discriminant = hybrid_target(joint, joint - net.top.target(h, hidden), h, self.alpha)
        return torch.where(known[:, -1:], discriminant, joint)

    def feedback_loss(self, net: GenerativeStack, record: StackRecord,
                      targets: list[Tensor] | None = None) -> Tensor:
        """Step 1's short loops and, given the targets, step 4's decoder terms."""
        noise = record.noise
        codes = record.outputs if self.layer_backprop else [h for _, h in record.pairs()]
        losses = [short_loop_loss(layer, h_below, h, partial(self.corruption, sigma=sigma, noise=noise),
                                  None, self.recirculation_weight,
                                  None if targets is None else targets[i], self.layer_backprop)
                  for i, (layer, (h_below, _), h, sigma)
                  in enumerate(zip(net.layers, record.pairs(), codes, record.sigmas))]
        return torch.stack(losses).sum()


@dataclass(kw_only=True)
class GenerativeBackprop(GenerativeRule):
    """Algorithm 1, one batch, every term back-propagated:

    1. up, with noise: h_l = f_l(h_{l-1}) + σ_l ⊙ ξ_l, σ_l learned per unit;
       C += −Σ_j log σ_l,j − log P(x | h_l), the second term the denoising
       reconstruction of x through x → h_l → g_1(…g_l(h_l)), P(x | h)
       Gaussian with a learned variance per feature;
    2. top: C += the top level's criterion on h_{L-1}, whose gradient also
       reaches the encoders below ("maximise log P(h_{L-1}) wrt both Q and
       the prior");
    3. long loop: ĥ_{L-1} = top.target(h_{L-1}), ĥ_{l-1} = g_l(ĥ_l);
       C += w Σ_{l<L-1} ½‖ĥ_l − h_l‖², into the upper loop and into h_l.
    """

    name: str = "generative-bp"
    learned_noise = True
    separate_feedback = False  # the decoders learn inside the one back-propagated cost
    contract_exemptions = {"targets": "Algorithm 1 back-propagates its whole cost: it has no targets",
                           "feedback": "Algorithm 1 trains its decoders inside its one back-propagated "
                                       "cost: there are no feedback steps to schedule"}

    @property
    def local(self) -> bool:
        return False

    def record(self, net: GenerativeStack, x: Tensor) -> StackRecord:
        return StackRecord([[h] for h in net.split(x)])

    def forward_loss(self, net: GenerativeStack, record: StackRecord, y: Tensor) -> ForwardLoss:
        log_noise = iter(net.log_noise)
        log_variance = net.log_variance.split(net.sizes)
        loss, codes, chains = record.x.new_zeros(()), [], []
        for chain, x, log_var in zip(net.chains, net.split(record.x), log_variance):
            hs, h = [], x
            for l, layer in enumerate(chain):
                log_sigma = next(log_noise)
                h = layer(h)
                h = h + log_sigma.exp() * gaussian_like(h)
                hs.append(h)
                decoded = decode_down(h, [below.feedback for below in chain[:l + 1]])
                loss = loss - log_sigma.sum() + gaussian_nll(x, decoded, log_var)
            codes.append(hs[-1])
            chains.append(hs)
        h, known = net.join(codes, self._labels(net, y))
        loss = loss + net.top.loss(h, known)
        if self.prior_weight:
            target = net.top.target(h, known)
            for hs, chain, part in zip(chains, net.chains, target.split(net.code_widths, 1)):
                for l in range(len(hs) - 1, 0, -1):  # ĥ_{l-1} = g_l(ĥ_l) against h_{l-1}, l-1 ≥ 1
                    part = chain[l].feedback(part)
                    loss = loss + self.prior_weight * half_squared_error(part, hs[l - 1])
        return ForwardLoss(loss, self._reconstruction_error(net, record.x))
