"""Auto-encoder-mediated target propagation: Bengio (2014), Algorithm 5
(training) and Algorithm 4 (prediction), for supervised and semi-supervised
classification; §5 on recurrent nets (:mod:`.recurrent`).

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
* The defaults are the recipe that trains on Fashion-MNIST (validation
  accuracy after 5 epochs, MLP 5x256: benchmarks/bengio2014_ablations.py):
  - ĥ_{l-1} = g_l(ĥ_l) collapses the stack to chance (10 % against 86 %):
    each decoder's reconstruction error is added to every target. The
    default is ``propagation="difference"`` (Lee et al. 2015), which
    cancels it.
  - Algorithm 2's term "h_l is a target for f_l(h̃_{l-1})" pulls every
    encoder toward an auto-encoder of its own layer and away from its target
    (82 % against 86 %). ``recirculation_weight`` (default 0) scales it; the
    decoders' half of the short loop is always trained.
  - Unlabelled examples pulled toward their reconstruction (Algorithm 5,
    ``unlabelled_step=1``, kept as the default) collapse the
    representations in semi-supervised training (a constant code satisfies
    every target); ``unlabelled_step=0`` lets them train the auto-encoders
    only, and ``layer_backprop=True`` (each layer's reconstruction error also
    trains its encoder, §6) removes the constant solution: the pull then
    helps (benchmarks/semi_supervised.py).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ...autoencoders.corruption import Corruption, parse_sigma
from ...core.rule import ForwardLoss, ForwardRecord, Rule
from ...core.settings import check, setting
from ...core.targets import PROPAGATION_RULES
from .recurrent import Section5
from .trees import Section5Tree
from .supervised import Algorithm5

Tensor = torch.Tensor

__all__ = ["Bengio2014"]

# The settings of each kind of network: the conditional top auto-encoder's
# (mlp:), and §5's (rnn:, the first two on tree: too); the rest are read on all.
_CONDITIONAL_ONLY = ("alpha", "credit_assignment", "label_hide", "corrupt_encoder_input", "top_input_noise",
                     "discriminant", "discriminant_step", "top_hidden", "top_width", "unlabelled_step",
                     "layer_backprop")
_RECURRENT_ONLY = ("state_target_step", "state_gating", "long_loop_stride", "stream_window", "encoder_credit")
_SEQUENCE_ONLY = ("long_loop_stride", "stream_window", "encoder_credit", "recirculation_weight")  # not on trees


@dataclass(kw_only=True)
class Bengio2014(Rule):
    """Algorithm 5, one batch:

    1. short loops (Algorithm 2) at layers 1..L-1: h_{l-1} is a target for
       g_l(corrupt(h_l)), h_l a target for f_l(g_l(corrupt(h_l))) with weight
       ``recirculation_weight`` (``feedback_loss``);
    2. top: h_L = f_L(h_{L-1}, m·y, m); the top auto-encoder learns to
       reconstruct y (labelled examples) and h_{L-1} from corrupt(h_L);
    3. noise-free long loop: ĥ_{L-1} = g_L^h(h_L), made discriminant by
       Eq. 19 where y is given, carried down the stack by ``propagation``;
    4. ĥ_l is a target for h_l (updates f_l; steps 2–4 are ``forward_loss``)
       and h_{l-1} a target for g_l(corrupt(ĥ_l)) (updates g_l;
       ``feedback_loss``, given the targets).

    ``credit_assignment="strict"``: every input is detached at layer
    boundaries, so each target updates only the layer it belongs to;
    ``"hybrid"``: the same targets are back-propagated through the stack below
    them (§9, question 1).

    ``propagation="tp"`` is the paper's ĥ_{l-1} = g_l(ĥ_l); ``"difference"``
    (the default) swaps in the correction of Lee et al. (2015),
    h_{l-1} + g_l(ĥ_l) − g_l(h_l), which cancels each decoder's
    reconstruction error.

    ``discriminant="reconstruction"`` is Eq. 18's step ĥ_{L-1} − h̃_{L-1};
    ``"gradient"`` computes the quantity Eq. 17 says it estimates,
    ∂log P(y|h_{L-1})/∂h_{L-1} with P(y|·) Algorithm 4's predictor, by
    back-prop inside the top layer (allowed by §6). Either is multiplied by
    ``discriminant_step`` (Eq. 17 holds up to a scale). On Fashion-MNIST the
    reconstruction step makes a 65–80° angle with that gradient
    (``discriminant_angle``), and strict training with it ends about two
    points below the gradient step.

    ``top_hidden`` > 0 makes the top encoder f_L and decoder g_L^h small MLPs.

    The rule is two pieces, one per kind of network it trains: on a
    conditional net (built from ``mlp:WIDTHS``) the steps above,
    :class:`supervised.Algorithm5`; on §5's recurrent net (``rnn:WIDTH``)
    :class:`recurrent.Section5`: short loops through a backward net without
    inputs, long loops from the read-out's target step back through time;
    the settings marked "recurrent nets" are its own.

    ``top_input_noise`` (σ of Gaussian noise on h_{L-1} at the top encoder's
    input while the top auto-encoder trains) makes the reconstruction of
    h_{L-1} depend on y, and so gives the discriminant target ĥ − h̃ its
    strength; the paper corrupts only the code h_L.
    """

    name: str = "bengio2014"
    alpha: float = setting(0.0, "Eq. 19: 1 = the joint target (Eq. 16), 0 = the discriminant one (Eq. 18)")
    credit_assignment: str = setting("strict", "strict: no gradient crosses a layer; hybrid: targets "
                                     "back-propagated through the stack below (§9)", ("strict", "hybrid"))
    # σ from the nearest-neighbour distance (§2.2.5): a fixed σ larger than
    # the spread of a representation makes the best denoiser a constant, and
    # the long-loop targets then collapse the stack onto it.
    corruption_sigma: str = setting("nn", "auto-encoder corruption σ: nn (§2.2.5), a number, or one per "
                                    "representation 'σ_x,σ_1,...,σ_L'")
    corruption_mask: float = setting(0.0, "masking-noise probability of that corruption")
    label_hide: float = setting(0.5, "chance of hiding an observed label at the top input while it trains")
    corrupt_encoder_input: bool = setting(False, "also h_l a target for f_l(corrupt(h_{l-1}))")
    recirculation_weight: float = setting(0.0, "weight of Algorithm 2's f_l(h̃_{l-1}) → h_l term (the paper: 1)")
    top_input_noise: float = setting(0.3, "σ of noise on h_{L-1} while the top auto-encoder trains")
    propagation: str = setting("difference", "long-loop propagation: difference, or tp (the paper's "
                               "ĥ_{l-1} = g_l(ĥ_l); collapses)", tuple(PROPAGATION_RULES))
    discriminant: str = setting("reconstruction", "discriminant step: reconstruction (Eq. 18) or "
                                "gradient (Eq. 17)", ("reconstruction", "gradient"))
    discriminant_step: float = setting(1.0, "scale of the discriminant step")
    top_hidden: int = setting(0, "> 0: the top encoder and decoder are MLPs with a hidden layer this wide (§6)")
    top_width: int = setting(0, "a model of your own: the width of the top code h_L (0: the last block's); an "
                             "mlp: spec's last width is its top code")
    unlabelled_step: float = setting(1.0, "u of an unlabelled example's target h + u(ĥ − h) (Algorithm 5: 1)")
    layer_backprop: bool = setting(False, "each layer's reconstruction error also trains its encoder (§6); "
                                   "true by default when the run trains on unlabelled examples")
    state_target_step: float = setting(0.1, "recurrent and tree nets (§5): η of the top target "
                                       "ŝ_T = s_T − η ∂ℓ/∂s_T (a tree's: at its root)")
    state_gating: bool = setting(True, "recurrent and tree nets (§5): multiply each ŝ_t step by act′(s_t) "
                                 "before it goes back a step (a learned inverse's 1/act′ compounds over steps)")
    long_loop_stride: int = setting(0, "recurrent nets (§5): k > 0 also runs label-free long loops from "
                                    "every k-th earlier state and averages each step's targets over them")
    encoder_credit: str = setting("step", "recurrent nets (§5): what trains the encoder h_t = U x_t + b: step "
                                  "(ŝ_t through f's one step, §6), code (its target ĥ_t, §5's text) or both",
                                  ("code", "step", "both"))
    stream_window: int = setting(0, "recurrent nets (§5): K > 0 keeps only the last K steps (the streaming "
                                 "case): earlier steps train g by running sums and get no targets")
    network_kinds = ("conditional", "section5", "section5-tree")
    uses_feedback = True
    handles_unlabelled = True
    # Unlabelled examples pulled toward their reconstruction collapse the codes
    # unless each layer's own reconstruction error trains its encoder
    # (benchmarks/semi_supervised.py); with every label known it costs accuracy.
    semi_supervised_defaults = {"layer_backprop": True}

    def __post_init__(self) -> None:
        check(self)
        self.corruption = Corruption(parse_sigma(self.corruption_sigma), self.corruption_mask)
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if not 0 <= self.unlabelled_step <= 1:
            raise ValueError(f"unlabelled_step must lie in [0, 1], got {self.unlabelled_step}")
        if self.top_hidden < 0 or self.top_width < 0:
            raise ValueError("top_hidden and top_width must be >= 0")
        if self.recirculation_weight < 0:
            raise ValueError(f"recirculation_weight must be >= 0, got {self.recirculation_weight}")
        if not 0 <= self.label_hide <= 1:
            raise ValueError(f"label_hide must lie in [0, 1], got {self.label_hide}")
        if self.long_loop_stride < 0 or self.stream_window < 0:
            raise ValueError("long_loop_stride and stream_window must be >= 0")
        if self.stream_window and self.recirculation_weight:
            raise ValueError("stream_window keeps the short loops as running sums, which only g's quadratic "
                             "loss has: use recirculation_weight=0 with it")
        # the two pieces, one per kind of network this rule trains
        self.pieces = {
            "conditional": Algorithm5(self.corruption, self.credit_assignment, self.label_hide,
                                      self.corrupt_encoder_input, self.recirculation_weight, self.top_input_noise,
                                      self.propagation, self.discriminant, self.discriminant_step, self.alpha,
                                      self.unlabelled_step, self.layer_backprop),
            "section5": Section5(self.corruption, self.propagation, self.state_target_step, self.state_gating,
                                 self.long_loop_stride, self.stream_window, self.recirculation_weight,
                                 self.encoder_credit),
            "section5-tree": Section5Tree(self.corruption, self.propagation, self.state_target_step,
                                          self.state_gating),
        }

    @property
    def local(self) -> bool:
        return self.credit_assignment == "strict"

    def learns_real_targets(self, kind: str) -> bool:
        return kind == "section5"  # the read-out's gradient step at s_T takes any output loss

    def network_options(self, kind: str) -> dict:
        return {"top_hidden": self.top_hidden, "top_width": self.top_width} if kind == "conditional" else {}

    def check_network(self, net) -> None:
        super().check_network(net)
        if net.kind == "section5-tree":
            if isinstance(self.corruption.sigma, tuple):
                raise ValueError("a tree net has one representation, the node states: give corruption_sigma "
                                 "one number or nn")
            self._check_settings(_CONDITIONAL_ONLY + _SEQUENCE_ONLY, "the conditional top auto-encoder of mlp: "
                                 "networks, or recurrent nets (rnn:)")
        elif net.kind == "section5":
            if getattr(net, "every_state", False):
                raise ValueError("bengio2014 on recurrent nets takes the label at the last state (§5: the long "
                                 "loops start from s_T's target); for a target at every step use bp, tp, dtp, "
                                 "drl or ldrl")
            if isinstance(self.corruption.sigma, tuple):
                raise ValueError("a recurrent net has one representation, the state: give corruption_sigma "
                                 "one number or nn")
            self._check_settings(_CONDITIONAL_ONLY, "the conditional top auto-encoder of mlp: networks")
        else:
            self._check_settings(_RECURRENT_ONLY, "recurrent nets (rnn:)")
            self.corruption.check_depth(len(net.layers) + 2)  # x, h_1..h_{L-1} and the top code

    def _check_settings(self, names: tuple[str, ...], owner: str) -> None:
        """A setting of the other kind of network, changed, is an error (a
        semi-supervised run's own defaults are defaults too)."""
        defaults = {f.name: f.default for f in fields(self)}
        changed = [name for name in names
                   if getattr(self, name) not in (defaults[name], self.semi_supervised_defaults.get(name))]
        if changed:
            raise ValueError(f"setting(s) {', '.join(changed)} belong to {owner}, not to this network")

    # Each method is the piece's for the network's kind (:mod:`.supervised`, :mod:`.recurrent`).

    def record(self, net, x: Tensor) -> ForwardRecord:
        return self.pieces[net.kind].record(net, x)

    def feedback_loss(self, net, record, targets: list[Tensor] | None = None) -> Tensor:
        return self.pieces[net.kind].feedback_loss(net, record, targets)

    def forward_loss(self, net, record, y: Tensor) -> ForwardLoss:
        return self.pieces[net.kind].forward_loss(net, record, y)

    def record_diagnostics(self, net, record, y: Tensor) -> dict[str, float]:
        return self.pieces[net.kind].record_diagnostics(net, record, y)
