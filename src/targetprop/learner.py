"""The stateful shell around a rule: it owns the network, the rule and the
forward and feedback optimizers, and runs one training step at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .networks import TPNetwork
from .rules import Rule

Tensor = torch.Tensor

__all__ = ["Learner", "StepResult"]


@dataclass
class StepResult:
    output_loss: Tensor          # cross-entropy before the update (detached)
    logits: Tensor               # logits before the update (detached)
    feedback_loss: Tensor | None


class Learner:
    """One training step (DESIGN.md, "the canonical loop"):

    1. forward pass, recording every h_l;
    2. ``feedback_iterations`` steps of the feedback optimizer on the rule's
       feedback loss (interleaved schedule; 0 skips it);
    3. targets under ``no_grad`` with the updated feedback maps, local losses,
       one step of the forward optimizer.
    """

    def __init__(self, net: TPNetwork, rule: Rule, forward_optimizer: torch.optim.Optimizer,
                 feedback_optimizer: torch.optim.Optimizer | None = None,
                 feedback_iterations: int = 1):
        if rule.uses_feedback and feedback_optimizer is None and feedback_iterations > 0:
            raise ValueError(f"rule {rule.name!r} trains feedback maps: give a feedback optimizer")
        self.net, self.rule = net, rule
        self.forward_optimizer, self.feedback_optimizer = forward_optimizer, feedback_optimizer
        self.feedback_iterations = feedback_iterations

    def feedback_step(self, x: Tensor, record=None) -> Tensor | None:
        """One step of the feedback optimizer; returns the loss before it."""
        if not self.rule.uses_feedback:
            return None
        if record is None:
            with torch.no_grad():
                record = self.rule.record(self.net, x)
        loss = self.rule.feedback_loss(self.net, record)
        if loss is None:
            return None
        self.feedback_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.feedback_optimizer.step()
        return loss.detach()

    def forward_step(self, x: Tensor, y: Tensor, record=None) -> StepResult:
        record = record if record is not None else self.rule.record(self.net, x)
        result = self.rule.forward_loss(self.net, record, y)
        self.forward_optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        self.forward_optimizer.step()
        return StepResult(result.output_loss.detach(), record.logits.detach(), None)

    def train_step(self, x: Tensor, y: Tensor) -> StepResult:
        record = self.rule.record(self.net, x)
        feedback_loss = None
        for _ in range(self.feedback_iterations):
            feedback_loss = self.feedback_step(x, record)
        result = self.forward_step(x, y, record)
        result.feedback_loss = feedback_loss
        return result

    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "forward_optimizer": self.forward_optimizer.state_dict(),
            "feedback_optimizer": (self.feedback_optimizer.state_dict()
                                   if self.feedback_optimizer is not None else None),
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.forward_optimizer.load_state_dict(state["forward_optimizer"])
        if self.feedback_optimizer is not None and state.get("feedback_optimizer") is not None:
            self.feedback_optimizer.load_state_dict(state["feedback_optimizer"])
