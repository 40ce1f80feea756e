"""Per-layer diagnostics on a fixed probe batch.

* ``angle_l``: the angle (degrees) between the forward-weight update the rule
  makes for layer l, −∂(rule loss)/∂W_l, and the back-prop update
  −∂(cross-entropy)/∂W_l (Lillicrap et al. 2016; Meulemans et al. 2020 §5).
* ``recon_l``: relative reconstruction error of the feedback map,
  ‖g_l(f_l(h_{l-1})) − h_{l-1}‖² / ‖h_{l-1}‖², for layers that have one.
* ``target_l``: mean target step ‖ĥ_l − h_l‖ per example, for rules with targets.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .networks import TPNetwork
from .rules import Rule

__all__ = ["angle_degrees", "layer_diagnostics"]


def angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two tensors seen as flat vectors; nan if either is zero."""
    a, b = a.flatten().double(), b.flatten().double()
    denominator = a.norm() * b.norm()
    if denominator == 0:
        return math.nan
    cosine = (a @ b / denominator).clamp(-1.0, 1.0)
    return math.degrees(math.acos(cosine.item()))


def layer_diagnostics(net: TPNetwork, rule: Rule, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Diagnostics for every hidden layer, keyed ``angle_1``, ``recon_2``, ...
    (layers numbered from 1 as in the paper). Parameters are left untouched.
    A generative rule has no cross-entropy to compare with: its own
    diagnostics stand alone."""
    if rule.generative:
        with torch.no_grad():
            return rule.diagnostics(net, rule.record(net, x), y)
    weights = [layer.weight for layer in net.layers]
    bp_grads = torch.autograd.grad(F.cross_entropy(net(x), y), weights)

    record = rule.record(net, x)
    result = rule.forward_loss(net, record, y)
    rule_grads = torch.autograd.grad(result.loss, weights, allow_unused=True)

    out: dict[str, float] = {}
    with torch.no_grad():
        for l, (layer, g_rule, g_bp) in enumerate(zip(net.layers, rule_grads, bp_grads), start=1):
            out[f"angle_{l}"] = angle_degrees(g_rule, g_bp) if g_rule is not None else math.nan
            h_below = record.hs[l - 1]
            if layer.g is not None:
                error = (layer.feedback(record.hs[l]) - h_below).pow(2).sum()
                out[f"recon_{l}"] = (error / h_below.pow(2).sum().clamp_min(1e-12)).item()
            if result.targets is not None:
                step = (result.targets[l - 1] - record.hs[l]).norm(dim=1).mean()
                out[f"target_{l}"] = step.item()
        out |= rule.diagnostics(net, record, y)
    return out
