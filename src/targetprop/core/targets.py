"""Pure tensor functions that compute targets: the top target and the rules
that carry a target from layer l down to layer l-1 through the feedback map.

All functions take plain tensors and callables, hold no state and never build
an autograd graph for the forward weights, so they can be called and tested
on their own.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

Tensor = torch.Tensor
Feedback = Callable[[Tensor], Tensor]
PropagationRule = Callable[[Feedback, Tensor, Tensor, Tensor], Tensor]

__all__ = [
    "gradient_top_target", "tp_propagate", "difference_propagate", "difference_propagate_apart",
    "linear_difference_propagate",
    "damped_inverse_propagate", "gated", "propagate_targets", "linear_difference_through_time", "hybrid_target",
    "PROPAGATION_RULES",
]


def gradient_top_target(h_top: Tensor, loss_grad: Tensor, step: float) -> Tensor:
    """ĥ_L = h_L − η ∂loss/∂h_L: a small gradient step on the output loss taken
    in the space of the last hidden layer (Lee et al. 2015, Eq. 13)."""
    return torch.add(h_top, loss_grad, alpha=-step)


def tp_propagate(g: Feedback, h_below: Tensor, h: Tensor, h_hat: Tensor) -> Tensor:
    """Vanilla target propagation: ĥ_{l-1} = g_l(ĥ_l) (Bengio 2014 §2.2.6;
    Lee et al. 2015, Eq. 11)."""
    return g(h_hat)


def difference_propagate(g: Feedback, h_below: Tensor, h: Tensor, h_hat: Tensor) -> Tensor:
    """Difference target propagation (Lee et al. 2015, Eq. 15):

        ĥ_{l-1} = h_{l-1} + g_l(ĥ_l) − g_l(h_l)

    The correction term cancels the reconstruction error of an imperfect
    inverse, so ĥ_l = h_l gives ĥ_{l-1} = h_{l-1} exactly.
    """
    both = g(torch.cat([h_hat, h]))  # one batched call for both arguments
    g_hat, g_h = both.split(h.shape[0])
    return torch.sub(g_hat, g_h).add_(h_below)


def difference_propagate_apart(g: Feedback, h_below: Tensor, h: Tensor, h_hat: Tensor) -> Tensor:
    """:func:`difference_propagate` with g called on ĥ_l and on h_l apart,
    for a g that normalises over its batch (targets and states must not
    share its statistics)."""
    return torch.sub(g(h_hat), g(h)).add_(h_below)


def linear_difference_propagate(linear: Feedback, h_below: Tensor, h: Tensor, h_hat: Tensor) -> Tensor:
    """Difference target propagation through an affine g(h) = V h + c, given
    ``linear``, h ↦ V h: g(ĥ) − g(h) = V(ĥ − h) exactly, in one product and
    with no cancellation between two nearly equal terms."""
    return linear(h_hat - h).add_(h_below)


def damped_inverse_propagate(inverse, h_below: Tensor, h: Tensor, h_hat: Tensor,
                             damping: float) -> Tensor:
    """Difference targets through an exact inverse, damped (§6 with
    Levenberg–Marquardt damping of each unit's inverse slope):

        ĥ_{l-1} = h_{l-1} + W⁻¹ D (D² + λI)⁻¹ (ĥ_l − h_l),   D = diag act′_l

    ``inverse`` is a :class:`core.layers.InverseAffine`. λ → 0 gives the
    linearised Gauss–Newton step (D W)⁻¹(ĥ_l − h_l).
    """
    return inverse.damped_difference(h, h_hat, damping).add_(h_below)


def gated(propagate: PropagationRule, derivative: Callable[[Tensor], Tensor]) -> PropagationRule:
    """``propagate`` applied to the gated difference: layer l's target step is
    first multiplied unit by unit by act′_l, read from h_l by ``derivative``,

        ĥ_l ← h_l + act′_l ⊙ (ĥ_l − h_l),

    so that a ReLU unit that is off for this example passes nothing down, as
    in back-prop; a feedback map that is one matrix for all examples can
    only apply the average gating."""
    def rule(g: Feedback, h_below: Tensor, h: Tensor, h_hat: Tensor) -> Tensor:
        return propagate(g, h_below, h, torch.addcmul(h, derivative(h), h_hat - h))
    return rule


PROPAGATION_RULES: dict[str, PropagationRule] = {
    "tp": tp_propagate,
    "difference": difference_propagate,
}


def propagate_targets(feedbacks: Sequence[Feedback | None], hs: Sequence[Tensor],
                      top_target: Tensor, rule: PropagationRule | Sequence[PropagationRule | None],
                      first: int = 1, own_steps: Sequence[Tensor | None] | None = None) -> list[Tensor]:
    """Carry ``top_target`` (for hs[-1]) down the chain; ``own_steps[l]``, if
    given, is added to ĥ_l once it has come down (a recurrent read-out on
    every state: s_t's own step −η ∂ℓ_t/∂s_t).

    ``hs[l]`` is h_l (``hs[0]`` the input), ``feedbacks[l]`` is g_l (index 0
    unused). ``rule`` is one propagation rule for every layer, or one per
    layer indexed like ``feedbacks``. Returns targets ĥ_first..ĥ_L, ĥ_l at
    position l − first.
    """
    top = len(hs) - 1
    targets = [top_target]
    with torch.no_grad():
        for l in range(top, first, -1):
            propagate = rule if callable(rule) else rule[l]
            targets.append(propagate(feedbacks[l], hs[l - 1], hs[l], targets[-1]))
            if own_steps is not None:
                targets[-1] = targets[-1] + own_steps[l - 1]
    return targets[::-1]


def linear_difference_through_time(weight: Tensor, states: Tensor, top_target: Tensor,
                                   gates: Tensor | None = None) -> Tensor:
    """Difference targets down the T steps of a recurrent net whose g is
    affine with one weight V for every step (g(s_t) = V s_t + P x_t + c):

        Δ_T = ŝ_T − s_T,   Δ_{t−1} = V (D_t ⊙ Δ_t),   ŝ_t = s_t + Δ_t,

    D_t = ``gates[t]`` (act′ at s_t, as ``gated``) or 1. ``states`` are
    s_1..s_T stacked, (T, N, W); returns ŝ_1..ŝ_T stacked alike. The values
    of ``propagate_targets`` with ``linear_difference_propagate`` (gated),
    in two operations a step. ``top_target`` of the states' shape is a
    target for every state (a read-out on every state): each step's own
    step ŝ_t − s_t is added as Δ_t comes down,
    Δ_{t−1} = V (D_t ⊙ Δ_t) + (ŝ_{t−1} − s_{t−1})."""
    with torch.no_grad():
        weight_t = weight.t()
        own = top_target - states if top_target.dim() == states.dim() else None
        steps = [top_target - states[-1] if own is None else own[-1]]
        for t in range(len(states) - 1, 0, -1):
            step = steps[-1] if gates is None else gates[t] * steps[-1]
            steps.append(step @ weight_t if own is None else torch.addmm(own[t - 1], step, weight_t))
        return states + torch.stack(steps[::-1])


def hybrid_target(joint: Tensor, step: Tensor, h: Tensor, alpha: float) -> Tensor:
    """Eq. 19 of Bengio (2014): α ĥ + (1 − α)(h + s), with ĥ the
    reconstruction of h with y given (``joint``) and s the discriminant step,
    Eq. 17's ∂log P(y|h)/∂h up to a scale. Eq. 18 estimates s by ĥ − h̃, h̃
    the reconstruction without y, and the target becomes ĥ + (1 − α)(h − h̃).
    α = 1: ĥ (Eq. 16, the joint of x and y); α = 0: h + s (Eq. 18, the
    discriminant target)."""
    return alpha * joint + (1.0 - alpha) * (h + step)
