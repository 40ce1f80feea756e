"""Per-layer diagnostics on a fixed probe batch.

* ``angle_l``: the angle (degrees) between the forward-weight update the rule
  makes for layer l, −∂(rule loss)/∂W_l, and the back-prop update
  −∂(cross-entropy)/∂W_l (Lillicrap et al. 2016; Meulemans et al. 2020 §5),
  W_l every weight tensor of f_l (``layer.weights()``, biases left out).
* ``recon_l``: relative reconstruction error of the feedback map,
  ‖g_l(f_l(h_{l-1})) − h_{l-1}‖² / ‖h_{l-1}‖², for layers that have one.
* ``target_l``: mean target step ‖ĥ_l − h_l‖ per example, for rules with targets.

A recurrent net's steps share their weights: its angles are per weight
matrix (``angle_recurrent``, ``angle_input``) and its ``recon`` and
``target`` the means over its steps. Per time step, ``angle_lag_k`` is the
angle between the target step ŝ_t − s_t and BPTT's −∂ℓ/∂s_t at t = T − k:
how well the direction a rule carries back survives k steps (left out
where either has vanished to zero, as BPTT's gradient does at long lags);
a tree net's, ``angle_depth_k``, the same for the nodes k levels below the
root against back-propagation through structure's.
"""
from __future__ import annotations

import math

import torch

from .objectives import output_loss

__all__ = ["angle_degrees", "layer_diagnostics", "state_gradients"]

LAGS = (1, 3, 10, 30, 100)  # steps back from the last state at which ``angle_lag_k`` is reported


def angle_degrees(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two tensors seen as flat vectors; nan if either is zero."""
    a, b = a.flatten().double(), b.flatten().double()
    denominator = a.norm() * b.norm()
    if denominator == 0:
        return math.nan
    cosine = (a @ b / denominator).clamp(-1.0, 1.0)
    return math.degrees(math.acos(cosine.item()))


def layer_diagnostics(net, rule, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Diagnostics for every layer, keyed ``angle_1``, ``recon_2``, ...
    (layers numbered from 1 as in the paper), then the rule's own
    (``rule.record_diagnostics``). A net whose weights are shared by its
    steps (a recurrent net) reports an angle per weight matrix
    (``net.weight_groups()``) and the reconstruction error and target step
    averaged over its steps. Parameters are left untouched."""
    groups = net.weight_groups()
    weights = list(groups.values())
    flat = [w for ws in weights for w in ws]
    bp_grads = _split(torch.autograd.grad(output_loss(net(x), y), flat), weights)

    record = rule.record(net, x)
    result = rule.forward_loss(net, record, y)
    rule_grads = _split(torch.autograd.grad(result.loss, flat, allow_unused=True), weights)

    out: dict[str, float] = {}
    with torch.no_grad():
        for name, ours, theirs in zip(groups, rule_grads, bp_grads):
            used = [(a, b) for a, b in zip(ours, theirs) if a is not None]
            out[f"angle_{name}"] = (angle_degrees(torch.cat([a.flatten() for a, _ in used]),
                                                  torch.cat([b.flatten() for _, b in used]))
                                    if used else math.nan)
        steps = {"recon": {}, "target": {}}
        for l, (layer, (h_below, h)) in enumerate(zip(record.layers, record.pairs()), start=1):
            if layer.g is not None:
                error = (layer.feedback(h) - h_below).pow(2).sum()
                steps["recon"][l] = (error / h_below.pow(2).sum().clamp_min(1e-12)).item()
            if result.targets is not None:
                steps["target"][l] = (result.targets[l - 1] - h).flatten(1).norm(dim=1).mean().item()
        shared = len(record.layers) != len(net.layers)  # steps that share weights: their mean
        for kind, values in steps.items():
            if shared and values:
                out[kind] = sum(values.values()) / len(values)
            elif not shared:
                out |= {f"{kind}_{l}": value for l, value in values.items()}
        if shared and result.targets is not None:
            descent = state_gradients(net, x, y)[-len(result.targets):]  # the stored steps' (streaming: the last)
            name = getattr(net, "lag_name", "lag")
            for lag in (k for k in getattr(net, "lags", LAGS) if k < len(result.targets)):
                t = len(result.targets) - 1 - lag
                angle = angle_degrees(result.targets[t] - record.hs[t + 1], -descent[t])
                if not math.isnan(angle):  # left out where either has vanished to zero (float32)
                    out[f"angle_{name}_{lag}"] = angle
        out |= rule.record_diagnostics(net, record, y)
    return out


def state_gradients(net, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """BPTT's ∂ℓ/∂s_t for every step of a recurrent net (ℓ the batch's summed
    output loss, as the top targets use; with a read-out on every state, the
    sum over steps)."""
    with torch.enable_grad():
        states, h = [], x
        for layer in net.unrolled(x):
            h = layer(h)
            states.append(h)
        return list(torch.autograd.grad(output_loss(net.read_out(net.read(states)), y, reduction="sum"), states))


def _split(grads, groups: list[list]) -> list[list]:
    """A flat tuple of gradients back into one list per layer."""
    it = iter(grads)
    return [[next(it) for _ in group] for group in groups]
