"""Bengio (2014) §5 on a recursive net: the tree net of ``tree:WIDTH``
(:mod:`targetprop.core.tree`) trained by a backward net without inputs.

    h_n = U x_n + b                                          the code of node n's input
    s_n = act(W_L s_left + W_R s_right + h_n)                  (a missing child: 0)
    g(s_n) = (s̃_left, s̃_right, h̃_n) = (V_L s_n + c_L, V_R s_n + c_R, Q s_n + e)

the recursive form of the recurrent net's (s̃_{t−1}, h̃_t) = g(s_t)
(:mod:`.recurrent`): g reconstructs everything a node was composed from.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...autoencoders.corruption import Corruption
from ...core import targets as tg
from ...core.delta import activation_derivative
from ...core.discrete import check_continuous
from ...core.objectives import output_loss
from ...core.rule import ForwardLoss
from ...core.tree import TreeNetwork, tree_shape_of
from ...core.updates import local_target_loss
from .recurrent import Section5Record

Tensor = torch.Tensor

__all__ = ["Section5Tree", "Section5TreeNetwork", "build_section5_tree"]


class Section5TreeNetwork(TreeNetwork):
    """``tree:WIDTH`` for ``bengio2014``: g reads no input and reconstructs
    a node's children and its code, (s̃_left, s̃_right, h̃_n)."""

    kind = "section5-tree"

    def __init__(self, tree_shape: tuple[int, int], width: int, num_outputs: int, activation: str = "tanh"):
        super().__init__(tree_shape, width, num_outputs, activation, feedback_input=False)
        self.back_code = nn.Linear(width, width)  # Q, e
        nn.init.zeros_(self.back_code.bias)

    def backward_weight(self) -> tuple[Tensor, Tensor]:
        """g as one affine map: ([V_L; V_R; Q], [c_L; c_R; e])."""
        back = self.cell.back
        return torch.cat([back.weight, self.back_code.weight]), torch.cat([back.bias, self.back_code.bias])

    def feedback_parameters(self) -> list[nn.Parameter]:
        return [*super().feedback_parameters(), *self.back_code.parameters()]


def build_section5_tree(spec, input_shape, num_outputs: int, activation: str = "tanh") -> Section5TreeNetwork:
    """§5's recursive net of a ``tree:WIDTH`` spec."""
    check_continuous(activation, "bengio2014")
    return Section5TreeNetwork(tree_shape_of(input_shape), spec.arguments["width"], num_outputs, activation)


@dataclass
class Section5Tree:
    """§5's recipe on a :class:`Section5TreeNetwork`, one batch:

    1. short loops (``feedback_loss``): [s_left; s_right; h_n] is a target
       for g(corrupt(s_n)) at every node (updates g);
    2. the label enters at the root: ŝ_root = s_root − η ∂ℓ/∂s_root;
    3. the long loop carries it down, level by level: ŝ_children =
       s_children + g(ŝ_n) − g(s_n) (``difference``; ``tp``: g(ŝ_n)), ŝ_n's
       step first multiplied by act′(s_n) (``gating``);
    4. ŝ_n is a target for s_n (updates W_L, W_R and, through the one
       composition, the encoder U, b), and [s_left; s_right; h_n] a target
       for g(corrupt(ŝ_n)) (updates g)."""
    corruption: Corruption
    propagation: str = "difference"
    target_step: float = 0.1
    gating: bool = True

    def record(self, net: Section5TreeNetwork, x: Tensor) -> Section5Record:
        record = net.local_pass(x)
        with torch.no_grad():
            codes = [net.cell.input(level.features) for level in record.layers]
        return Section5Record(record.hs, record.outputs, record.top, record.logits, record.layers,
                              code_values=codes)

    def forward_loss(self, net: Section5TreeNetwork, record: Section5Record, y: Tensor) -> ForwardLoss:
        per_example = output_loss(record.logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(per_example, record.top, retain_graph=True)
        top = tg.gradient_top_target(record.hs[-1], grad, self.target_step)
        difference = self.propagation == "difference"
        rule = tg.linear_difference_propagate if difference else tg.PROPAGATION_RULES[self.propagation]
        if self.gating:
            rule = tg.gated(rule, lambda s: activation_derivative(net.cell.act, s))
        feedbacks = [None, *(level.feedback_linear if difference else level.feedback for level in record.layers)]
        targets = tg.propagate_targets(feedbacks, record.hs, top, rule)
        loss = per_example / len(y) + local_target_loss(record.outputs, targets, examples=len(y))
        return ForwardLoss(loss, (per_example / len(y)).detach(), targets)

    def record_diagnostics(self, net: Section5TreeNetwork, record: Section5Record, y: Tensor) -> dict[str, float]:
        return {}

    def feedback_loss(self, net: Section5TreeNetwork, record: Section5Record,
                      targets: list[Tensor] | None = None) -> Tensor:
        """Step 1 at every node and, given the targets, step 4's decoder
        terms; ½‖·‖² summed over units and nodes, averaged over the trees."""
        weight, bias = net.backward_weight()
        loss = record.hs[-1].new_zeros(())
        for l, (level, code) in enumerate(zip(record.layers, record.code_values)):
            below = torch.cat([level.children_of(record.hs[l]), code], dim=1)
            starts = [record.hs[l + 1]] + ([] if targets is None else [targets[l]])
            sigma = self.corruption.scale(record.hs[l + 1])  # measured on the level's states, reused for its targets
            for start in starts:
                reconstruction = F.linear(self.corruption(start, sigma=sigma), weight, bias)
                loss = loss + 0.5 * F.mse_loss(reconstruction, below, reduction="sum")
        return loss / len(record.hs[-1])
