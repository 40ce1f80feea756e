"""Counter-current learning, CCL (Kao & Hariharan 2024): a forward chain and
a feedback chain that mirrors it, fed the K class one-hots, each layer of
one aligned with the same layer of the other.

The feedback chain computes, at every depth l, one activation c_l^k per
class k (a "prototype"): c_L = act(U e_k + u), c_{l-1} = g_l(c_l), down to
c_0 = g_1(c_1) in the input's space. Each pair (a_l, c_l) of a forward
feature and the prototypes is trained by the squared error between the
similarities a_l · c_l^k and the one-hot label, both maps on detached
inputs, so that every term is local to f_l and g_{l+1}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.discrete import DISCRETE_UNITS
from ..core.layers import make_activation
from ..core.networks import TPNetwork, flat_features
from ..core.objectives import output_loss
from ..core.rule import ForwardLoss, Rule
from ..core.settings import check, setting

Tensor = torch.Tensor

__all__ = ["DualNetwork", "build_dual", "class_alignment_loss", "CounterCurrent"]


class DualNetwork(TPNetwork):
    """The fully connected chain (:class:`core.networks.TPNetwork`) with g_1
    linear back to the input, g_l = act(V_l h + c_l) above it, and the label
    map ``label_feedback``, U: the K class one-hots → h_L: the forward
    network and the feedback network of CCL, x ← c_0 ← c_1 ← … ← c_L ← e_k."""

    kind: ClassVar[str] = "dual"

    def __init__(self, in_features: int, widths: list[int], num_classes: int, activation: str = "tanh",
                 dropout: float = 0.0, hidden: int = 0, normalization: str = "none", input_pair: bool = True):
        super().__init__(in_features, widths, num_classes, activation, dropout, first_feedback=input_pair,
                         hidden=hidden, normalization=normalization)
        self.num_classes = num_classes
        self.label_feedback = nn.Sequential(nn.Linear(num_classes, widths[-1]), make_activation(activation))

    def feedback_parameters(self) -> list[nn.Parameter]:
        return super().feedback_parameters() + list(self.label_feedback.parameters())

    def local_pass(self, x: Tensor, top_gradient: bool = False):
        """:meth:`Chain.local_pass`; nothing reads ∂ℓ/∂h_L, so by default the
        read-out's backward pass stops at its weights."""
        return super().local_pass(x, top_gradient)

    def class_activations(self) -> list[Tensor | None]:
        """c_0..c_L, each (K, width of h_l): the feedback chain on the K
        one-hots, every map on its detached input (its graph its own); c_0
        None without g_1."""
        weight = self.label_feedback[0].weight
        c = [self.label_feedback(torch.eye(self.num_classes, dtype=weight.dtype, device=weight.device))]
        for layer in reversed(self.layers):
            c.insert(0, layer.feedback(c[0].detach()) if layer.g is not None else None)
        return c


def build_dual(spec, input_shape, num_outputs: int, activation: str = "tanh", dropout: float = 0.0,
               layer_hidden: int = 0, normalization: str = "none", input_pair: bool = True) -> DualNetwork:
    """The dual net of an ``mlp:`` spec (g_1 only with ``input_pair``)."""
    if activation in DISCRETE_UNITS:
        raise ValueError(f"ccl aligns continuous features with their prototypes: activation {activation!r} "
                         "sends discrete messages")
    return DualNetwork(flat_features(input_shape), spec.arguments["widths"], num_outputs, activation, dropout,
                       layer_hidden, normalization, input_pair)


def class_alignment_loss(a: Tensor, c: Tensor, y: Tensor, scale: float) -> Tensor:
    """(s / d) · mean_{i,k} (a_i · c_k − [y_i = k])²: the similarities of
    the N features a (N, d) with the K prototypes c (K, d) regressed to the
    one-hot labels (Kao & Hariharan 2024's loss of one layer pair, d the
    layer's width). One product, with both sides' graphs."""
    a, c = a.flatten(1), c.flatten(1)
    return F.mse_loss(a @ c.T, F.one_hot(y, c.shape[0]).to(a.dtype)) * (scale / a.shape[1])


@dataclass(kw_only=True)
class CounterCurrent(Rule):
    """Counter-current learning (Kao & Hariharan 2024):

    1. forward:  a_l = f_l(a_{l-1}), each on its detached input; z = R a_L;
    2. feedback: c_L = act(U e_k + u) for the K one-hots e_k, c_{l-1} = g_l(c_l),
                 each on its detached input, c_0 = g_1(c_1) linear;
    3. loss:     Σ_l (s/d_l) · mean_{i,k} (a_l,i · c_l,k − [y_i = k])² + CE(z, y).

    Pair l trains f_l and g_{l+1} (pair 0, the input and c_0, trains g_1
    alone), the cross-entropy trains the read-out alone: no gradient
    crosses a layer. One step of both optimizers on the sum; at test time
    the forward chain alone predicts. The authors' nets have no biases and
    train by SGD at rate 1 with each network's gradient clipped to norm 1
    (``forward_clip_norm``, ``feedback_clip_norm``)."""

    name: str
    alignment_scale: float = setting(128.0, "s of each pair's term (s/d_l)·mean((a_l·c_l − Y)²): the authors' "
                                     "0.5 × 256", above=0)
    input_pair: bool = setting(True, "the pair (x, c_0): it trains g_1 alone and changes nothing of the forward "
                               "net; in the paper's loss and its FLOP count")
    network_kinds = ("dual",)
    uses_feedback = True
    separate_feedback = False  # g learns inside each pair's term, which needs the labels
    contract_exemptions = {
        "targets": "it aligns each layer with the feedback net's class activations: it computes no targets",
        "feedback": "its feedback maps learn inside each pair's loss, which needs the labels: there are no "
                    "feedback-only steps to schedule"}

    def __post_init__(self) -> None:
        check(self)

    def network_options(self, kind: str) -> dict:
        return {"input_pair": self.input_pair}

    def check_network(self, net) -> None:
        super().check_network(net)
        if (net.layers[0].g is not None) != self.input_pair:
            raise ValueError(f"input_pair={self.input_pair} needs a dual net {'with' if self.input_pair else 'without'} "
                             "g_1 (build it for this rule: build_network(arch, ..., rule))")

    def forward_loss(self, net: DualNetwork, record, y: Tensor) -> ForwardLoss:
        if y.is_floating_point() or bool((y < 0).any()):
            raise ValueError("ccl aligns features with the prototypes of their class: every example needs a label")
        features = [record.hs[0], *record.outputs]  # a_0 = x (no graph), a_l local to f_l
        local = torch.stack([class_alignment_loss(a, c, y, self.alignment_scale)
                             for a, c in zip(features, net.class_activations()) if c is not None]).sum()
        ce = output_loss(record.logits, y)
        return ForwardLoss(ce + local, ce.detach(), None)
